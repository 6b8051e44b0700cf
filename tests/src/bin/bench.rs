//! Benchmarks of the real server against a real SecantusDB on this machine.
//!
//! `cargo run --release -p pd2-ticket-tests --bin bench [-- --quick | --plugin-host | --first-party | --core | --upload-rate | --upload-shapes | --folders | --deletes | --big-uploads | --repeat-views | --slow-not-down | --memory-waves | --compression]`
//!
//! Starts its own database server and a release `pd2-ticket`, then measures:
//! request rate and latency of the main routes at 32 connections; upload and
//! download throughput of a 50 MiB ticket next to raw GridFS through the
//! same driver; and the server's peak RSS while 20 clients upload 10 MiB
//! files at once. Prints a Markdown report for BENCHMARKS.md.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{AsyncReadExt, AsyncWriteExt};
use pd2_ticket_tests::{
    DbServer, Server, bench_options, create_ticket, first_party_plugins, fixture_plugins, images,
    plugin_dir, server_binary, upload,
};

#[path = "../bench/memory.rs"]
mod memory;
#[path = "../bench/shapes.rs"]
mod shapes;
#[path = "../bench/versions.rs"]
mod versions;
#[path = "../bench/wire.rs"]
mod wire;

const CONNECTIONS: usize = 32;

struct Latencies {
    requests: usize,
    errors: usize,
    /// What the errors were: status and the start of the body (or the
    /// client's error), with how often each came.
    why: std::collections::BTreeMap<String, usize>,
    elapsed: Duration,
    sorted: Vec<Duration>,
}

impl Latencies {
    fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.sorted.len() as f64 * p).ceil() as usize).clamp(1, self.sorted.len()) - 1;
        self.sorted[i]
    }
    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.50).as_secs_f64() * 1000.0,
            self.percentile(0.99).as_secs_f64() * 1000.0,
            self.errors
        )
    }
}

/// An answer other than the one expected, as the tables list it: its
/// status and the start of its body.
async fn unexpected(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    format!("{status} {}", body.chars().take(120).collect::<String>())
}

/// Runs `make()` from `CONNECTIONS` workers for `duration`.
async fn load<F, Fut>(duration: Duration, expect: u16, make: F) -> Latencies
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut why = std::collections::BTreeMap::<String, usize>::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                let error = match make().await {
                    Ok(r) if r.status().as_u16() == expect => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                        continue;
                    }
                    Ok(r) => unexpected(r).await,
                    Err(e) => format!("client: {e}"),
                };
                *why.entry(error).or_default() += 1;
            }
            (latencies, why)
        }));
    }
    let mut sorted = Vec::new();
    let mut why = std::collections::BTreeMap::<String, usize>::new();
    for w in workers {
        let (l, w) = w.await.expect("worker");
        sorted.extend(l);
        for (k, n) in w {
            *why.entry(k).or_default() += n;
        }
    }
    let errors = why.values().sum();
    let elapsed = start.elapsed();
    sorted.sort();
    Latencies {
        requests: sorted.len(),
        errors,
        why,
        elapsed,
        sorted,
    }
}

/// [`load`] of uploads of one 100 KiB file named `name`.
async fn upload_rate(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    duration: Duration,
    name: &'static str,
) -> Latencies {
    let body = Arc::new(pattern(100 * 1024, 7));
    let (c, url, tok) = (http.clone(), server.url("/ticket"), token.to_owned());
    load(duration, 201, move || {
        let form = reqwest::multipart::Form::new().part(
            "files",
            reqwest::multipart::Part::bytes(body.as_ref().clone()).file_name(name),
        );
        c.post(&url).bearer_auth(&tok).multipart(form).send()
    })
    .await
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    pd2_ticket_tests::proc_status_kib(pid, "VmHWM")
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let duration = Duration::from_secs(if quick { 2 } else { 10 });
    let db = DbServer::start();
    // `--plugin-host`: only the plugin host section (it takes ~1 min).
    if std::env::args().any(|a| a == "--plugin-host") {
        plugin_host_section(&db).await;
        return;
    }
    // `--core`: round trips per route, upload rate, and how lists and
    // uploads scale with an author's tickets (issue 13; ~3 min).
    // `--upload-rate`: only the core section's upload rate (~30 s).
    if std::env::args().any(|a| a == "--upload-rate") {
        let server = core_server(&db).await;
        upload_rate_table(&db, &server, "3", Duration::from_secs(10)).await;
        return;
    }
    // `--upload-shapes`: the folders students send, DELETE as an author's
    // tickets grow, and big uploads beside raw GridFS (issue 20; ~5 min).
    // `--folders`, `--deletes` and `--big-uploads` run one of its parts.
    if std::env::args().any(|a| a == "--upload-shapes") {
        shapes::upload_shapes(&db, quick).await;
        shapes::deletes(&db).await;
        shapes::big_uploads(&db).await;
        return;
    }
    if std::env::args().any(|a| a == "--folders") {
        shapes::upload_shapes(&db, quick).await;
        return;
    }
    if std::env::args().any(|a| a == "--slow-not-down") {
        shapes::slow_not_down(&db).await;
        return;
    }
    // `--memory-waves`: RSS while waves of clients upload and hang up, and
    // 30 s after (issue 22; ~2 min).
    if std::env::args().any(|a| a == "--memory-waves") {
        memory::waves(&db).await;
        return;
    }
    // `--compression`: bytes on the wire per encoding, and their cost.
    if std::env::args().any(|a| a == "--compression") {
        wire::compression(&db).await;
        return;
    }
    // `--versions`: storage of 10 versions, version uploads, diffs (issue 25).
    if std::env::args().any(|a| a == "--versions") {
        versions::versions(&db).await;
        return;
    }
    if std::env::args().any(|a| a == "--repeat-views") {
        shapes::repeat_views(&db).await;
        return;
    }
    if std::env::args().any(|a| a == "--deletes") {
        shapes::deletes(&db).await;
        return;
    }
    if std::env::args().any(|a| a == "--big-uploads") {
        shapes::big_uploads(&db).await;
        return;
    }
    if std::env::args().any(|a| a == "--core") {
        core_section(&db).await;
        return;
    }
    // `--first-party`: only the first-party renderers' latencies and sizes.
    if std::env::args().any(|a| a == "--first-party") {
        first_party_section(&db).await;
        return;
    }
    let options = bench_options()
        .database(&db.uri, "bench")
        .env("PD2_LIMITS__MAX_FILE_SIZE", 16 << 20)
        .env("PD2_LIMITS__MAX_TICKET_SIZE", 64 << 20)
        .admins(&["1"])
        .env("RUST_LOG", "warn");
    let server = Server::start_with(options).await;
    let token = server.token("1");
    let http = pd2_ticket_tests::http_client()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");

    println!(
        "## Request rates ({CONNECTIONS} connections, {}s each)\n",
        duration.as_secs()
    );
    println!("| route | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|");

    // Something to list and read.
    let mut last_id = String::new();
    for i in 0..20 {
        let name = format!("Main{i}.java");
        let t = create_ticket(&server, &token, &[(name.as_str(), &pattern(4096, i))], None).await;
        last_id = t["id"].as_str().expect("id").to_owned();
    }

    // The server alone, no database: the ceiling for the routes below.
    let (c, url) = (http.clone(), server.url("/ping"));
    let r = load(duration, 200, move || c.get(&url).send()).await;
    println!("{}", r.row("GET /ping (no database)"));

    let (c, url) = (http.clone(), server.url("/health"));
    let r = load(duration, 200, move || c.get(&url).send()).await;
    println!("{}", r.row("GET /health (cached check, no database)"));

    let (c, url, tok) = (http.clone(), server.url("/ticket/@me"), token.clone());
    let r = load(duration, 200, move || c.get(&url).bearer_auth(&tok).send()).await;
    println!("{}", r.row("GET /ticket/@me"));

    let (c, url, tok) = (
        http.clone(),
        server.url(&format!("/ticket/@me/{last_id}/files/Main19.java")),
        token.clone(),
    );
    let r = load(duration, 200, move || c.get(&url).bearer_auth(&tok).send()).await;
    println!(
        "{}",
        r.row("GET /ticket/@me/{id}/files/Main19.java (4 KiB)")
    );

    let r = upload_rate(&http, &server, &token, duration, "upload.bin").await;
    println!("{}", r.row("POST /ticket (one 100 KiB file)"));

    // Throughput: a 50 MiB ticket of 10 files of 5 MiB.
    println!("\n## Throughput: 50 MiB ticket (10 × 5 MiB) vs raw GridFS, same driver\n");
    println!("| path | upload MiB/s | download MiB/s |");
    println!("|---|---|---|");
    let files: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("part{i}.bin"), pattern(5 << 20, i as u8)))
        .collect();
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let rounds = if quick { 1 } else { 3 };

    let mut api_up = Vec::new();
    let mut api_zip = Vec::new();
    let mut api_files = Vec::new();
    for _ in 0..rounds {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let t = Instant::now();
        let ticket = create_ticket(&server, &token, &refs, None).await;
        api_up.push(mib_per_s(total, t.elapsed()));
        let id = ticket["id"].as_str().expect("id").to_owned();

        let t = Instant::now();
        let zip = http
            .get(server.url(&format!("/ticket/@me/{id}/download")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("zip")
            .bytes()
            .await
            .expect("zip body");
        assert!(zip.len() >= total);
        api_zip.push(mib_per_s(total, t.elapsed()));

        let t = Instant::now();
        for (name, bytes) in &files {
            let got = http
                .get(server.url(&format!("/ticket/@me/{id}/files/{name}")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("file")
                .bytes()
                .await
                .expect("file body");
            assert_eq!(got.len(), bytes.len());
        }
        api_files.push(mib_per_s(total, t.elapsed()));
    }

    let bucket = server.mongo().await.gridfs_bucket(
        mongodb::options::GridFsBucketOptions::builder()
            .bucket_name("rawbench".to_owned())
            .chunk_size_bytes(255 * 1024)
            .build(),
    );
    let mut raw_up = Vec::new();
    let mut raw_down = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let mut ids = Vec::new();
        for (name, bytes) in &files {
            let mut up = bucket.open_upload_stream(name).await.expect("open upload");
            up.write_all(bytes).await.expect("write");
            up.close().await.expect("close");
            ids.push(up.id().clone());
        }
        raw_up.push(mib_per_s(total, t.elapsed()));
        let t = Instant::now();
        for id in &ids {
            let mut down = bucket
                .open_download_stream(id.clone())
                .await
                .expect("open download");
            let mut out = Vec::new();
            down.read_to_end(&mut out).await.expect("read");
        }
        raw_down.push(mib_per_s(total, t.elapsed()));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "| raw GridFS (driver, in-process) | {:.1} | {:.1} |",
        best(&raw_up),
        best(&raw_down)
    );
    println!(
        "| API: POST /ticket, GET files/ one by one | {:.1} | {:.1} |",
        best(&api_up),
        best(&api_files)
    );
    println!(
        "| API: GET download (zip, stored) | – | {:.1} |",
        best(&api_zip)
    );
    println!(
        "\nAPI / raw: upload {:.0} %, file download {:.0} %, zip {:.0} % (best of {rounds}).",
        100.0 * best(&api_up) / best(&raw_up),
        100.0 * best(&api_files) / best(&raw_down),
        100.0 * best(&api_zip) / best(&raw_down),
    );

    plugin_section(&server, &db, &token, &files, total, rounds).await;
    first_party_section(&db).await;
    plugin_host_section(&db).await;

    // Memory: 20 clients upload a 10 MiB file each at once, twice.
    println!("\n## Peak server RSS: 20 concurrent uploads of 10 MiB\n");
    println!("| moment | VmHWM MiB |");
    println!("|---|---|");
    println!(
        "| before | {:.1} |",
        vm_hwm_kib(server.pid()) as f64 / 1024.0
    );
    let big = Arc::new(pattern(10 << 20, 3));
    for round in 1..=2 {
        let mut clients = Vec::new();
        for i in 0..20 {
            let (c, url, tok, big) = (
                http.clone(),
                server.url("/ticket"),
                token.clone(),
                big.clone(),
            );
            clients.push(tokio::spawn(async move {
                let form = reqwest::multipart::Form::new().part(
                    "files",
                    reqwest::multipart::Part::bytes(big.as_ref().clone())
                        .file_name(format!("big{i}.bin")),
                );
                c.post(&url)
                    .bearer_auth(&tok)
                    .multipart(form)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
        for c in clients {
            assert_eq!(c.await.expect("client").expect("upload"), 201);
        }
        println!(
            "| after round {round} ({} MiB uploaded in all) | {:.1} |",
            round * 200,
            vm_hwm_kib(server.pid()) as f64 / 1024.0
        );
    }

    let (c, url, tok) = (http.clone(), server.url("/metrics"), token.clone());
    let r = load(Duration::from_secs(2), 200, move || {
        c.get(&url).bearer_auth(&tok).send()
    })
    .await;
    println!("\n## Operations\n");
    println!("| route | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|");
    println!("{}", r.row("GET /metrics (admin, after the whole run)"));
    outage_section(db, &server, &token, &http).await;
}

/// Stops the database under a steady trickle of requests: how long until
/// requests get 503, how fast those come, and how long after the database
/// is back until they succeed again. Last, since it stops the database.
async fn outage_section(db: DbServer, server: &Server, token: &str, http: &reqwest::Client) {
    let url = server.url("/ticket/@me");
    let probe = || async {
        let t = Instant::now();
        let status = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        (status, t.elapsed())
    };
    println!("\n| outage (SIGTERM to SecantusDB, then restart) | ms |");
    println!("|---|---|");
    let (port, storage) = db.stop();
    let (status, first) = probe().await;
    assert_eq!(status, 503);
    println!(
        "| first request after the stop: answered 503 in | {:.1} |",
        first.as_secs_f64() * 1000.0
    );
    let mut fast = Vec::new();
    for _ in 0..50 {
        let (status, took) = probe().await;
        assert_eq!(status, 503);
        fast.push(took);
    }
    fast.sort();
    println!(
        "| later 503s (50 requests): p50 / max | {:.2} / {:.2} |",
        percentile(&fast, 0.5),
        fast.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    let _db = DbServer::start_at(port, storage);
    let listening = Instant::now();
    loop {
        if probe().await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "| database accepting connections → first 200 | {:.0} |",
        listening.elapsed().as_secs_f64() * 1000.0
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Hook overhead (in-process, via `pd2-ticket plugin bench`), preview
/// latency cold and cached, and upload throughput with a validator.
async fn plugin_section(
    plain: &Server,
    db: &DbServer,
    token: &str,
    files: &[(String, Vec<u8>)],
    total: usize,
    rounds: usize,
) {
    let misbehave = fixture_plugins().join("misbehave.wasm");
    let plain_text = first_party_plugins().join("plain-text.wasm");
    println!("\n## Plugins\n");
    println!(
        "Host overhead of one hook call (fresh pooled instance: instantiate + call + drop), in-process:\n"
    );
    let input = pd2_ticket_tests::temp_dir("bench-input").join("Main.txt");
    std::fs::write(&input, "x".repeat(1024)).expect("input");
    for (plugin, what) in [
        (&misbehave, "trivial validator (`validate-ticket`)"),
        (&plain_text, "plain-text render of 1 KiB"),
    ] {
        let out = std::process::Command::new(server_binary())
            .args(["plugin", "bench"])
            .arg(plugin)
            .arg(&input)
            .args(["--iterations", "5000"])
            .env("RUST_LOG", "error")
            .output()
            .expect("plugin bench");
        println!("- {what}: {}", String::from_utf8_lossy(&out.stdout).trim());
    }

    let dir = plugin_dir(&[&misbehave, &plain_text]);
    let options = bench_options()
        .database(&db.uri, "bench-plugins")
        .env("PD2_PLUGINS__DIR", dir.display())
        .env("PD2_LIMITS__MAX_FILE_SIZE", 16 << 20)
        .env("PD2_LIMITS__MAX_TICKET_SIZE", 64 << 20)
        .env("RUST_LOG", "warn");
    let server = Server::start_with(options).await;
    let ptoken = server.token("1");

    // Preview latency: 1,000-line text files, rendered by plain-text
    // (misbehave declines nothing but only matches *.txt: use .log).
    let text: String = (0..1000)
        .map(|i| format!("line {i}: some output of a student program\n"))
        .collect();
    let names: Vec<String> = (0..50).map(|i| format!("run{i}.log")).collect();
    let bodies: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("{i}\n{text}").into_bytes())
        .collect();
    let refs: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(bodies.iter().map(Vec::as_slice))
        .collect();
    let ticket = create_ticket(&server, &ptoken, &refs, None).await;
    let id = ticket["id"].as_str().expect("id").to_owned();
    let (mut cold, mut cached, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for name in &names {
        for (bucket, path) in [
            (&mut cold, "preview"),
            (&mut cached, "preview"),
            (&mut raw, "files"),
        ] {
            let t = Instant::now();
            let r = server
                .get(&format!("/ticket/@me/{id}/{path}/{name}"), &ptoken)
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await;
            bucket.push(t.elapsed());
        }
    }
    for v in [&mut cold, &mut cached, &mut raw] {
        v.sort();
    }
    println!(
        "\nPreview latency, 1,000-line text file (~45 KiB), plain-text renderer, one connection:\n"
    );
    println!("| request | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| preview, cold (plugin runs, result cached) | {:.2} | {:.2} |",
        percentile(&cold, 0.5),
        percentile(&cold, 0.99)
    );
    println!(
        "| preview, cached | {:.2} | {:.2} |",
        percentile(&cached, 0.5),
        percentile(&cached, 0.99)
    );
    println!(
        "| files/ (same file, no plugin) | {:.2} | {:.2} |",
        percentile(&raw, 0.5),
        percentile(&raw, 0.99)
    );

    // Upload throughput: the same 50 MiB as .txt, validated by misbehave
    // (validate-file reads 4 bytes of each file; validate-ticket once).
    let txt: Vec<(String, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.replace(".bin", ".txt"), b.as_slice()))
        .collect();
    let refs: Vec<(&str, &[u8])> = txt.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let mut best = [0.0f64; 2];
    for _ in 0..rounds {
        for (i, (srv, tok)) in [(plain, token), (&server, ptoken.as_str())]
            .into_iter()
            .enumerate()
        {
            let t = Instant::now();
            create_ticket(srv, tok, &refs, None).await;
            best[i] = best[i].max(mib_per_s(total, t.elapsed()));
        }
    }
    println!("\nUpload of 50 MiB (10 × 5 MiB .txt), best of {rounds}:\n");
    println!("| server | MiB/s |");
    println!("|---|---|");
    println!("| no plugins | {:.1} |", best[0]);
    println!("| one validator (file + ticket hooks) | {:.1} |", best[1]);
}

fn java_source(variant: usize) -> Vec<u8> {
    let mut lines = vec![
        format!("// variant {variant}"),
        "public class Big {".to_owned(),
    ];
    for i in 0..997 {
        lines.push(format!(
            "    int f{i}(int x) {{ return x * {i} + \"s\".length(); }} // comment {i}"
        ));
    }
    lines.push("}".to_owned());
    lines.join("\n").into_bytes()
}

fn java_source_10k(variant: usize) -> Vec<u8> {
    let mut lines = vec![
        format!("// variant {variant}"),
        "public class Big {".to_owned(),
    ];
    for i in 0..9_997 {
        lines.push(format!(
            "    int f{i}(int x) {{ return x * {i} + \"s\".length(); }} // comment {i}"
        ));
    }
    lines.push("}".to_owned());
    lines.join("\n").into_bytes()
}

/// A notebook of 20 code cells with text output and 4 plot images
/// (~100 KiB PNGs each), between Markdown cells.
fn notebook(variant: usize) -> Vec<u8> {
    use base64::Engine;
    let mut cells = vec![serde_json::json!({
        "cell_type": "markdown",
        "source": format!("# Analysis, variant {variant}\n\nSome *notes* and a list:\n\n- one\n- two\n"),
    })];
    for i in 0..20 {
        let mut outputs = vec![serde_json::json!({
            "output_type": "stream", "name": "stdout", "text": format!("mean = {i}.5\n"),
        })];
        if i % 5 == 0 {
            let png = images::png(300, 200, |x, y| {
                [(x * y % 251) as u8, (x ^ y) as u8, (i * 10 + variant) as u8]
            });
            outputs.push(serde_json::json!({
                "output_type": "display_data",
                "data": {
                    "image/png": base64::engine::general_purpose::STANDARD.encode(png),
                    "text/plain": "<Figure>",
                },
            }));
        }
        cells.push(serde_json::json!({
            "cell_type": "code", "execution_count": i + 1,
            "source": format!("import statistics\nvalues = [x * {i} for x in range(100)]\nprint(f\"mean = {{statistics.mean(values)}}\")"),
            "outputs": outputs,
        }));
        cells.push(serde_json::json!({"cell_type": "markdown", "source": format!("## Step {i}\n\nWhat we saw.")}));
    }
    serde_json::json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
        "cells": cells,
    })
    .to_string()
    .into_bytes()
}

/// 5,000 rows of 6 columns.
fn csv(variant: usize) -> Vec<u8> {
    let mut out = format!("id,name,group,score,late,comment {variant}\n");
    for i in 0..5_000 {
        out.push_str(&format!(
            "{i},Student {i},G{},{}.{},{},\"note, with a comma {i}\"\n",
            i % 7,
            i % 10,
            i % 100,
            i % 3 == 0
        ));
    }
    out.into_bytes()
}

fn markdown(variant: usize) -> Vec<u8> {
    let mut md = format!("# Notes, variant {variant}\n\n");
    let mut i = 0;
    while md.len() < 200 * 1024 {
        md.push_str(&format!(
            "## Section {i}\n\nSome *emphasis*, `code`, a [link](https://example.com/{i}) and ~~old~~ text.\n\n\
             - [x] task {i}\n- [ ] another\n\n| a | b |\n|---|---|\n| {i} | {} |\n\n\
             ```java\nclass C{i} {{ int f() {{ return {i}; }} }}\n```\n\n",
            i * 2
        ));
        i += 1;
    }
    md.into_bytes()
}

fn jpeg(variant: usize) -> Vec<u8> {
    // 4.1 MP
    images::jpeg(2560, 1600, |x, y| {
        [
            (x / 10) as u8,
            (y / 7) as u8,
            ((x + y) as usize / 13 + variant) as u8,
        ]
    })
}

/// Makes one variant of a benchmark input.
type Sample = fn(usize) -> Vec<u8>;

/// Cold (plugin runs) and cached preview latency of the first-party
/// renderers, and their sizes.
async fn first_party_section(db: &DbServer) {
    let dir = first_party_plugins();
    let options = bench_options()
        .database(&db.uri, "bench-first-party")
        .env("PD2_PLUGINS__DIR", dir.display())
        .env("PD2_LIMITS__MAX_FILE_SIZE", 16 << 20)
        .env("RUST_LOG", "warn");
    let server = Server::start_with(options).await;
    let token = server.token("1");
    println!("\n## First-party plugins\n");
    println!(
        "Preview latency (one connection; cold = first request for new content, median of 3 variants; cached = median of 20):\n"
    );
    println!("| file | plugin | size KiB | cold ms | cached ms | files/ ms |");
    println!("|---|---|---|---|---|---|");
    let samples: [(&str, Sample); 6] = [
        ("Big.java", java_source),
        ("Big10k.java", java_source_10k),
        ("Notes.md", markdown),
        ("analysis.ipynb", notebook),
        ("grades.csv", csv),
        ("photo.jpg", jpeg),
    ];
    for (name, make) in samples {
        let mut cold = Vec::new();
        let mut cached = Vec::new();
        let mut raw = Vec::new();
        let mut plugin = String::new();
        let mut size = 0;
        for variant in 0..3 {
            let data = make(variant);
            size = data.len();
            let t = create_ticket(&server, &token, &[(name, &data)], None).await;
            let id = t["id"].as_str().expect("id").to_owned();
            let url = format!("/ticket/@me/{id}/preview/{name}");
            let started = Instant::now();
            let r = server.get(&url, &token).send().await.expect("preview");
            assert_eq!(r.status(), 200, "{name}");
            plugin = r.headers()["x-preview-plugin"]
                .to_str()
                .unwrap_or("")
                .to_owned();
            let _ = r.bytes().await;
            cold.push(started.elapsed());
            for _ in 0..if variant == 0 { 20 } else { 0 } {
                for (bucket, path) in [
                    (&mut cached, &url),
                    (&mut raw, &format!("/ticket/@me/{id}/files/{name}")),
                ] {
                    let started = Instant::now();
                    let r = server.get(path, &token).send().await.expect("get");
                    let _ = r.bytes().await;
                    bucket.push(started.elapsed());
                }
            }
        }
        for v in [&mut cold, &mut cached, &mut raw] {
            v.sort();
        }
        println!(
            "| {name} | {plugin} | {} | {:.1} | {:.2} | {:.2} |",
            size / 1024,
            percentile(&cold, 0.5),
            percentile(&cached, 0.5),
            percentile(&raw, 0.5)
        );
    }
    println!("\nPlugin sizes (`plugins/dist`, release, `opt-level = \"s\"`, LTO, stripped):\n");
    println!("| plugin | KiB |");
    println!("|---|---|");
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("dist").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        println!(
            "| {} | {} |",
            entry.file_name().to_string_lossy(),
            size / 1024
        );
    }
}

/// The plugin host under pressure: start-up with and without the compile
/// cache, upload latency while every renderer slot is busy, and peak RSS
/// while 32 renders of 60 MiB each are requested at once.
async fn plugin_host_section(db: &DbServer) {
    println!("\n## Plugin host\n");
    let cache = pd2_ticket_tests::temp_dir("bench-compile-cache");
    let dir = first_party_plugins();
    println!("Start-up with the five first-party plugins (time from spawn):\n");
    println!("| compile cache | first `/ping` ms | plugins loaded ms |");
    println!("|---|---|---|");
    for label in ["empty (compiles)", "warm (from disk)"] {
        let (ping, loaded) = start_up_times(dir, &cache).await;
        println!("| {label} | {ping:.0} | {loaded:.0} |");
    }

    let misbehave = fixture_plugins().join("misbehave.wasm");
    let pdir = plugin_dir(&[&misbehave]);
    let options = bench_options()
        .database(&db.uri, "bench-plugin-host")
        .env("PD2_PLUGINS__DIR", pdir.display())
        .env("PD2_PLUGINS__TIMEOUT_MS", 2000)
        .env("PD2_PLUGINS__FAILED_RENDER_CACHE_SECS", 0)
        .env("RUST_LOG", "warn");
    let server = Server::start_with(options).await;

    // Upload latency, idle and with every renderer busy looping.
    let uploader = server.token("1");
    let idle = upload_latencies(&server, &uploader, 40).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hogs = Vec::new();
    for u in 0..16 {
        let user = server.token(&format!("{}", 200 + u));
        let t = create_ticket(
            &server,
            &user,
            &[("loop.txt", format!("{u}").as_bytes())],
            None,
        )
        .await;
        let url = server.url(&format!(
            "/ticket/@me/{}/preview/loop.txt",
            t["id"].as_str().expect("id")
        ));
        for _ in 0..4 {
            let (stop, url, user) = (stop.clone(), url.clone(), user.clone());
            hogs.push(tokio::spawn(async move {
                let http = pd2_ticket_tests::http_client()
                    .build()
                    .expect("http client");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = http.get(&url).bearer_auth(&user).send().await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = upload_latencies(&server, &uploader, 40).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        let _ = h.await;
    }
    println!("\nUpload of one small `.txt` (validated by a plugin), one at a time, 40 each:\n");
    println!("| renderers | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| idle | {:.1} | {:.1} |",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99)
    );
    println!(
        "| 64 looping previews in flight (16 users × 4) | {:.1} | {:.1} |",
        percentile(&busy, 0.5),
        percentile(&busy, 0.99)
    );

    // 32 renders of 60 MiB each at once, from 8 users (4 slots each).
    let before = vm_hwm_kib(server.pid());
    let mut renders = Vec::new();
    for u in 0..8 {
        let user = server.token(&format!("{}", 300 + u));
        let names: Vec<String> = (0..4).map(|i| format!("hoard{i}.txt")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let t = create_ticket(&server, &user, &files, None).await;
        let id = t["id"].as_str().expect("id").to_owned();
        for name in names {
            let url = server.url(&format!("/ticket/@me/{id}/preview/{name}"));
            let user = user.clone();
            renders.push(tokio::spawn(async move {
                pd2_ticket_tests::http_client()
                    .build()
                    .expect("http client")
                    .get(&url)
                    .bearer_auth(&user)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for r in renders {
        *statuses.entry(r.await.unwrap_or(0)).or_default() += 1;
    }
    let peak = vm_hwm_kib(server.pid());
    println!(
        "\n32 concurrent renders touching 60 MiB each (`plugins.memory_budget` 1024 MiB): \
         peak RSS {:.0} MiB (before: {:.0} MiB); answers {statuses:?}",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
}

/// Spawns a server on `plugins` with `cache`; returns ms to the first
/// `/ping` and to `/health` saying the plugins are loaded.
async fn start_up_times(plugins: &std::path::Path, cache: &std::path::Path) -> (f64, f64) {
    let server = Server::start_with(
        bench_options()
            .env("PD2_PLUGINS__DIR", plugins.display())
            .env("PD2_PLUGINS__CACHE_DIR", cache.display())
            .env("RUST_LOG", "warn"),
    )
    .await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(server.start_times.ping), ms(server.start_times.plugins))
}

async fn upload_latencies(server: &Server, token: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        create_ticket(server, token, &[("a.txt", format!("{i}").as_bytes())], None).await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

/// Wire-protocol requests the database has answered (`serverStatus`'s
/// `network.numRequests`): every round trip of every client, counted by
/// the database itself, so any build of the server is measured the same.
async fn db_requests(client: &mongodb::Client) -> i64 {
    let status = client
        .database("admin")
        .run_command(mongodb::bson::doc! { "serverStatus": 1 })
        .await
        .expect("serverStatus");
    let network = status.get_document("network").expect("network section");
    network
        .get_i64("numRequests")
        .or_else(|_| network.get_i32("numRequests").map(i64::from))
        .expect("numRequests")
}

/// Round trips per request of `make`, over `n` requests one after another,
/// net of what the database saw meanwhile while idle (drivers' heartbeats,
/// the health check) and of our own `serverStatus` calls.
async fn round_trips<F, Fut>(db: &mongodb::Client, n: usize, expect: u16, make: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    // Lets the previous request's background writes (journal removal) land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_from = db_requests(db).await;
    let idle_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rate =
        (db_requests(db).await - idle_from - 1) as f64 / idle_start.elapsed().as_secs_f64();
    let before = db_requests(db).await;
    let start = Instant::now();
    for i in 0..n {
        let response = make(i).await;
        assert_eq!(response.status().as_u16(), expect, "round-trip sample");
        let _ = response.bytes().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = db_requests(db).await;
    let noise = idle_rate * start.elapsed().as_secs_f64() + 1.0;
    ((after - before) as f64 - noise).max(0.0) / n as f64
}

/// Creates tickets until `author` has `target`, 32 at a time.
async fn fill(server: &Arc<Server>, token: &str, have: usize, target: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(have));
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (server, token, next) = (server.clone(), token.to_owned(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= target {
                    return;
                }
                let name = format!("Main{i}.java");
                create_ticket(
                    &server,
                    &token,
                    &[(name.as_str(), &pattern(2048, i as u8))],
                    None,
                )
                .await;
            }
        }));
    }
    for w in workers {
        w.await.expect("filler");
    }
}

/// p50 in ms of `n` sequential requests.
async fn sequential_p50<F, Fut>(n: usize, expect: u16, make: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let response = make(i).await;
        assert_eq!(response.status().as_u16(), expect);
        let _ = response.bytes().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2].as_secs_f64() * 1000.0
}

/// The server `--core` measures: default plugins loaded (validators run on
/// every upload), returned once they are.
async fn core_server(db: &DbServer) -> Arc<Server> {
    let options = bench_options()
        .database(&db.uri, "bench-core")
        .env("PD2_PLUGINS__DIR", first_party_plugins().display())
        .env(
            "PD2_PLUGINS__CACHE_DIR",
            pd2_ticket_tests::shared_compile_cache().display(),
        )
        .env("PD2_LIMITS__MAX_FILE_SIZE", 4 << 20)
        .admins(&["1"])
        .env("RUST_LOG", "warn");
    let server = Arc::new(Server::start_with(options).await);
    let http = pd2_ticket_tests::http_client()
        .build()
        .expect("http client");
    let admin = server.token("1");
    pd2_ticket_tests::eventually("plugins not loaded", Duration::from_secs(120), || async {
        let m = http
            .get(server.url("/metrics"))
            .bearer_auth(&admin)
            .send()
            .await;
        match m {
            Ok(m) => {
                pd2_ticket_tests::sample(&m.text().await.unwrap_or_default(), "pd2_plugins_loaded")
                    >= 5.0
            }
            Err(_) => false,
        }
    })
    .await;
    server
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after `)`.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros((ticks(11) + ticks(12)) * 1_000_000 / hz)
}

/// The upload-rate table: one row of 100 KiB uploads from 32 connections,
/// with the CPU each process spent per upload.
async fn upload_rate_table(db: &DbServer, server: &Server, user: &str, duration: Duration) {
    println!(
        "\n## Upload rate, default plugins loaded ({CONNECTIONS} connections, {} s)\n",
        duration.as_secs()
    );
    println!(
        "| route | req/s | p50 ms | p99 ms | errors | database CPU ms / upload | server CPU ms / upload |"
    );
    println!("|---|---|---|---|---|---|---|");
    let admin = server.token("1");
    let commands = |metrics: String| -> Vec<(String, f64)> {
        metrics
            .lines()
            .filter(|l| l.starts_with("pd2_db_commands_total{"))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect()
    };
    let before = commands(server.metrics(&admin).await);
    let (db_cpu, server_cpu) = (cpu_time(db.pid()), cpu_time(server.pid()));
    let r = upload_rate(
        &pd2_ticket_tests::http_client()
            .build()
            .expect("http client"),
        server,
        &server.token(user),
        duration,
        "upload.txt",
    )
    .await;
    let per = |spent: Duration| spent.as_secs_f64() * 1000.0 / r.requests.max(1) as f64;
    println!(
        "{} {:.1} | {:.1} |",
        r.row("POST /ticket (one 100 KiB file)"),
        per(cpu_time(db.pid()) - db_cpu),
        per(cpu_time(server.pid()) - server_cpu)
    );
    let after = commands(server.metrics(&admin).await);
    let per_upload: Vec<String> = after
        .iter()
        .map(|(series, n)| {
            let was = before
                .iter()
                .find(|(s, _)| s == series)
                .map_or(0.0, |b| b.1);
            let name = series.split('"').nth(1).unwrap_or(series);
            (name, (n - was) / r.requests.max(1) as f64)
        })
        .filter(|(_, n)| *n >= 0.005)
        .map(|(name, n)| format!("{name} {n:.2}"))
        .collect();
    println!(
        "\nDatabase commands per upload under this load: {}.",
        per_upload.join(", ")
    );
}

async fn core_section(db: &DbServer) {
    let client = mongodb::Client::with_uri_str(&db.uri)
        .await
        .expect("client");
    let server = core_server(db).await;
    let token = server.token("1");
    let mut last_id = String::new();
    for i in 0..20 {
        let name = format!("Main{i}.java");
        let t = create_ticket(&server, &token, &[(name.as_str(), &pattern(4096, i))], None).await;
        last_id = t["id"].as_str().expect("id").to_owned();
    }

    println!("\n## Database round trips per request\n");
    println!(
        "Counted by the database (`serverStatus` `network.numRequests`), 20 requests one at a time, net of idle traffic; default plugins loaded.\n"
    );
    println!("| request | round trips |");
    println!("|---|---|");
    let get = |path: String| {
        let (server, token) = (server.clone(), token.clone());
        move |_| {
            let (server, token, path) = (server.clone(), token.clone(), path.clone());
            async move { server.get(&path, &token).send().await.expect("request") }
        }
    };
    let rows: [(&str, String); 4] = [
        ("GET /ticket (list, 20 tickets)", "/ticket".into()),
        ("GET /ticket/@me/{id}", format!("/ticket/@me/{last_id}")),
        (
            "GET …/files/Main19.java (4 KiB)",
            format!("/ticket/@me/{last_id}/files/Main19.java"),
        ),
        (
            "GET …/download (zip of 1 file)",
            format!("/ticket/@me/{last_id}/download"),
        ),
    ];
    for (name, path) in rows {
        let n = round_trips(&client, 20, 200, get(path)).await;
        println!("| {name} | {n:.1} |");
    }
    for (name, files) in [
        (
            "POST /ticket (one 100 KiB file)",
            vec![("upload.txt".to_owned(), pattern(100 << 10, 3))],
        ),
        (
            "POST /ticket (ten 10 KiB files)",
            (0..10)
                .map(|i| (format!("src/F{i}.java"), pattern(10 << 10, i)))
                .collect(),
        ),
    ] {
        let (server, token, files) = (server.clone(), token.clone(), Arc::new(files));
        let n = round_trips(&client, 20, 201, move |_| {
            let (server, token, files) = (server.clone(), token.clone(), files.clone());
            async move {
                let files: Vec<(&str, &[u8])> = files
                    .iter()
                    .map(|(n, b)| (n.as_str(), b.as_slice()))
                    .collect();
                upload(&server, &token, &files, None).await
            }
        })
        .await;
        println!("| {name} | {n:.1} |");
    }

    upload_rate_table(db, &server, "3", Duration::from_secs(10)).await;

    println!("\n## One author's tickets: 20 vs 200 vs 2,000\n");
    println!("Sequential requests; list = `GET /ticket` (10 per page), upload = one 1 MiB file.\n");
    println!("| tickets of the author | list p50 ms | upload p50 ms |");
    println!("|---|---|---|");
    let big = server.token("2");
    let mib = Arc::new(pattern(1 << 20, 9));
    let upload_p50 = |n: usize| {
        let (server, token, mib) = (server.clone(), big.clone(), mib.clone());
        async move {
            sequential_p50(n, 201, move |_| {
                let (server, token, mib) = (server.clone(), token.clone(), mib.clone());
                async move { upload(&server, &token, &[("big.txt", &mib)], None).await }
            })
            .await
        }
    };
    let list_p50 =
        |token: String| sequential_p50(100, 200, get_with(server.clone(), token, "/ticket"));
    println!("| 20 | {:.2} | – |", list_p50(token.clone()).await);
    // Each measurement's 10 uploads count towards the next target.
    let mut have = 0;
    for target in [200, 2000] {
        fill(&server, &big, have, target).await;
        let upload = upload_p50(10).await;
        println!(
            "| {target} | {:.2} | {upload:.1} |",
            list_p50(big.clone()).await
        );
        have = target + 10;
    }
}

fn get_with(
    server: Arc<Server>,
    token: String,
    path: &'static str,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = reqwest::Response>>> {
    move |_| {
        let (server, token) = (server.clone(), token.clone());
        Box::pin(async move { server.get(path, &token).send().await.expect("request") })
    }
}
