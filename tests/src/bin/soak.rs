//! Soak: mixed traffic against a release `pd2-ticket` for minutes, with
//! clients that give up, one database freeze and one database restart in
//! the middle. Reports 503s inside and outside those windows, uploads
//! acknowledged but lost, what is left orphaned in GridFS and the journal,
//! and the server's memory over time.
//!
//! Each client is a student of its own: it lists and uploads its own
//! tickets, and reads the seeded tickets of one shared author. (One author
//! for everything would measure the database instead: SecantusDB sorts
//! every ticket of the author for each list.)
//!
//! `cargo run --release -p pd2-ticket-tests --bin soak [-- --minutes 10]`

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mongodb::bson::{Bson, Document, doc};
use pd2_ticket_tests::{DbServer, Server, bench_options, create_ticket, proxy::Proxy};
use rand::Rng;

const CONNECTIONS: usize = 32;
/// Share of requests whose client gives up before the answer.
const ABORT_SHARE: f64 = 0.10;
/// After a fault ends, how long 503s still count as part of it: the next
/// health check (≤ 0.5 s) plus the database's own warm-up after a restart.
const RECOVERY: Duration = Duration::from_secs(5);
const FREEZE: Duration = Duration::from_secs(10);
const RESTART_DOWN: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Tally {
    requests: u64,
    aborted: u64,
    ok: u64,
    in_window_503: u64,
    outside_503: Vec<(f64, String)>,
    other_errors: Vec<(f64, String, u16)>,
    /// (author, ticket id) of every 201.
    created: Vec<(usize, String, f64)>,
}

/// Fault windows as seconds since the start: `[from, to)`.
#[derive(Default)]
struct Windows(Mutex<Vec<(f64, f64)>>);

impl Windows {
    fn open(&self, at: f64) {
        if let Ok(mut w) = self.0.lock() {
            w.push((at, f64::INFINITY));
        }
    }
    fn close(&self, at: f64) {
        if let Ok(mut w) = self.0.lock()
            && let Some(last) = w.last_mut()
        {
            last.1 = at + RECOVERY.as_secs_f64();
        }
    }
    /// Whether a request that ran over `[start, end]` overlapped a fault.
    fn covers(&self, start: f64, end: f64) -> bool {
        self.0
            .lock()
            .map(|w| w.iter().any(|(from, to)| start < *to && end >= *from))
            .unwrap_or(false)
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let minutes: f64 = std::env::args()
        .skip_while(|a| a != "--minutes")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(10.0);
    let total = Duration::from_secs_f64(minutes * 60.0);
    let db = DbServer::start();
    let (db_port, db_storage) = (db.port, db.storage.clone());
    let proxy = Proxy::start(&format!("127.0.0.1:{db_port}")).await;
    let server = Server::start_with(
        bench_options()
            .database(&proxy.uri, "soak")
            .admins(&["1"])
            .env("RUST_LOG", "warn"),
    )
    .await;
    let token = server.token("1");
    let mut seeded = Vec::new();
    for i in 0..20 {
        let ticket = create_ticket(
            &server,
            &token,
            &[
                (format!("src/Main{i}.java").as_str(), &vec![b'a'; 4096]),
                ("README.md", b"# soak\n"),
            ],
            None,
        )
        .await;
        seeded.push((ticket["id"].as_str().expect("id").to_owned(), i));
    }
    let seeded = Arc::new(seeded);
    let http = pd2_ticket_tests::http_client()
        .pool_max_idle_per_host(CONNECTIONS)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let owns: Vec<String> = (0..CONNECTIONS)
        .map(|worker| server.token(&format!("{}", 100 + worker)))
        .collect();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let windows = Arc::new(Windows::default());
    let start = Instant::now();

    let mut workers = Vec::new();
    for (worker, own) in owns.iter().cloned().enumerate() {
        let (http, tally, windows, seeded, reader) = (
            http.clone(),
            tally.clone(),
            windows.clone(),
            seeded.clone(),
            token.clone(),
        );
        let base = server.base.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < total {
                n += 1;
                let (abort, pick, which) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_bool(ABORT_SHARE),
                        rng.random_range(0..100u32),
                        rng.random_range(0..seeded.len()),
                    )
                };
                let (id, i) = &seeded[which];
                let (route, request) = match pick {
                    0..30 => (
                        "list",
                        http.get(format!("{base}/ticket/@me?length=20"))
                            .bearer_auth(&own),
                    ),
                    30..55 => (
                        "get",
                        http.get(format!("{base}/ticket/1/{id}"))
                            .bearer_auth(&reader),
                    ),
                    55..75 => (
                        "file",
                        http.get(format!("{base}/ticket/1/{id}/files/src/Main{i}.java"))
                            .bearer_auth(&reader),
                    ),
                    75..80 => (
                        "zip",
                        http.get(format!("{base}/ticket/1/{id}/download"))
                            .bearer_auth(&reader),
                    ),
                    _ => {
                        let form = reqwest::multipart::Form::new()
                            .part(
                                "files",
                                reqwest::multipart::Part::bytes(vec![b'x'; 10 * 1024])
                                    .file_name(format!("w{worker}/n{n}.txt")),
                            )
                            .part(
                                "files",
                                reqwest::multipart::Part::bytes(vec![b'y'; 300 * 1024])
                                    .file_name("data.bin"),
                            );
                        (
                            "upload",
                            http.post(format!("{base}/ticket"))
                                .bearer_auth(&own)
                                .multipart(form),
                        )
                    }
                };
                let sent = start.elapsed().as_secs_f64();
                let exchange = async {
                    let response = request.send().await?;
                    let status = response.status().as_u16();
                    let body = response.bytes().await?;
                    Ok::<_, reqwest::Error>((status, body))
                };
                let outcome = if abort {
                    let after = Duration::from_millis(rand::rng().random_range(1..40));
                    tokio::time::timeout(after, exchange).await.ok()
                } else {
                    Some(exchange.await)
                };
                let done = start.elapsed().as_secs_f64();
                let Ok(mut tally) = tally.lock() else { return };
                tally.requests += 1;
                match outcome {
                    None => tally.aborted += 1,
                    Some(Ok((201, body))) => {
                        tally.ok += 1;
                        if let Ok(ticket) = serde_json::from_slice::<serde_json::Value>(&body)
                            && let Some(id) = ticket["id"].as_str()
                        {
                            tally.created.push((100 + worker, id.to_owned(), sent));
                        }
                    }
                    Some(Ok((200, _))) => tally.ok += 1,
                    Some(Ok((503, _))) if windows.covers(sent, done) => tally.in_window_503 += 1,
                    Some(Ok((503, _))) => tally.outside_503.push((sent, route.to_owned())),
                    Some(Ok((status, _))) => {
                        tally.other_errors.push((sent, route.to_owned(), status))
                    }
                    Some(Err(e)) if windows.covers(sent, done) => {
                        drop(e);
                        tally.in_window_503 += 1;
                    }
                    Some(Err(e)) => tally.other_errors.push((sent, format!("{route}: {e}"), 0)),
                }
            }
        }));
    }

    // Faults in the middle, memory all along.
    let pid = server.pid();
    let mut rss = Vec::new();
    let freeze_at = total.mul_f64(1.0 / 3.0);
    let restart_at = total.mul_f64(2.0 / 3.0);
    let mut db = Some(db);
    let mut frozen_done = false;
    let mut restarted = false;
    while start.elapsed() < total {
        let now = start.elapsed();
        if rss
            .last()
            .is_none_or(|(t, _): &(Duration, u64)| now - *t >= Duration::from_secs(10))
        {
            rss.push((now, rss_kib(pid)));
        }
        if !frozen_done && now >= freeze_at {
            windows.open(now.as_secs_f64());
            proxy.freeze();
            tokio::time::sleep(FREEZE).await;
            proxy.thaw();
            windows.close(start.elapsed().as_secs_f64());
            frozen_done = true;
        }
        if !restarted && now >= restart_at {
            windows.open(now.as_secs_f64());
            let (port, storage) = db.take().expect("database").stop();
            tokio::time::sleep(RESTART_DOWN).await;
            db = Some(DbServer::start_at(port, storage));
            windows.close(start.elapsed().as_secs_f64());
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for worker in workers {
        let _ = worker.await;
    }
    rss.push((start.elapsed(), rss_kib(pid)));
    let _ = (db_port, db_storage);

    let elapsed = start.elapsed();
    // Let the janitor finish what aborted and failed uploads left: at once
    // for most, within its 1 s retry for cleanups that failed.
    let mongo = server.mongo().await;
    // Waiting is judged by the journal alone (a cheap count): scanning
    // every file and chunk each second would load the database the
    // janitor needs. Orphans are counted once the journal is empty.
    let settle = Instant::now();
    let journal_len = || async {
        mongo
            .collection::<Document>("uploads")
            .count_documents(doc! {})
            .await
            .unwrap_or(u64::MAX)
    };
    while journal_len().await != 0 && settle.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled = settle.elapsed();
    let (orphan_files, orphan_chunks, journal) = orphans(&mongo).await;
    let tally = tally
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    // Lost means gone: a 503 (the database busy with the janitor's
    // sweeps right after the load) is asked again.
    let mut lost = Vec::new();
    for (author, id, at) in &tally.created {
        let mut status = 0;
        for _ in 0..10 {
            status = http
                .get(server.url(&format!("/ticket/{author}/{id}")))
                .bearer_auth(&token)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            if status != 503 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if status != 200 {
            lost.push(format!(
                "- acknowledged at {at:.1} s, now {status}: ticket {id}"
            ));
        }
    }

    println!(
        "## Soak ({minutes} min, {CONNECTIONS} connections, {:.0} % of requests abandoned, a {} s database freeze at {:.0} s and a restart ({} s down) at {:.0} s)\n",
        ABORT_SHARE * 100.0,
        FREEZE.as_secs(),
        freeze_at.as_secs_f64(),
        RESTART_DOWN.as_secs(),
        restart_at.as_secs_f64()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| requests | {} ({:.0}/s) |",
        tally.requests,
        tally.requests as f64 / elapsed.as_secs_f64()
    );
    println!("| answered 200/201 | {} |", tally.ok);
    println!("| abandoned by the client | {} |", tally.aborted);
    println!(
        "| 503 (or no answer) during a fault window (+{} s) | {} |",
        RECOVERY.as_secs(),
        tally.in_window_503
    );
    println!(
        "| 503 outside the fault windows | {} |",
        tally.outside_503.len()
    );
    println!("| other errors | {} |", tally.other_errors.len());
    println!("| uploads acknowledged (201) | {} |", tally.created.len());
    println!("| acknowledged uploads lost | {} |", lost.len());
    println!("| orphaned GridFS files / chunks at the end | {orphan_files} / {orphan_chunks} |");
    println!("| journal entries left at the end | {journal} |");
    println!(
        "| waited after the load for leftovers to go (gives up after 120 s) | {:.1} s |",
        settled.as_secs_f64()
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let samples: Vec<String> = rss
        .iter()
        .map(|(t, kib)| format!("{:.0} s: {:.0}", t.as_secs_f64(), mib(*kib)))
        .collect();
    println!("\nServer RSS (MiB) every 10 s: {}", samples.join(", "));
    let mut by_10s = std::collections::BTreeMap::<u64, usize>::new();
    for (at, _) in &tally.outside_503 {
        *by_10s.entry((*at / 10.0) as u64 * 10).or_default() += 1;
    }
    if !by_10s.is_empty() {
        let buckets: Vec<String> = by_10s.iter().map(|(t, n)| format!("{t} s: {n}")).collect();
        println!(
            "\n503s outside the windows, per 10 s: {}",
            buckets.join(", ")
        );
    }
    for line in &lost {
        println!("{line}");
    }
    for (at, route) in tally.outside_503.iter().take(10) {
        println!("- 503 outside a window at {at:.1} s on {route}");
    }
    for (at, what, status) in tally.other_errors.iter().take(10) {
        println!("- error at {at:.1} s: {what} ({status})");
    }
}

/// GridFS files of no ticket, chunks of no file, and journal entries.
async fn orphans(db: &mongodb::Database) -> (u64, u64, u64) {
    use futures_util::TryStreamExt;
    let tickets: HashSet<String> = db
        .collection::<Document>("tickets")
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .await
        .expect("tickets")
        .try_filter_map(|d| async move { Ok(d.get_str("_id").ok().map(str::to_owned)) })
        .try_collect()
        .await
        .expect("ticket ids");
    let files: Vec<Document> = db
        .collection::<Document>("files.files")
        .find(doc! {})
        .projection(doc! { "_id": 1, "metadata.ticket_id": 1 })
        .await
        .expect("files")
        .try_collect()
        .await
        .expect("file docs");
    let orphan_files = files
        .iter()
        .filter(|f| {
            f.get_document("metadata")
                .ok()
                .and_then(|m| m.get_str("ticket_id").ok())
                .is_none_or(|t| !tickets.contains(t))
        })
        .count() as u64;
    let file_ids: Vec<Bson> = files.iter().filter_map(|f| f.get("_id").cloned()).collect();
    let orphan_chunks = db
        .collection::<Document>("files.chunks")
        .count_documents(doc! { "files_id": { "$nin": file_ids } })
        .await
        .expect("chunks");
    let journal = db
        .collection::<Document>("uploads")
        .count_documents(doc! {})
        .await
        .expect("journal");
    (orphan_files, orphan_chunks, journal)
}
