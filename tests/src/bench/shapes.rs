//! `bench --upload-shapes`: what students send, measured (issue 20).
//!
//! - Upload rate and MB/s of the folders students hand in (a real project,
//!   40 files of 5–100 KB, 12 × 100 KB, one 1 MiB file), through the
//!   repository's `config.toml` and the first-party plugins, at database
//!   pools of 2 and 10.
//! - DELETE latency for an author with 20, 2,000 and 20,000 tickets.
//! - 20 concurrent uploads of 10 × 1 MiB beside raw GridFS writes of the
//!   same bytes through the same driver, in the same run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::AsyncWriteExt;
use mongodb::bson::{Document, doc};
use pd2_ticket_tests::{
    DbServer, Server, bench_options, create_ticket, first_party_plugins, project_files,
    workspace_root,
};

use super::{CONNECTIONS, cpu_time, load, percentile, unexpected};

/// A server as `./run.sh` starts it: the shipped `config.toml`, the
/// first-party plugins, this database pool.
async fn shipped(db: &DbServer, name: &str, pool: usize) -> Server {
    shipped_with(db, name, pool, &[]).await
}

/// [`shipped`], with some settings overridden (`PD2_…` variables).
pub async fn shipped_with(db: &DbServer, name: &str, pool: usize, env: &[(&str, &str)]) -> Server {
    let options = bench_options()
        .database(&db.uri, name)
        .env("PD2_CONFIG", workspace_root().join("config.toml").display())
        .env("PD2_PLUGINS__DIR", first_party_plugins().display())
        .env(
            "PD2_PLUGINS__CACHE_DIR",
            pd2_ticket_tests::shared_compile_cache().display(),
        )
        .env("PD2_MONGODB__MAX_POOL_SIZE", pool)
        .env("RUST_LOG", "warn");
    let options = env
        .iter()
        .fold(options, |options, (key, value)| options.env(key, value));
    Server::start_with(options).await
}

/// Database pools to measure at: 2 and 10, or `BENCH_POOLS=2,3,4`.
fn pools() -> Vec<usize> {
    std::env::var("BENCH_POOLS")
        .ok()
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2, 10])
}

pub fn source(seed: usize, len: usize) -> Vec<u8> {
    let line = format!("    int value{seed}() {{ return {seed}; }} // a student's source\n");
    line.bytes().cycle().take(len).collect()
}

/// A folder as uploaded: each file's path and bytes.
type Folder = Vec<(String, Vec<u8>)>;

fn shapes() -> Vec<(&'static str, Folder)> {
    let project = project_files("java-design-patterns");
    let forty = (0..40)
        .map(|i| (format!("hw/src/F{i}.java"), source(i, 5_000 + i * 2_440)))
        .collect();
    let twelve = (0..12)
        .map(|i| (format!("hw/src/G{i}.java"), source(i, 100_000)))
        .collect();
    let one = vec![("hw/big.txt".to_owned(), source(0, 1 << 20))];
    vec![
        ("real project (java-design-patterns)", project),
        ("40 files of 5–100 KB", forty),
        ("12 × 100 KB", twelve),
        ("one 1 MiB file", one),
    ]
}

fn form(files: &[(String, Vec<u8>)]) -> reqwest::multipart::Form {
    files
        .iter()
        .fold(reqwest::multipart::Form::new(), |form, (name, bytes)| {
            form.part(
                "files",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
            )
        })
}

pub async fn upload_shapes(db: &DbServer, quick: bool) {
    let duration = Duration::from_secs(if quick { 3 } else { 10 });
    println!(
        "\n## Upload shapes: what students send ({CONNECTIONS} connections, {} s each; shipped config.toml, first-party plugins)\n",
        duration.as_secs()
    );
    println!("| folder | files | MB | pool | req/s | MB/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let shapes = shapes();
    let http = pd2_ticket_tests::http_client()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    for pool in pools() {
        let server = shipped(db, &format!("bench-shapes-{pool}"), pool).await;
        for (i, (name, files)) in shapes.iter().enumerate() {
            let (count, bytes) = (
                files.len(),
                files.iter().map(|(_, b)| b.len()).sum::<usize>(),
            );
            let files = Arc::new(files.clone());
            let (c, url, token) = (
                http.clone(),
                server.url("/ticket"),
                server.token(&format!("{}", 100 + i)),
            );
            let r = load(duration, 201, move || {
                c.post(&url)
                    .bearer_auth(&token)
                    .multipart(form(&files))
                    .send()
            })
            .await;
            let rate = r.requests as f64 / r.elapsed.as_secs_f64();
            println!(
                "| {name} | {count} | {:.2} | {pool} | {rate:.1} | {:.1} | {:.0} | {:.0} | {} |",
                bytes as f64 / 1e6,
                rate * bytes as f64 / 1e6,
                r.percentile(0.5).as_secs_f64() * 1000.0,
                r.percentile(0.99).as_secs_f64() * 1000.0,
                r.errors
            );
            for (why, n) in &r.why {
                eprintln!("  {name}, pool {pool}: {n} × {why}");
            }
        }
    }
}

/// DELETE p50 for an author with 20, 2,000 and 20,000 tickets. The first
/// 20 are real uploads; the rest are copies of one of them inserted
/// through the driver (their records only: a delete never reads another
/// ticket's bytes), numbered below the real ones.
pub async fn deletes(db: &DbServer) {
    println!("\n## DELETE as an author's tickets grow (shipped config.toml, pool 2)\n");
    println!("| tickets of the author | DELETE p50 ms | p90 ms | max ms |");
    println!("|---|---|---|---|");
    let server = shipped(db, "bench-deletes", 2).await;
    let token = server.token("7");
    let http = pd2_ticket_tests::http_client()
        .build()
        .expect("http client");
    let tickets = server.mongo().await.collection::<Document>("tickets");
    let template = {
        let made = create_ticket(&server, &token, &[("Main.java", b"class Main {}")], None).await;
        let id = made["id"].as_str().expect("id");
        tickets
            .find_one(doc! { "_id": id })
            .await
            .expect("find")
            .expect("the ticket")
    };
    let mut have = 1usize;
    for target in [20usize, 2_000, 20_000] {
        if have < target {
            let copies: Vec<Document> = (have..target)
                .map(|n| {
                    let mut copy = template.clone();
                    copy.insert("_id", format!("filler{n:08}"));
                    copy.insert("seq", -(n as i64));
                    copy
                })
                .collect();
            for batch in copies.chunks(5_000) {
                tickets.insert_many(batch.to_vec()).await.expect("insert");
            }
            have = target;
        }
        // Twenty real tickets, deleted one at a time.
        let mut ids = Vec::new();
        for i in 0..20 {
            let name = format!("Del{i}.java");
            let made =
                create_ticket(&server, &token, &[(name.as_str(), b"class Del {}")], None).await;
            ids.push(made["id"].as_str().expect("id").to_owned());
        }
        let mut took = Vec::new();
        for id in ids {
            let started = Instant::now();
            let response = http
                .delete(server.url(&format!("/ticket/7/{id}")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("delete");
            took.push(started.elapsed());
            assert_eq!(response.status(), 204);
        }
        took.sort();
        println!(
            "| {target} | {:.1} | {:.1} | {:.1} |",
            percentile(&took, 0.5),
            percentile(&took, 0.9),
            took.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        );
    }
}

/// 20 clients each upload 10 × 1 MiB at once, beside 20 tasks writing
/// the same files to GridFS through the same driver: rounds alternate
/// between the two, so a drift of the machine (a build finishing, the
/// database's cache warming) hits both alike; the median round is compared.
pub async fn big_uploads(db: &DbServer) {
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 5;
    println!(
        "\n## {CLIENTS} concurrent uploads of 10 × 1 MiB vs raw GridFS writes (same bytes, same driver; {ROUNDS} alternating rounds each)\n"
    );
    println!(
        "| path | pool | MiB/s per round | median MiB/s | CPU s per round: database / server / bench client | CPU busy (2 cores) |"
    );
    println!("|---|---|---|---|---|---|");
    let files: Arc<Folder> = Arc::new(
        (0..10)
            .map(|i| (format!("data/part{i}.txt"), source(i, 1 << 20)))
            .collect(),
    );
    let total = (CLIENTS * 10) << 20;
    let mib_s = |elapsed: Duration| total as f64 / (1 << 20) as f64 / elapsed.as_secs_f64();
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // CPU the database, the server and this bench spent over the rounds
    // of one path, in seconds per round, and how busy that kept the cores.
    let me = std::process::id();
    let cpu = |db: u32, server: u32| [cpu_time(db), cpu_time(server), cpu_time(me)];
    let spent = |before: [Duration; 3], after: [Duration; 3], took: Duration| {
        let used: Vec<f64> = (0..3)
            .map(|i| (after[i] - before[i]).as_secs_f64() / ROUNDS as f64)
            .collect();
        let busy = 100.0 * used.iter().sum::<f64>() * ROUNDS as f64 / (took.as_secs_f64() * cores);
        (
            format!("{:.2} / {:.2} / {:.2}", used[0], used[1], used[2]),
            busy,
        )
    };
    let mut medians = Vec::new();
    for pool in pools() {
        let server = Arc::new(shipped(db, &format!("bench-big-{pool}"), pool).await);
        let client = mongodb::Client::with_options({
            let mut options = mongodb::options::ClientOptions::parse(&db.uri)
                .await
                .expect("options");
            options.max_pool_size = Some(pool as u32);
            options
        })
        .expect("client");
        let bucket = client.database(&format!("bench-big-{pool}")).gridfs_bucket(
            mongodb::options::GridFsBucketOptions::builder()
                .bucket_name("rawbench".to_owned())
                .chunk_size_bytes(255 * 1024)
                .build(),
        );
        let (mut api, mut raw) = (Vec::new(), Vec::new());
        let zero = [Duration::ZERO; 3];
        let (mut api_cpu, mut raw_cpu) = (zero, zero);
        let (mut api_took, mut raw_took) = (Duration::ZERO, Duration::ZERO);
        let add = |total: &mut [Duration; 3], before: [Duration; 3], after: [Duration; 3]| {
            for i in 0..3 {
                total[i] += after[i] - before[i];
            }
        };
        for _ in 0..ROUNDS {
            let before = cpu(db.pid(), server.pid());
            let started = Instant::now();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (server, files) = (server.clone(), files.clone());
                    tokio::spawn(async move {
                        let token = server.token(&format!("{}", 200 + c));
                        server
                            .post("/ticket", &token)
                            .multipart(form(&files))
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                    })
                })
                .collect();
            for c in clients {
                assert_eq!(c.await.expect("client").expect("upload"), 201);
            }
            api.push(mib_s(started.elapsed()));
            api_took += started.elapsed();
            add(&mut api_cpu, before, cpu(db.pid(), server.pid()));

            let before = cpu(db.pid(), server.pid());
            let started = Instant::now();
            let writers: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (bucket, files) = (bucket.clone(), files.clone());
                    tokio::spawn(async move {
                        for (name, bytes) in files.iter() {
                            let mut up = bucket.open_upload_stream(name).await.expect("open");
                            up.write_all(bytes).await.expect("write");
                            up.close().await.expect("close");
                        }
                    })
                })
                .collect();
            for w in writers {
                w.await.expect("writer");
            }
            raw.push(mib_s(started.elapsed()));
            raw_took += started.elapsed();
            add(&mut raw_cpu, before, cpu(db.pid(), server.pid()));
        }
        let (api_spent, api_busy) = spent(zero, api_cpu, api_took);
        let (raw_spent, raw_busy) = spent(zero, raw_cpu, raw_took);
        println!(
            "| API: POST /ticket | {pool} | {} | {:.1} | {api_spent} | {api_busy:.0} % |",
            show(&api),
            median(&api)
        );
        println!(
            "| raw GridFS upload streams | {pool} | {} | {:.1} | {raw_spent} | {raw_busy:.0} % |",
            show(&raw),
            median(&raw)
        );
        // 2 GB a pool: gone before the next, so repeated runs do not fill
        // the disk.
        let _ = client.database(&format!("bench-big-{pool}")).drop().await;
        medians.push((pool, median(&api), median(&raw)));
    }
    for (pool, api, raw) in medians {
        println!(
            "\nPool {pool}: the API reaches {:.0} % of raw GridFS writes (median of {ROUNDS}).",
            100.0 * api / raw
        );
    }
}

/// What a repeat view of a file costs a TA now that every signed-in answer
/// is `private, no-cache` (issue 21): before, the browser reused a file or
/// preview for 10 minutes without asking (and handed it to the next user of
/// the same browser too); now it asks each time with `If-None-Match` and
/// gets a `304`. Measured on the real project's largest source.
pub async fn repeat_views(db: &DbServer) {
    const ROUNDS: usize = 50;
    let server = shipped(db, "bench-repeat", 2).await;
    let token = server.token("300");
    let (path, bytes) = project_files("java-design-patterns")
        .into_iter()
        .filter(|(p, _)| p.ends_with(".java"))
        .max_by_key(|(_, b)| b.len())
        .expect("a java file");
    let made = create_ticket(&server, &token, &[(path.as_str(), bytes.as_slice())], None).await;
    let id = made["id"].as_str().expect("id");
    let http = pd2_ticket_tests::http_client()
        .build()
        .expect("http client");
    println!(
        "\n## Repeat views, {path} ({} bytes): {ROUNDS} requests each, one at a time\n",
        bytes.len()
    );
    println!("| request | status | bytes | p50 ms | p90 ms |");
    println!("|---|---|---|---|---|");
    for route in ["files", "preview"] {
        let url = server.url(&format!("/ticket/@me/{id}/{route}/{path}"));
        let first = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("first view");
        let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
        let size = first.bytes().await.expect("body").len();
        for (what, tag) in [
            ("repeat view, 200", None),
            ("repeat view, If-None-Match", Some(&etag)),
        ] {
            let mut took = Vec::new();
            let mut status = 0;
            let mut got = 0;
            for _ in 0..ROUNDS {
                let started = Instant::now();
                let mut request = http.get(&url).bearer_auth(&token);
                if let Some(tag) = tag {
                    request = request.header("if-none-match", tag);
                }
                let response = request.send().await.expect("view");
                status = response.status().as_u16();
                got = response.bytes().await.expect("body").len();
                took.push(started.elapsed());
            }
            took.sort();
            println!(
                "| GET {route}/ ({what}) | {status} | {got} of {size} | {:.2} | {:.2} |",
                percentile(&took, 0.5),
                percentile(&took, 0.9)
            );
        }
    }
}

/// Slow is not down (issue 22): 96 students upload 2 MB folders at once
/// while two other processes burn the CPU, through a database that still
/// answers; then the database freezes in the middle of large uploads, and
/// every request must get its 503 within `mongodb.timeout_ms` + 0.5 s.
pub async fn slow_not_down(db: &DbServer) {
    const CLIENTS: usize = 96;
    let proxy = pd2_ticket_tests::proxy::Proxy::start(&format!("127.0.0.1:{}", db.port)).await;
    let server = Arc::new(
        Server::start_with(
            bench_options()
                .database(&proxy.uri, "bench-slow")
                .env("PD2_CONFIG", workspace_root().join("config.toml").display())
                .env("PD2_PLUGINS__DIR", first_party_plugins().display())
                .env(
                    "PD2_PLUGINS__CACHE_DIR",
                    pd2_ticket_tests::shared_compile_cache().display(),
                )
                .env("PD2_LIMITS__MAX_TICKET_SIZE", 64 << 20)
                .env("RUST_LOG", "warn"),
        )
        .await,
    );
    let folder: Arc<Folder> = Arc::new(
        (0..20)
            .map(|i| (format!("hw/src/F{i}.java"), source(i, 100_000)))
            .collect(),
    );
    // Tokens first: minting one asks the database (for the secret).
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..CLIENTS)
            .map(|c| server.token(&format!("{}", 400 + c)))
            .collect(),
    );
    // Two processes that burn a core each, killed on every path (drop).
    struct Burners(Vec<std::process::Child>);
    impl Drop for Burners {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let burners = Burners(
        (0..2)
            .map(|_| {
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("a burner")
            })
            .collect(),
    );
    println!(
        "\n## Slow is not down: {CLIENTS} concurrent uploads of 20 × 100 KB, two processes burning the CPU (shipped config, pool 2)\n"
    );
    println!("| round | answers | slowest ms | load average (1 min) |");
    println!("|---|---|---|---|");
    for round in 1..=3 {
        let started = Instant::now();
        let uploads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (server, folder, tokens) = (server.clone(), folder.clone(), tokens.clone());
                tokio::spawn(async move {
                    let token = &tokens[c];
                    let response = server
                        .post("/ticket", token)
                        .multipart(form(&folder))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 201 => "201".to_owned(),
                        Ok(r) => unexpected(r).await,
                        Err(e) => format!("client error: {e}"),
                    }
                })
            })
            .collect();
        let mut answers = std::collections::BTreeMap::<String, usize>::new();
        for upload in uploads {
            *answers
                .entry(upload.await.expect("upload task"))
                .or_default() += 1;
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "| {round} | {} | {:.0} | {} |",
            answers
                .iter()
                .map(|(k, n)| format!("{n} × {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            started.elapsed().as_secs_f64() * 1000.0,
            load.split_whitespace().next().unwrap_or("?")
        );
    }
    drop(burners);
    let log = server.log_text();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    println!(
        "\nServer log meanwhile: {} × database unavailable (health check), {} × timed out, {} × database available again.",
        lines("database unavailable\""),
        lines("timed out"),
        lines("database available")
    );
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(8)
    {
        println!("    {}", line.chars().take(200).collect::<String>());
    }

    // A freeze in the middle of large uploads (10 × 1 MiB each).
    let big: Arc<Folder> = Arc::new(
        (0..10)
            .map(|i| (format!("data/part{i}.txt"), source(i, 1 << 20)))
            .collect(),
    );
    let uploads: Vec<_> = (0..20)
        .map(|c| {
            let (server, big, tokens) = (server.clone(), big.clone(), tokens.clone());
            tokio::spawn(async move {
                let token = &tokens[c];
                let response = server
                    .post("/ticket", token)
                    .multipart(form(&big))
                    .send()
                    .await;
                (
                    Instant::now(),
                    match response {
                        Ok(r) => r.status().as_u16().to_string(),
                        Err(e) => format!("client error: {e}"),
                    },
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.freeze();
    let frozen = Instant::now();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    let mut latest = Duration::ZERO;
    for upload in uploads {
        let (at, answer) = upload.await.expect("upload task");
        if at > frozen {
            latest = latest.max(at - frozen);
        }
        *answers.entry(answer).or_default() += 1;
    }
    proxy.thaw();
    println!(
        "\nFreeze in the middle of 20 uploads of 10 × 1 MiB (`mongodb.timeout_ms` 2000): {}; the last answer {:.0} ms after the freeze.",
        answers
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        latest.as_secs_f64() * 1000.0
    );
}
