//! Running the server: health, metrics and logs; database outages; many
//! instances on one database; graceful shutdown.

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use pd2_ticket_tests::{
    DbServer, Server, ServerOptions, Stored, assert_error, create_ticket, eventually,
    first_party_plugins, json, multipart, sample,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn health(server: &Server) -> (u16, Value) {
    json(server.get_anonymous("/health").await).await
}

#[tokio::test]
async fn health_metrics_and_logs_report_what_happened() {
    let server = Server::start_with(
        ServerOptions::default()
            .admins(&["1"])
            .env("PD2_SERVER__LOG_FORMAT", "json")
            .env("PD2_PLUGINS__DIR", first_party_plugins().display()),
    )
    .await;
    let (status, body) = health(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["status"], "up");
    assert_eq!(body["plugins"]["status"], "ok");
    assert!(
        body["plugins"]["loaded"]
            .as_array()
            .expect("loaded")
            .contains(&"code-preview".into()),
        "{body}"
    );

    let admin = server.token("1");
    let source = b"public class Main { public static void main(String[] a) {} }\n";
    let ticket = create_ticket(&server, &admin, &[("Main.java", source)], None).await;
    let preview = format!(
        "/ticket/@me/{}/preview/Main.java",
        ticket["id"].as_str().expect("id")
    );
    for expected in ["miss", "hit"] {
        let response = server.get(&preview, &admin).send().await.expect("preview");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-preview-cache"], expected);
    }
    let refused = pd2_ticket_tests::upload(&server, &admin, &[("../x", b"x")], None).await;
    assert_eq!(refused.status(), 400);

    let metrics = server.metrics(&admin).await;
    let value = |series: &str| sample(&metrics, series);
    assert_eq!(value("pd2_uploads_total{outcome=\"stored\"}"), 1.0);
    assert_eq!(value("pd2_uploads_total{outcome=\"rejected\"}"), 1.0);
    assert_eq!(value("pd2_upload_files_stored_total"), 1.0);
    assert_eq!(value("pd2_upload_bytes_stored_total"), source.len() as f64);
    assert_eq!(value("pd2_preview_cache_total{result=\"hit\"}"), 1.0);
    assert_eq!(value("pd2_preview_cache_total{result=\"miss\"}"), 1.0);
    assert_eq!(
        value("pd2_plugin_calls_total{hook=\"render\",plugin=\"code-preview\"}"),
        1.0
    );
    assert_eq!(
        value("pd2_plugin_calls_total{hook=\"validate-file\",plugin=\"file-policy\"}"),
        1.0
    );
    assert_eq!(
        value("pd2_plugin_failures_total{hook=\"render\",plugin=\"code-preview\"}"),
        0.0
    );
    assert_eq!(
        value("pd2_plugin_call_duration_seconds_count{hook=\"render\",plugin=\"code-preview\"}"),
        1.0
    );
    let route = "route=\"/ticket/{user_id}/{ticket_id}/preview/{file_path}\"";
    assert_eq!(
        value(&format!(
            "pd2_http_requests_total{{method=\"GET\",{route},status=\"200\"}}"
        )),
        2.0
    );
    assert_eq!(
        value(&format!(
            "pd2_http_request_duration_seconds_count{{method=\"GET\",{route}}}"
        )),
        2.0
    );
    assert_eq!(
        value("pd2_http_requests_total{method=\"POST\",route=\"/ticket\",status=\"400\"}"),
        1.0
    );
    assert_eq!(value("pd2_database_up"), 1.0);
    // Every first-party plugin, however many there are.
    let shipped = std::fs::read_dir(first_party_plugins())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wasm")
        })
        .count();
    assert!(shipped >= 7, "{shipped}");
    assert_eq!(value("pd2_plugins_loaded"), shipped as f64);

    // Metrics are for admins; health needs no token at all.
    let student = server.token("2");
    assert_error(
        server
            .get("/metrics", &student)
            .send()
            .await
            .expect("metrics"),
        403,
        "Permission denied",
    )
    .await;
    assert_error(
        server.get_anonymous("/metrics").await,
        403,
        "Invalid authentication credentials",
    )
    .await;

    // One JSON log line per request, naming the route template and user.
    let log = server.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "pd2_ticket::request")
        .collect();
    let previews: Vec<&Value> = lines
        .iter()
        .filter(|l| l["route"] == "/ticket/{user_id}/{ticket_id}/preview/{file_path}")
        .collect();
    assert_eq!(previews.len(), 2, "log:\n{log}");
    for line in previews {
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], 200);
        assert_eq!(line["user_id"], "1");
        assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0));
        assert_eq!(line["path"], preview.as_str());
    }
    let anonymous = lines
        .iter()
        .find(|l| l["route"] == "/health")
        .expect("a /health line");
    assert!(anonymous.get("user_id").is_none(), "{anonymous}");
}

/// Until the database answers again, data routes fail fast with 503; then
/// the same server serves them again, without a restart.
#[tokio::test]
async fn database_outage_gives_quick_503s_and_recovers() {
    let db = DbServer::start();
    let server = Server::start_with(ServerOptions::default().database(&db.uri, "outage")).await;
    let token = server.token("7");
    let ticket = create_ticket(&server, &token, &[("a.txt", b"still here")], None).await;
    let file = format!(
        "/ticket/@me/{}/files/a.txt",
        ticket["id"].as_str().expect("id")
    );

    let (port, storage) = db.stop();
    // The very first request after the outage may still be waiting in the
    // driver; it too must come back within the configured 1 s wait.
    let started = Instant::now();
    let response = server.get("/ticket", &token).send().await.expect("request");
    let first = started.elapsed();
    assert_error(response, 503, "Database unavailable").await;
    assert!(first < Duration::from_secs(3), "first 503 took {first:?}");
    // Once the outage is known (as /health tells), every data route
    // answers at once.
    eventually("outage not noticed", Duration::from_secs(10), || async {
        health(&server).await.0 == 503
    })
    .await;
    for path in ["/ticket", "/ticket/@me", file.as_str(), "/user/@me"] {
        let started = Instant::now();
        let response = server.get(path, &token).send().await.expect("request");
        let took = started.elapsed();
        assert_error(response, 503, "Database unavailable").await;
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
    let (status, body) = health(&server).await;
    assert_eq!(
        (status, &body["database"]["status"]),
        (503, &"down".into()),
        "{body}"
    );
    assert_eq!(body["detail"], "Database unavailable");
    let ping = server
        .http
        .get(server.url("/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(ping.status(), 200);

    let _db = DbServer::start_at(port, storage);
    let started = Instant::now();
    loop {
        let response = server.get(&file, &token).send().await.expect("request");
        if response.status() == 200 {
            assert_eq!(
                response.bytes().await.expect("body").as_ref(),
                b"still here"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no recovery: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health(&server).await.0, 200);
}

/// An upload streaming when the database goes away gets no ticket, and once
/// the database is back its bytes are removed: no files, chunks or journal.
#[tokio::test]
async fn upload_cut_off_by_an_outage_leaves_nothing() {
    let db = DbServer::start();
    let server = Server::start_with(
        ServerOptions::default()
            .database(&db.uri, "cutoff")
            .env("PD2_LIMITS__MAX_FILE_SIZE", 4 << 20),
    )
    .await;
    let token = server.token("8");

    // One whole file (more than one write batch of 4 chunks), then half of
    // a second: bytes are in GridFS.
    let first = multipart::file_part("one.bin", &vec![1u8; 1100 * 1024]);
    let mut second = multipart::file_head("two.bin");
    second.extend(vec![2u8; 600 * 1024]);
    let declared = first.len() + second.len() + 600 * 1024 + 2 + multipart::closing().len();
    let mut head = multipart::post_head(server.port, Some(&token), declared);
    head.extend(first);
    head.extend(second);
    let mut stream = multipart::send(server.port, &head).await;
    eventually("bytes never arrived", Duration::from_secs(20), || async {
        server.count("files.chunks", doc! {}).await >= 4
    })
    .await;
    assert_eq!(server.count("uploads", doc! {}).await, 1, "journal entry");

    let (port, storage) = db.stop();
    // The rest of the body arrives while the database is gone.
    let mut rest = vec![2u8; 600 * 1024];
    rest.extend(b"\r\n");
    rest.extend(multipart::closing());
    let _ = stream.write_all(&rest).await;
    let status = multipart::read_status(&mut stream, Duration::from_secs(20)).await;
    assert_eq!(status, Some(503));

    let _db = DbServer::start_at(port, storage);
    server.assert_nothing_left(Duration::from_secs(30)).await;
    // Removed by the janitor once the database was back, not before (it
    // logs after the removal, so the line may trail the empty collections).
    eventually(
        "the janitor did not report the removal",
        Duration::from_secs(10),
        || async {
            server
                .log_text()
                .contains("removed the bytes of a failed upload")
        },
    )
    .await;
    // And the server took uploads again.
    create_ticket(&server, &token, &[("a.txt", b"a")], None).await;
}

/// The server starts with no database at all, says so, and picks it up
/// when it appears.
#[tokio::test]
async fn starts_without_a_database_and_connects_when_it_appears() {
    let port = pd2_ticket_tests::free_port();
    let uri = format!("mongodb://127.0.0.1:{port}");
    let server = Server::start_with(
        ServerOptions::default()
            .database(&uri, "late")
            .secret("configured-secret"),
    )
    .await;
    // Not yet checked, then checked and down: unhealthy either way.
    let started = Instant::now();
    loop {
        let (status, body) = health(&server).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["detail"], "Database unavailable");
        if body["database"]["status"] == "down" {
            break;
        }
        assert_eq!(body["database"]["status"], "unknown", "{body}");
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A token signed with the configured secret, made without the server.
    let token = pd2_ticket_tests::signed_token("configured-secret", "9", 3600);
    assert_error(
        server.get("/ticket", &token).send().await.expect("request"),
        503,
        "Database unavailable",
    )
    .await;

    let _db = DbServer::start_at(port, pd2_ticket_tests::temp_dir("late-db"));
    eventually("never healthy", Duration::from_secs(30), || async {
        health(&server).await.0 == 200
    })
    .await;
    let response = server.get("/ticket", &token).send().await.expect("request");
    assert_eq!(response.status(), 200);
}

/// Two processes on one database behave as one: a ticket made through one
/// is read, previewed, changed and deleted through the other, with tokens
/// from either (the generated secret is shared).
#[tokio::test]
async fn two_instances_share_one_database() {
    let database = format!("shared-{:016x}", rand::random::<u64>());
    // An admin, who is shown `X-Preview-Cache`.
    let options = ServerOptions::default()
        .database(pd2_ticket_tests::shared_db_uri(), &database)
        .env("PD2_PLUGINS__DIR", first_party_plugins().display())
        .admins(&["21"]);
    let (a, b) = tokio::join!(
        Server::start_with(options.clone()),
        Server::start_with(options)
    );
    let from_a = a.token("21");
    let from_b = b.token("21");

    let ticket = create_ticket(&a, &from_a, &[("src/Main.java", b"class Main {}\n")], None).await;
    let id = ticket["id"].as_str().expect("id");
    let (status, seen) = json(
        b.get(&format!("/ticket/21/{id}"), &from_a)
            .send()
            .await
            .expect("read"),
    )
    .await;
    assert_eq!((status, &seen["files"]), (200, &ticket["files"]));
    let file = b
        .get(&format!("/ticket/@me/{id}/files/src/Main.java"), &from_b)
        .send()
        .await
        .expect("file");
    assert_eq!(
        file.bytes().await.expect("bytes").as_ref(),
        b"class Main {}\n"
    );
    let preview = b
        .get(&format!("/ticket/@me/{id}/preview/src/Main.java"), &from_a)
        .send()
        .await
        .expect("preview");
    assert_eq!(preview.status(), 200);
    assert_eq!(preview.headers()["x-preview-plugin"], "code-preview");
    // The preview B rendered is in the shared cache for A.
    let cached = a
        .get(&format!("/ticket/@me/{id}/preview/src/Main.java"), &from_b)
        .send()
        .await
        .expect("preview");
    assert_eq!(cached.headers()["x-preview-cache"], "hit");

    let (status, changed) = json(
        b.put(&format!("/ticket/@me/{id}"), &from_a)
            .json(&serde_json::json!({"is_public": true}))
            .send()
            .await
            .expect("update"),
    )
    .await;
    assert_eq!((status, &changed["is_public"]), (201, &true.into()));
    let (_, listed) = json(a.get("/ticket", &from_b).send().await.expect("list")).await;
    assert_eq!(listed[0]["is_public"], true);

    let deleted = b
        .delete(&format!("/ticket/@me/{id}"), &from_a)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_error(
        a.get(&format!("/ticket/@me/{id}"), &from_b)
            .send()
            .await
            .expect("read"),
        404,
        "Ticket not found",
    )
    .await;
    assert_eq!(a.stored().await, Stored::default());
    assert_eq!(a.count("settings", doc! {"_id": "jwt_secret"}).await, 1);
}

/// SIGTERM while a large zip is being read: new connections are refused,
/// the download runs to its last byte, then the process exits cleanly.
#[tokio::test]
async fn sigterm_lets_a_large_download_finish() {
    let mut server = Server::start_with(
        ServerOptions::default()
            .env("PD2_LIMITS__MAX_FILE_SIZE", 8 << 20)
            .env("PD2_SERVER__SHUTDOWN_GRACE_SECS", 60),
    )
    .await;
    let token = server.token("31");
    // Random bytes do not compress: the zip is about as large as the files.
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let mut bytes = vec![0u8; 6 << 20];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            (format!("data/part{i}.bin"), bytes)
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let ticket = create_ticket(&server, &token, &refs, None).await;
    let id = ticket["id"].as_str().expect("id");

    let mut stream = multipart::send(
        server.port,
        format!(
            "GET /ticket/@me/{id}/download HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let mut received = vec![0u8; 256 * 1024];
    let mut first = stream.read(&mut received).await.expect("first bytes");
    assert!(first > 0);
    received.truncate(first);

    server.send_sigterm();
    // Reading slowly: the server must not cut the response short.
    let mut chunk = vec![0u8; 64 * 1024];
    let mut refused = false;
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        first += n;
        if !refused && first > (4 << 20) {
            refused = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .is_err();
            assert!(refused, "still accepting connections after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exited after the download");
    assert!(status.success(), "exit status {status}");

    let text_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&received[..text_end]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = dechunk(&received[text_end + 4..], &head);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body)).expect("a complete zip");
    assert_eq!(zip.len(), files.len());
    for (name, bytes) in &files {
        let mut entry = zip.by_name(name).expect("entry");
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).expect("entry bytes");
        assert!(content == *bytes, "{name} differs");
    }
}

/// A request that never finishes does not hold the process beyond the
/// grace period.
#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let mut server =
        Server::start_with(ServerOptions::default().env("PD2_SERVER__SHUTDOWN_GRACE_SECS", 1))
            .await;
    let token = server.token("41");
    // An upload that sends half its body and then nothing.
    let mut body = multipart::post_head(server.port, Some(&token), 10_000);
    body.extend(multipart::file_head("slow.txt"));
    let _stalled = multipart::send(server.port, &body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.send_sigterm();
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some(),
        "still running long after the grace period"
    );
    assert!(server.log_text().contains("grace period over"));
}

/// Decodes a `Transfer-Encoding: chunked` body (or returns it as is).
fn dechunk(body: &[u8], head: &str) -> Vec<u8> {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(
            std::str::from_utf8(&rest[..line_end])
                .expect("ascii")
                .trim(),
            16,
        )
        .expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
