//! `bench --memory-waves`: memory held for uploads, and given back (issue 22).
//!
//! Waves of clients that each send a whole 2 MB upload (20 × 100 KB) and
//! hang up 10–500 ms later without reading the answer, as an impatient
//! class (or anyone signed in) can. The server's RSS is read from `/proc`
//! every 100 ms during the waves and 30 s after them. Run it against
//! another build with `TEST_SERVER_BIN=path` (the allocators compared in
//! BENCHMARKS.md are builds with `--features` of the server).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pd2_ticket_tests::{DbServer, multipart, sample};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use super::shapes::{shipped_with, source};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server's resident set now, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    pd2_ticket_tests::proc_status_kib(pid, "VmRSS") as f64 / 1024.0
}

/// One impatient client: the whole upload, a pause, and gone.
async fn hang_up_after_sending(port: u16, token: String, body: Arc<Vec<u8>>, pause: Duration) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let head = multipart::post_head(port, Some(&token), body.len());
    if stream.write_all(&head).await.is_ok() && stream.write_all(&body).await.is_ok() {
        tokio::time::sleep(pause).await;
    }
    drop(stream);
}

pub async fn waves(db: &DbServer) {
    let clients = env_usize("BENCH_CLIENTS", 320);
    let waves = env_usize("BENCH_WAVES", 6);
    let log = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let server = Arc::new(
        shipped_with(
            db,
            "bench-memory",
            2,
            &[
                ("PD2_LIMITS__MAX_TICKET_SIZE", "67108864"),
                ("RUST_LOG", &log),
                ("PD2_DISCORD__ADMINS", r#"["1"]"#),
            ],
        )
        .await,
    );
    let pid = server.pid();
    let port: u16 = server
        .url("")
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the server's port");
    let mut body = Vec::new();
    for i in 0..20 {
        body.extend(multipart::file_part(
            &format!("hw/src/F{i}.java"),
            &source(i, 100_000),
        ));
    }
    body.extend(multipart::closing());
    let body = Arc::new(body);
    let tokens: Vec<String> = (0..clients)
        .map(|c| server.token(&format!("{}", 900 + c)))
        .collect();

    // The sampler: peak RSS while the waves run.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let kib = (rss_mib(pid) * 1024.0) as u64;
                peak.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let before = rss_mib(pid);
    println!(
        "\n## Memory: {waves} waves of {clients} clients sending 2 MB (20 × 100 KB) and hanging up 10–500 ms later (shipped config, pool 2)\n"
    );
    println!("| after wave | seconds | RSS MiB |");
    println!("|---|---|---|");
    let started = Instant::now();
    for wave in 1..=waves {
        let tasks: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(c, token)| {
                // 10–500 ms, spread over the clients without a random source.
                let pause = Duration::from_millis(10 + (c as u64 * 7919 + wave as u64 * 31) % 491);
                tokio::spawn(hang_up_after_sending(
                    port,
                    token.clone(),
                    body.clone(),
                    pause,
                ))
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        println!(
            "| {wave} | {:.1} | {:.0} |",
            started.elapsed().as_secs_f64(),
            rss_mib(pid)
        );
    }
    // Uploads the clients left behind still run: wait until the server has
    // counted every one (or the count stops for a minute), then 30 s more.
    let admin = server.token("1");
    let attempts = (clients * waves) as f64;
    let (mut counted, mut stored, mut busy, mut moved) = (0.0, 0.0, 0.0, Instant::now());
    let mut others = (0.0, 0.0);
    while counted < attempts && moved.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = match server.get("/metrics", &admin).send().await {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default(),
            Ok(r) => {
                println!("GET /metrics: {}", super::unexpected(r).await);
                continue;
            }
            Err(e) => {
                println!("GET /metrics: {e}");
                continue;
            }
        };
        let outcome = |o: &str| sample(&metrics, &format!("pd2_uploads_total{{outcome=\"{o}\"}}"));
        let now = outcome("stored") + outcome("rejected") + outcome("failed") + outcome("busy");
        if now != counted {
            moved = Instant::now();
        }
        (counted, stored, busy) = (now, outcome("stored"), outcome("busy"));
        others = (outcome("rejected"), outcome("failed"));
    }
    let settled = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let at_settle = rss_mib(pid);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = rss_mib(pid);
    println!(
        "\nRSS before {before:.0} MiB, peak during the waves {:.0} MiB, when the last upload finished ({:.0} s) {at_settle:.0} MiB, 30 s later {after:.0} MiB; {stored} of {attempts} uploads stored, {busy} refused busy (503), {} rejected (4xx), {} failed (5xx), {counted} ended.",
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        settled.as_secs_f64(),
        others.0,
        others.1,
    );
    if std::env::var_os("BENCH_LOG").is_some() {
        let log = server.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for line in &lines {
            if let Some(at) = line.find("status=") {
                let status: String = line[at..].chars().take(10).collect();
                *kinds.entry(status).or_default() += 1;
            }
        }
        println!("\nanswers logged: {kinds:?}");
        println!(
            "\nlast log lines:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }
}
