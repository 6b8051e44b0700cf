//! The database gate under the faults that used to take an instance out of
//! service by itself: clients that hang up, a pooled connection cut under
//! the server, a database that freezes. A proxy between server and
//! database (`pd2_ticket_tests::proxy`) injects the faults.

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use pd2_ticket_tests::{
    DbServer, Server, ServerOptions, assert_error, create_ticket, eventually, json, multipart,
    proxy::Proxy,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn health(server: &Server) -> (u16, Value) {
    json(server.get_anonymous("/health").await).await
}

/// A server whose database connections all pass through a proxy.
async fn behind_proxy(name: &str, options: ServerOptions) -> (DbServer, Proxy, Server) {
    let db = DbServer::start();
    let proxy = Proxy::start(&format!("127.0.0.1:{}", db.port)).await;
    let server = Server::start_with(options.database(&proxy.uri, name)).await;
    (db, proxy, server)
}

/// 200 requests whose clients give up after 0.3 s used to queue ahead of
/// everything in the driver's pool for ~90 s (and make the health check
/// report the database down). Now every next request is answered at once.
#[tokio::test]
async fn clients_that_hang_up_do_not_hold_up_later_requests() {
    let server = Server::start().await;
    let token = server.token("31");
    for i in 0..5 {
        let name = format!("f{i}.txt");
        create_ticket(&server, &token, &[(name.as_str(), b"x")], None).await;
    }
    let request =
        format!("GET /ticket/@me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    let burst = (0..200).map(|_| {
        let request = request.clone();
        let port = server.port;
        async move {
            let mut stream = multipart::send(port, request.as_bytes()).await;
            let mut first = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut first)).await;
            // Dropped here: the client hangs up, answered or not.
        }
    });
    futures_util::future::join_all(burst).await;

    for _ in 0..20 {
        let response = server
            .get("/ticket/@me", &token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("answered within 10 s");
        assert_eq!(response.status(), 200);
        let tickets: Value = response.json().await.expect("json");
        assert_eq!(tickets.as_array().map(Vec::len), Some(5));
        let (status, body) = health(&server).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every pooled connection cut at once (as a database, firewall or load
/// balancer does to idle ones) is retried by the driver: no 503, no
/// outage reported, reads and writes alike.
#[tokio::test]
async fn connections_cut_under_the_server_are_retried_not_an_outage() {
    let (_db, proxy, server) = behind_proxy("cut", ServerOptions::default()).await;
    let token = server.token("32");
    let ticket = create_ticket(&server, &token, &[("a.txt", b"kept")], None).await;
    let path = format!("/ticket/@me/{}", ticket["id"].as_str().expect("id"));
    // Fill the pool with open connections.
    let warm = (0..20).map(|_| server.get(&path, &token).send());
    for response in futures_util::future::join_all(warm).await {
        assert_eq!(response.expect("request").status(), 200);
    }

    for round in 0..3 {
        let before = proxy.accepted();
        proxy.cut_connections();
        let reads = (0..50).map(|_| server.get(&path, &token).send());
        let write = server
            .put(&path, &token)
            .json(&serde_json::json!({ "remark": format!("round {round}") }))
            .send();
        let (reads, write) = tokio::join!(futures_util::future::join_all(reads), write);
        for response in reads {
            let response = response.expect("request");
            assert_eq!(response.status(), 200, "{:?}", response.text().await);
        }
        let (status, body) = json(write.expect("put")).await;
        assert_eq!(
            (status, body["remark"].as_str()),
            (201, Some(format!("round {round}").as_str()))
        );
        // The server did reconnect: the cut was real.
        assert!(proxy.accepted() > before);
        assert_eq!(health(&server).await.0, 200);
    }
    assert!(!server.log_text().contains("database unavailable"));
}

/// A database that accepts connections but never answers: requests get
/// 503 within `mongodb.timeout_ms` (+0.5 s), the outage is confirmed and
/// then answered at once, and everything recovers when it thaws.
#[tokio::test]
async fn a_frozen_database_gets_503_within_the_timeout_and_recovers() {
    let (_db, proxy, server) = behind_proxy(
        "frozen",
        ServerOptions::default().env("PD2_MONGODB__TIMEOUT_MS", 1000),
    )
    .await;
    let token = server.token("33");
    let ticket = create_ticket(&server, &token, &[("a.txt", b"thawed")], None).await;
    let file = format!(
        "/ticket/@me/{}/files/a.txt",
        ticket["id"].as_str().expect("id")
    );

    proxy.freeze();
    for path in ["/ticket/@me", file.as_str(), "/ticket"] {
        let started = Instant::now();
        let response = server.get(path, &token).send().await.expect("request");
        let took = started.elapsed();
        assert_error(response, 503, "Database unavailable").await;
        assert!(
            took < Duration::from_millis(1500),
            "{path}: 503 after {took:?}"
        );
    }
    eventually("outage not confirmed", Duration::from_secs(15), || async {
        health(&server).await.0 == 503
    })
    .await;
    let started = Instant::now();
    assert_error(
        server
            .get("/ticket/@me", &token)
            .send()
            .await
            .expect("request"),
        503,
        "Database unavailable",
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(500));

    proxy.thaw();
    eventually(
        "no recovery after the thaw",
        Duration::from_secs(30),
        || async {
            let response = server.get(&file, &token).send().await.expect("request");
            response.status() == 200
                && response
                    .bytes()
                    .await
                    .is_ok_and(|b| b.as_ref() == b"thawed")
        },
    )
    .await;
    assert_eq!(health(&server).await.0, 200);
}

/// An upload that fails because the database froze under it leaves
/// nothing once the database answers again: the cleanup is retried right
/// after, not when the journal entry has gone stale (ten idle periods).
#[tokio::test]
async fn an_upload_failed_by_a_freeze_is_removed_right_after() {
    let (_db, proxy, server) = behind_proxy(
        "frozen-upload",
        ServerOptions::default()
            .env("PD2_MONGODB__TIMEOUT_MS", 1000)
            .env("PD2_LIMITS__MAX_FILE_SIZE", 4 << 20),
    )
    .await;
    let token = server.token("34");

    // Over one write batch (4 chunks of 255 KiB), so bytes are stored
    // before the freeze.
    let first = multipart::file_part("one.bin", &vec![1u8; 1100 * 1024]);
    let mut rest = multipart::file_part("two.bin", &vec![2u8; 600 * 1024]);
    rest.extend(multipart::closing());
    let mut head = multipart::post_head(server.port, Some(&token), first.len() + rest.len());
    head.extend(first);
    let mut stream = multipart::send(server.port, &head).await;
    eventually("bytes never arrived", Duration::from_secs(20), || async {
        server.count("files.chunks", doc! {}).await >= 4
    })
    .await;

    proxy.freeze();
    let _ = stream.write_all(&rest).await;
    let status = multipart::read_status(&mut stream, Duration::from_secs(20)).await;
    assert_eq!(status, Some(503));
    proxy.thaw();
    // Well within one idle period (60 s), let alone the ten a sweep waits.
    server.assert_nothing_left(Duration::from_secs(15)).await;
    create_ticket(&server, &token, &[("a.txt", b"a")], None).await;
}

/// A server behind `proxy` with the `misbehave` validator, these limits
/// (ms), and user `admin` an admin.
async fn misbehave_behind_proxy(
    name: &str,
    db_timeout: u64,
    plugin_timeout: u64,
    admin: &str,
) -> (DbServer, Proxy, Server) {
    let plugins =
        pd2_ticket_tests::plugin_dir(
            &[&pd2_ticket_tests::fixture_plugins().join("misbehave.wasm")],
        );
    behind_proxy(
        name,
        ServerOptions::default()
            .env("PD2_MONGODB__TIMEOUT_MS", db_timeout)
            .env("PD2_PLUGINS__DIR", plugins.display())
            .env("PD2_PLUGINS__TIMEOUT_MS", plugin_timeout)
            .env("PD2_PLUGINS__UPLOAD_TIMEOUT_MS", 30_000)
            .admins(&[admin]),
    )
    .await
}

/// Uploads `slow.txt` (saying what `misbehave` does with it) after a
/// padding that takes the upload over one write batch, so slow.txt is in
/// GridFS when the validator reads it; `freeze` runs once those bytes
/// landed.
async fn upload_past_one_batch(
    server: &Server,
    token: &str,
    slow: &[u8],
    freeze: impl std::future::Future<Output = ()>,
) -> (u16, Value) {
    let padding = vec![b' '; 1_046_000];
    let files: [(&str, &[u8]); 2] = [("slow.txt", slow), ("padding.bin", &padding)];
    let (response, ()) = tokio::join!(
        pd2_ticket_tests::upload(server, token, &files, None),
        async {
            eventually("bytes never arrived", Duration::from_secs(20), || async {
                server.count("files.chunks", doc! {}).await >= 4
            })
            .await;
            freeze.await;
        }
    );
    json(response).await
}

/// `misbehave`'s failures as `GET /plugins` counts them.
async fn misbehave_failures(server: &Server, admin_token: &str) -> Value {
    let plugins: Value = server
        .get("/plugins", admin_token)
        .send()
        .await
        .expect("plugins")
        .json()
        .await
        .expect("json");
    let misbehave = plugins["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "misbehave"))
        .unwrap_or_else(|| panic!("no misbehave in {plugins}"));
    misbehave["stats"]["failures"].clone()
}

/// A validator reading a file whose bytes went out in an earlier batch
/// while the database is frozen: the upload gets the storage's answer,
/// `503 Database unavailable`, not a plugin's trap, and the plugin is not
/// counted as failed.
#[tokio::test]
async fn a_validators_read_of_a_frozen_database_is_the_databases_503() {
    let (_db, proxy, server) = misbehave_behind_proxy("frozen-read", 1000, 20_000, "35").await;
    let token = server.token("35");
    // `misbehave` sleeps 3 s on slow.txt, then reads it again: the freeze
    // comes while it sleeps.
    let (status, body) =
        upload_past_one_batch(&server, &token, b"3 read", async { proxy.freeze() }).await;
    proxy.thaw();
    assert_eq!(
        (status, body["detail"].as_str()),
        (503, Some("Database unavailable")),
        "{body}"
    );
    assert!(body.get("plugin").is_none(), "{body}");
    server.assert_nothing_left(Duration::from_secs(20)).await;
    assert_eq!(misbehave_failures(&server, &token).await, 0);
}

/// A plugin's time limit is for the plugin's work: while the host reads
/// its file from a database that is slow to answer, its clock stops. The
/// validator here works 1 s of its 2 s and waits ~3 s for a read from a
/// database frozen that long (under `mongodb.timeout_ms`: slow, not down);
/// the upload is stored and the plugin not blamed.
#[tokio::test]
async fn a_validator_is_not_timed_out_by_the_hosts_slow_read() {
    let (_db, proxy, server) = misbehave_behind_proxy("slow-read", 15_000, 2_000, "36").await;
    let token = server.token("36");
    let (status, body) = upload_past_one_batch(&server, &token, b"1 read", async {
        proxy.freeze();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.thaw();
    })
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(misbehave_failures(&server, &token).await, 0);
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop; `None`
/// (with a message) where this process may not mount (not root).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = pd2_ticket_tests::temp_dir("small-disk");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "SKIPPED: mounting a tmpfs needs root; the full-disk test did not run (run the suite as root to include it)"
            );
            return None;
        }
        Some(Self(dir))
    }

    fn grow(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(status.success(), "remounting the small disk failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A database whose disk fills answers, but fails every write (SecantusDB:
/// every command, once WiredTiger has panicked). That is an outage, not a
/// server error: every route answers 503 (never 500), `/health` says the
/// database is failing, the janitor's log stays short; and once space is
/// back and the database restarted (what SecantusDB needs; MongoDB resumes
/// by itself), everything works again without touching the server.
#[tokio::test]
async fn a_full_database_disk_is_an_outage_and_recovers() {
    let Some(disk) = SmallDisk::mount("24m") else {
        return;
    };
    let db = DbServer::start_at(0, disk.0.join("db"));
    let server = Server::start_with(ServerOptions::default().database(&db.uri, "full-disk")).await;
    let token = server.token("81");
    let kept = create_ticket(&server, &token, &[("kept.c", b"int main;\n")], None).await;
    let kept_id = kept["id"].as_str().expect("id").to_owned();
    // Fill it: 600 KB uploads until the database refuses.
    let blob: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut refused = None;
    for i in 0..200u32 {
        let name = format!("fill{i}.bin.txt");
        // Each different: the same bytes would be stored once.
        let mut blob = blob.clone();
        blob[..4].copy_from_slice(&i.to_le_bytes());
        let response = pd2_ticket_tests::upload(&server, &token, &[(&name, &blob)], None).await;
        if response.status() != 201 {
            refused = Some(json(response).await);
            break;
        }
    }
    let (status, body) = refused.expect("a 24 MiB disk filled up");
    assert!(
        status == 503 || status == 507,
        "a full disk is an outage, not {status} {body}"
    );
    // Every route: an outage answer, never a 500.
    let routes = [
        ("GET", "/ticket".to_owned()),
        ("GET", format!("/ticket/@me/{kept_id}")),
        ("GET", format!("/ticket/@me/{kept_id}/files/kept.c")),
        ("GET", format!("/ticket/@me/{kept_id}/download")),
        ("DELETE", format!("/ticket/@me/{kept_id}")),
    ];
    for (method, path) in &routes {
        let request = match *method {
            "DELETE" => server.delete(path, &token),
            _ => server.get(path, &token),
        };
        let (status, body) = json(request.send().await.expect("request")).await;
        assert!(
            status == 503 || status == 507,
            "{method} {path} on a full database: {status} {body}"
        );
    }
    let response = pd2_ticket_tests::upload(&server, &token, &[("x.c", b"x")], None).await;
    let (status, body) = json(response).await;
    assert!(status == 503 || status == 507, "upload: {status} {body}");
    // The health check names it, and a balancer sees 503.
    eventually(
        "/health reports the failing database",
        Duration::from_secs(30),
        || async {
            let (status, body) = health(&server).await;
            status == 503 && body["database"]["status"] == "failing"
        },
    )
    .await;
    let (_, body) = health(&server).await;
    assert!(
        body["database"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("writes refused")),
        "{body}"
    );
    // Bounded logs while it fails: a few seconds more of failing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let janitor_lines = server
        .log_text()
        .lines()
        .filter(|l| l.contains("janitor") && (l.contains("WARN") || l.contains("ERROR")))
        .count();
    assert!(janitor_lines <= 10, "{janitor_lines} janitor warnings");

    // Space back, the database restarted on the same port: the server
    // resumes by itself.
    disk.grow("256m");
    let (port, storage) = db.stop();
    let _db = DbServer::start_at(port, storage);
    eventually("/health says up again", Duration::from_secs(60), || async {
        let (status, body) = health(&server).await;
        status == 200 && body["database"]["status"] == "up"
    })
    .await;
    let again = create_ticket(&server, &token, &[("again.c", b"int again;\n")], None).await;
    assert_eq!(again["files"].as_array().map(Vec::len), Some(1));
    let (status, _) = json(
        server
            .get(&format!("/ticket/@me/{kept_id}"), &token)
            .send()
            .await
            .expect("read"),
    )
    .await;
    assert_eq!(status, 200, "the ticket from before the outage is readable");
}
