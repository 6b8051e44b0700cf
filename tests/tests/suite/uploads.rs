//! Upload limits, streaming refusals, truncated bodies and cleanup, and
//! start-up configuration errors.

use std::time::{Duration, Instant};

use pd2_ticket_tests::{
    Server, ServerOptions, Stored, assert_error, eventually, json,
    multipart::{self, closing, file_head, file_part, post_head, read_status, send},
    upload,
};
use tokio::io::AsyncWriteExt;

fn small_limits() -> ServerOptions {
    ServerOptions::default()
        .env("PD2_LIMITS__MAX_FILE_SIZE", 1000)
        .env("PD2_LIMITS__MAX_TICKET_SIZE", 2500)
        .env("PD2_LIMITS__MAX_FILES", 3)
}

const CLEANUP: Duration = Duration::from_secs(15);

#[tokio::test]
async fn limits_are_413_and_leave_nothing() {
    let server = Server::start_with(small_limits()).await;
    let t = server.token("1");
    let ok = vec![b'a'; 1000];
    let over = vec![b'a'; 1001];
    let near = vec![b'a'; 900];

    // Exactly at the limit is fine.
    let (status, _) = json(upload(&server, &t, &[("a.txt", &ok)], None).await).await;
    assert_eq!(status, 201);
    let baseline = server.stored().await;

    // The spec's detail, and beside it which file and which limit.
    let (status, body) =
        json(upload(&server, &t, &[("a.txt", &near), ("src/b.txt", &over)], None).await).await;
    assert_eq!(status, 413);
    assert_eq!(
        body,
        serde_json::json!({"detail": "File is too large", "file": "src/b.txt", "max_file_size": 1000})
    );
    assert_error(
        upload(
            &server,
            &t,
            &[("a.txt", &near), ("b.txt", &near), ("c.txt", &near)],
            None,
        )
        .await,
        413,
        "Ticket is too large",
    )
    .await;
    assert_error(
        upload(
            &server,
            &t,
            &[("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4")],
            None,
        )
        .await,
        413,
        "Too many files (at most 3)",
    )
    .await;
    let left = wait_for(&server, baseline).await;
    assert_eq!(left, baseline, "rejected uploads left data behind");
}

async fn wait_for(server: &Server, expected: Stored) -> Stored {
    let start = Instant::now();
    loop {
        let stored = server.stored().await;
        if stored == expected || start.elapsed() > CLEANUP {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The 413 arrives while the client is still sending: the server does not
/// read the rest of an oversize file.
#[tokio::test]
async fn oversize_file_is_refused_mid_stream() {
    let server = Server::start_with(small_limits()).await;
    let t = server.token("1");
    let mut body = file_head("big.txt");
    body.extend(vec![b'x'; 1500]);
    // Declares more than it sends; the rest never comes.
    let mut stream = send(server.port, &post_head(server.port, Some(&t), 2400)).await;
    stream.write_all(&body).await.unwrap();
    let status = read_status(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(status, Some(413));
    drop(stream);
    assert_eq!(server.wait_until_empty(CLEANUP).await, Stored::default());
}

#[tokio::test]
async fn declared_size_over_the_limit_is_refused_unread() {
    let server = Server::start_with(small_limits()).await;
    let t = server.token("1");
    let mut stream = send(server.port, &post_head(server.port, Some(&t), 50 << 20)).await;
    assert_eq!(
        read_status(&mut stream, Duration::from_secs(10)).await,
        Some(413)
    );
}

#[tokio::test]
async fn unauthenticated_upload_is_refused_unread() {
    let server = Server::start().await;
    // Only the head is sent; a server that waited for the body would hang.
    let mut stream = send(server.port, &post_head(server.port, None, 10 << 20)).await;
    assert_eq!(
        read_status(&mut stream, Duration::from_secs(10)).await,
        Some(403)
    );
    let mut stream = send(
        server.port,
        &post_head(server.port, Some("bad.token.here"), 10 << 20),
    )
    .await;
    assert_eq!(
        read_status(&mut stream, Duration::from_secs(10)).await,
        Some(403)
    );
}

/// A client that hangs up halfway leaves neither a ticket nor chunks, even
/// after a whole file of the upload was already stored.
#[tokio::test]
async fn truncated_upload_leaves_nothing() {
    let server =
        Server::start_with(ServerOptions::default().env("PD2_LIMITS__MAX_FILE_SIZE", 2 << 20))
            .await;
    let t = server.token("1");
    // Over one write batch (1020 KiB: four whole chunks) each, so the first
    // file and then its files document are sent before the hang-up
    // (smaller uploads wait in memory).
    let first = vec![b'1'; 1100 * 1024];
    let mut body = file_part("first.bin", &first);
    body.extend(file_head("second.bin"));
    body.extend(vec![b'2'; 1100 * 1024]);
    let declared = body.len() + 400 * 1024;
    let mut stream = send(server.port, &post_head(server.port, Some(&t), declared)).await;
    stream.write_all(&body).await.unwrap();
    stream.flush().await.unwrap();
    // Let the server store the first file and start on the second.
    let start = Instant::now();
    while server.stored().await.files == 0 && start.elapsed() < CLEANUP {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.stored().await.files,
        1,
        "the first file was stored before the hang-up"
    );
    drop(stream);
    assert_eq!(server.wait_until_empty(CLEANUP).await, Stored::default());
    // The request's log line comes after the cleanup, as its response does.
    eventually(
        "the truncated upload was not answered 400",
        CLEANUP,
        || async {
            server
                .log_text()
                .contains(r#"route="/ticket" path="/ticket" status=400"#)
        },
    )
    .await;
}

#[tokio::test]
async fn body_without_closing_boundary_is_400() {
    let server = Server::start().await;
    let t = server.token("1");
    let body = file_part("a.txt", b"hello");
    let mut stream = send(server.port, &post_head(server.port, Some(&t), body.len())).await;
    stream.write_all(&body).await.unwrap();
    assert_eq!(
        read_status(&mut stream, Duration::from_secs(10)).await,
        Some(400)
    );
    assert_eq!(server.wait_until_empty(CLEANUP).await, Stored::default());
}

/// Browsers send Windows folders with raw backslashes.
#[tokio::test]
async fn raw_backslash_names_become_folders() {
    let server = Server::start().await;
    let t = server.token("1");
    let mut body = file_part("src\\main\\A.java", b"class A {}");
    body.extend(format!(
        "--{}\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{{\"is_public\":\"true\",\"remark\":\"r\"}}\r\n",
        multipart::BOUNDARY
    ).into_bytes());
    body.extend(closing());
    let response = server
        .post("/ticket", &t)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={}", multipart::BOUNDARY),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, ticket) = json(response).await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["files"], serde_json::json!(["src/main/A.java"]));
    assert_eq!(ticket["is_public"], serde_json::json!(true));
}

#[test]
fn bad_configuration_stops_startup_naming_the_key() {
    let bin = pd2_ticket_tests::server_binary();
    let dir = pd2_ticket_tests::temp_dir("config");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .current_dir(&dir)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, err) = run(&["serve"], &[("PD2_LIMITS__MAX_FILE_SIZE", "lots")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("limits.max_file_size"), "{err}");

    let (code, err) = run(&["serve"], &[("PD2_SERVER__PROT", "1")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("prot"), "{err}");

    std::fs::write(dir.join("bad.toml"), "[mongodb]\nurl = \"mongodb://x\"\n").unwrap();
    let (code, err) = run(&["--config", "bad.toml", "serve"], &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("url") && err.contains("mongodb"), "{err}");

    let (code, err) = run(&["--config", "missing.toml", "serve"], &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("missing.toml"), "{err}");

    let (code, err) = run(&["serve"], &[("PD2_CONFIG", "also-missing.toml")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("also-missing.toml"), "{err}");

    let (code, err) = run(&["serve"], &[("PD2_LIMITS__MAX_FILES", "0")]);
    assert_ne!(code, Some(0));
    assert!(err.contains("limits.max_files"), "{err}");

    // A budget that cannot hold one upload: said before anything starts.
    let (code, err) = run(&["serve"], &[("PD2_LIMITS__UPLOAD_MEMORY", "1000000")]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("limits.upload_memory") && err.contains("one upload's share"),
        "{err}"
    );
}

/// A refusal that says when to try again (`Retry-After: 5`).
async fn assert_refused_for_now(response: reqwest::Response, status: u16, detail: &str) {
    let retry = response.headers().get("retry-after").cloned();
    assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("5"));
    assert_error(response, status, detail).await;
}

/// The server's resident memory, from `/proc`.
fn rss_mib(pid: u32) -> f64 {
    pd2_ticket_tests::proc_status_kib(pid, "VmRSS") as f64 / 1024.0
}

/// `limits.upload_memory` is one budget for the uploads in flight. With
/// room for one (7 MiB; a share is ~6.5 MiB with the default limits):
/// - a second upload waits without its body being read, and once nothing
///   has come back for 5 s it gets 503 with `Retry-After`;
/// - a client that hangs up mid-body returns its share at once (the next
///   upload goes through);
/// - 60 clients that each send 2 MB and hang up are worked through one by
///   one: the server's RSS grows by a few MiB, not by their 120 MB (an
///   earlier build read every body at once: +180 MB here, 4.3 GB in the
///   bench's waves).
#[tokio::test]
async fn upload_memory_is_a_budget_shared_by_uploads_in_flight() {
    let server = Server::start_with(
        ServerOptions::default()
            .env("PD2_LIMITS__UPLOAD_MEMORY", 7 << 20)
            .env("PD2_LIMITS__MAX_TICKET_SIZE", 4 << 20)
            // One user sends the waves below; the per-user cap has its
            // own test.
            .env("PD2_LIMITS__UPLOADS_PER_USER", 100)
            .admins(&["1"]),
    )
    .await;
    assert!(
        server.log_text().contains("uploads_at_once=1"),
        "{}",
        server.log_text()
    );
    let t = server.token("61");
    let admin = server.token("1");

    // One upload holds the share: half its body, then silence.
    let body = [file_part("half.txt", &vec![b'h'; 200_000]), closing()].concat();
    let mut holder = send(server.port, &post_head(server.port, Some(&t), body.len())).await;
    holder.write_all(&body[..100_000]).await.expect("half");
    eventually(
        "the first upload holds the share",
        Duration::from_secs(20),
        || async {
            let metrics = server.metrics(&admin).await;
            pd2_ticket_tests::sample(&metrics, "pd2_upload_memory_bytes") > 0.0
        },
    )
    .await;
    let response = upload(&server, &t, &[("waits.txt", b"waits")], None).await;
    assert_refused_for_now(
        response,
        503,
        "Server busy: too many uploads at once; please try again",
    )
    .await;

    // The holder hangs up: its share is back at once.
    drop(holder);
    let (status, body) = json(upload(&server, &t, &[("next.txt", b"next")], None).await).await;
    assert_eq!(status, 201, "{body}");

    // Waves of clients that send 2 MB and go.
    let before = rss_mib(server.pid());
    let two_mb: Vec<u8> = (0..20)
        .flat_map(|i| file_part(&format!("src/F{i}.java"), &vec![b'a' + i as u8; 100_000]))
        .chain(closing())
        .collect();
    let mut peak = before;
    let clients: Vec<_> = (0..60)
        .map(|_| {
            let (port, token, body) = (server.port, t.clone(), two_mb.clone());
            tokio::spawn(async move {
                let mut stream = send(port, &post_head(port, Some(&token), body.len())).await;
                let _ = stream.write_all(&body).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            })
        })
        .collect();
    let mut running = clients;
    while !running.is_empty() {
        peak = peak.max(rss_mib(server.pid()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        running.retain(|c| !c.is_finished());
    }
    // Then the server works through them (or turns them away as busy).
    let mut ended = 0.0;
    let started = Instant::now();
    while ended < 63.0 && started.elapsed() < Duration::from_secs(180) {
        peak = peak.max(rss_mib(server.pid()));
        let metrics = server.metrics(&admin).await;
        ended = ["stored", "rejected", "failed", "busy"]
            .iter()
            .map(|o| {
                pd2_ticket_tests::sample(&metrics, &format!("pd2_uploads_total{{outcome=\"{o}\"}}"))
            })
            .sum();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended >= 63.0, "only {ended} uploads ended");
    assert!(
        peak - before < 60.0,
        "RSS grew from {before:.0} to {peak:.0} MiB for uploads held to a 7 MiB budget"
    );
}

#[tokio::test]
async fn endless_unknown_fields_are_cut_off() {
    let server = Server::start().await;
    let t = server.token("1");
    let filler = "f".repeat(60 * 1024);
    let mut form = reqwest::multipart::Form::new().part(
        "files",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
    );
    for i in 0..20 {
        form = form.text(format!("junk{i}"), filler.clone());
    }
    let response = server
        .post("/ticket", &t)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Form field `junk"),
        "{body}"
    );
    assert_eq!(server.wait_until_empty(CLEANUP).await, Stored::default());

    // A few unknown fields are simply ignored.
    let form = reqwest::multipart::Form::new()
        .text("extra", "ignored")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
        );
    let response = server
        .post("/ticket", &t)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// A raw multipart body of `files` parts whose `filename` bytes are given
/// as they are (not necessarily UTF-8).
fn raw_names_body(names: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for name in names {
        body.extend(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"",
                multipart::BOUNDARY
            )
            .into_bytes(),
        );
        body.extend_from_slice(name);
        body.extend(b"\"\r\nContent-Type: text/plain\r\n\r\nx\r\n");
    }
    body.extend(closing());
    body
}

/// A chunked request (no `Content-Length`) to `POST /ticket`.
fn chunked_head(port: u16, token: &str) -> Vec<u8> {
    format!(
        "POST /ticket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={}\r\nTransfer-Encoding: chunked\r\n\r\n",
        multipart::BOUNDARY
    )
    .into_bytes()
}

fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// Part headers count against the body's cap: a chunked body (no length to
/// refuse up front) whose part header never ends is refused once the bytes
/// of the largest possible form have arrived, not buffered until the
/// client stops. A chunked body within the limits is stored.
/// Sends a part header that never ends (64 KiB at a time, 16 MiB at most,
/// so that a server without a cap fails by waiting: 408 after
/// `upload_idle_secs`) and returns the answer's head.
async fn endless_part_header(server: &Server, t: &str) -> String {
    let mut stream = send(server.port, &chunked_head(server.port, t)).await;
    let (mut reader, mut writer) = stream.split();
    let endless = async {
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"",
            multipart::BOUNDARY
        );
        let mut sent = 0usize;
        let mut write = writer.write_all(&chunk(head.as_bytes())).await;
        // 16 MiB at most, so that a server without the cap fails the test
        // by waiting (408 after `upload_idle_secs`) rather than forever.
        // A write error is the server hanging up after its answer.
        while write.is_ok() && sent < 16 << 20 {
            write = writer.write_all(&chunk(&[b'a'; 64 * 1024])).await;
            sent += 64 * 1024;
        }
        std::future::pending::<()>().await
    };
    let answer = async {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await?;
            head.extend_from_slice(&buf[..n]);
            if n == 0 || head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok::<_, std::io::Error>(String::from_utf8_lossy(&head).into_owned());
            }
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(180), answer);
    tokio::select! {
        head = answer => head.expect("an answer").expect("read"),
        () = endless => unreachable!(),
    }
}

/// The parser holds at most ~1 MiB without handing out a part's data: a
/// header that never ends is 413 long before the body's own cap (52 MB
/// with the default limits, where it used to be buffered whole).
#[tokio::test]
async fn a_part_header_that_never_ends_is_cut_within_a_mebibyte() {
    let server = Server::start().await;
    let t = server.token("64");
    let head = endless_part_header(&server, &t).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    server.assert_nothing_left(CLEANUP).await;
}

#[tokio::test]
async fn a_part_header_that_never_ends_is_413() {
    let server = Server::start_with(small_limits()).await;
    let t = server.token("62");
    // The cap here: 2,500 bytes of files, 1 MiB of fields, 4 parts of 4 KiB.
    let head = endless_part_header(&server, &t).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    server.assert_nothing_left(CLEANUP).await;

    let mut body = chunk(&file_part("ok.txt", b"chunked"));
    body.extend(chunk(&closing()));
    body.extend(b"0\r\n\r\n");
    let mut request = chunked_head(server.port, &t);
    request.extend(body);
    let mut stream = send(server.port, &request).await;
    assert_eq!(
        read_status(&mut stream, Duration::from_secs(60)).await,
        Some(201)
    );
}

/// Uploads two small files; the upload must be refused (400): its detail.
async fn refused_pair(server: &Server, t: &str, first: &str, second: &str) -> String {
    let (status, body) =
        json(upload(server, t, &[(first, b"1"), (second, b"2")], None).await).await;
    assert_eq!(status, 400, "{first} / {second}: {body}");
    body["detail"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn file_names_are_named_in_errors_and_safe_to_unzip_anywhere() {
    let server = Server::start().await;
    let t = server.token("61");
    let post = |body: Vec<u8>| {
        server
            .post("/ticket", &t)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={}", multipart::BOUNDARY),
            )
            .body(body)
            .send()
    };
    // Not UTF-8: named lossily, so the student can find the file; the
    // GBK bytes of 中文.cpp, as an old Windows browser might send them.
    let (status, body) = json(post(raw_names_body(&[b"bad\xff.c"])).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Illegal file name: \"bad\u{fffd}.c\" (not UTF-8)"
    );
    let gbk = raw_names_body(&[b"ok.c", b"src/\xd6\xd0\xce\xc4.cpp"]);
    let (status, body) = json(post(gbk).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Illegal file name: \"src/\u{fffd}\u{fffd}\u{fffd}\u{fffd}.cpp\" (not UTF-8)"
    );
    // A huge illegal name is echoed escaped and cut short (one over 1 MiB
    // is refused sooner, as a part header the parser will not hold: 413).
    let huge = format!("{}?.c", "a".repeat(256 << 10));
    let response = post(raw_names_body(&[huge.as_bytes()])).await.unwrap();
    let text = response.text().await.unwrap();
    assert!(text.len() < 1024, "{} bytes", text.len());
    assert!(text.contains("Illegal file name: \\\"aaaa"), "{text}");
    // Compatibility characters that NFKC turns into `..` are refused.
    let (status, body) = json(upload(&server, &t, &[("．．/x.java", b"x")], None).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], "Illegal file name: \"．．/x.java\"");
    // One file on Windows and macOS: a duplicate, naming both.
    let (status, body) = json(
        upload(
            &server,
            &t,
            &[("src/Main.java", b"1"), ("src/main.java", b"2")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Duplicate file name: \"src/main.java\" (the same file as \"src/Main.java\" on Windows and macOS)"
    );
    let (status, _) = json(
        upload(
            &server,
            &t,
            &[("caf\u{e9}.txt", b"1"), ("cafe\u{301}.txt", b"2")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    // Equal under full case folding and NFKC (issue 21): ß/ss, ς/σ, ﬁ/fi,
    // fullwidth/ASCII; each pair is refused naming both.
    for (first, second) in [
        ("Stra\u{df}e.java", "STRASSE.java"),
        ("\u{3c3}.txt", "\u{3c2}.txt"),
        ("\u{fb01}le.c", "file.c"),
        ("\u{ff21}.c", "a.c"),
    ] {
        assert_eq!(
            refused_pair(&server, &t, first, second).await,
            format!(
                "Duplicate file name: {second:?} (the same file as {first:?} on Windows and macOS)"
            )
        );
    }
    // A file and a folder of the same name cannot both be unzipped, in
    // either order, nor when they differ only by case.
    for (first, second, file, inside) in [
        ("src", "src/x.c", "src", "src/x.c"),
        ("src/x.c", "src", "src", "src/x.c"),
        ("SRC", "src/x.c", "SRC", "src/x.c"),
        ("a/b/c.txt", "A/B", "A/B", "a/b/c.txt"),
    ] {
        assert_eq!(
            refused_pair(&server, &t, first, second).await,
            format!(
                "Duplicate file name: {file:?} is a file and also a folder, of {inside:?} (they cannot both be unzipped)"
            )
        );
    }
    // A name that reads as another: a right-to-left override.
    let (status, body) =
        json(upload(&server, &t, &[("homework\u{202E}fdp.scr", b"MZ")], None).await).await;
    assert_eq!(status, 400, "{body}");
    // A trailing dot or space, which Windows drops when it saves the file
    // (`tool.exe.` lands as `tool.exe`): refused, naming the file.
    let pe = b"MZ\x90\x00\x03\x00\x00\x00";
    for name in ["tool.exe.", "setup.msi ", "src./Main.java", "a.java."] {
        let (status, body) =
            json(upload(&server, &t, &[("ok.c", b"int x;"), (name, pe)], None).await).await;
        assert_eq!(status, 400, "{name:?}: {body}");
        assert_eq!(body["detail"], format!("Illegal file name: {name:?}"));
    }
    server.assert_nothing_left(CLEANUP).await;

    // Names Windows cannot create are kept, and rewritten in the zip only.
    let ticket = pd2_ticket_tests::create_ticket(
        &server,
        &t,
        &[("aux.c", b"a"), ("NUL.txt", b"n"), ("ok.c", b"o")],
        None,
    )
    .await;
    assert_eq!(
        ticket["files"],
        serde_json::json!(["aux.c", "NUL.txt", "ok.c"])
    );
    let id = ticket["id"].as_str().unwrap();
    let raw = server
        .get(&format!("/ticket/@me/{id}/files/aux.c"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let mut archive = pd2_ticket_tests::download_zip(&server, &t, id).await;
    let names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    assert_eq!(names, ["aux_.c", "NUL_.txt", "ok.c"]);
}

/// One user cannot take every upload slot: past `limits.uploads_per_user`
/// (4) uploads in flight, the next is 429 at once; another user's upload
/// goes through meanwhile, and once one of the four ends the user may
/// upload again.
#[tokio::test]
async fn one_user_cannot_take_every_upload_slot() {
    let server = Server::start_with(ServerOptions::default().admins(&["1"])).await;
    let (t, other, admin) = (server.token("62"), server.token("63"), server.token("1"));
    let held = || async {
        let metrics = server.metrics(&admin).await;
        pd2_ticket_tests::sample(&metrics, "pd2_upload_memory_bytes")
    };
    let body = [file_part("slow.txt", &vec![b's'; 50_000]), closing()].concat();
    let mut slow = Vec::new();
    for _ in 0..4 {
        let before = held().await;
        let mut stream = send(server.port, &post_head(server.port, Some(&t), body.len())).await;
        stream.write_all(&body[..10_000]).await.expect("a start");
        slow.push(stream);
        // In flight (its share taken) before the next.
        eventually(
            "the upload holds a share",
            Duration::from_secs(20),
            || async { held().await > before },
        )
        .await;
    }
    let response = upload(&server, &t, &[("fifth.txt", b"5")], None).await;
    assert_refused_for_now(
        response,
        429,
        "Too many uploads at once: at most 4 in progress per user",
    )
    .await;
    let (status, body) = json(upload(&server, &other, &[("mine.txt", b"ok")], None).await).await;
    assert_eq!(status, 201, "another user: {body}");
    // One of the four finishes: room again.
    drop(slow.pop());
    eventually(
        "the user may upload again",
        Duration::from_secs(20),
        || async {
            upload(&server, &t, &[("again.txt", b"again")], None)
                .await
                .status()
                == 201
        },
    )
    .await;
}

/// A client trickling its body cannot hold a share others wait for: with
/// room for one upload, a body that arrived at ~100 B/s for 11 s is cut
/// with 408 (naming what arrived) the moment another upload waits, and the
/// waiting one is stored.
#[tokio::test]
async fn a_trickling_upload_gives_its_share_to_a_waiting_one() {
    let server =
        Server::start_with(ServerOptions::default().env("PD2_LIMITS__UPLOAD_MEMORY", 7 << 20))
            .await;
    let (slow, quick) = (server.token("65"), server.token("66"));
    let body = [file_part("slow.txt", &vec![b's'; 50_000]), closing()].concat();
    let mut trickle = send(
        server.port,
        &post_head(server.port, Some(&slow), body.len()),
    )
    .await;
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(11) {
        trickle
            .write_all(&body[sent..sent + 100])
            .await
            .expect("a trickle");
        sent += 100;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (status, body) =
        json(upload(&server, &quick, &[("quick.txt", b"quick")], None).await).await;
    assert_eq!(status, 201, "{body}");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n".as_slice())
        || !String::from_utf8_lossy(&answer).contains("}")
    {
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read(&mut trickle, &mut buf),
        )
        .await;
        match read {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("Upload too slow"), "{answer}");
    // The trickled bytes are gone; the waiting upload is stored.
    let one = Stored {
        tickets: 1,
        files: 1,
        chunks: 1,
    };
    assert_eq!(wait_for(&server, one).await, one);
}
