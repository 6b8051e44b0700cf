//! Connection hygiene and protocol details: slow and idle clients are cut
//! off, the number of connections is bounded, HEAD works where GET does,
//! 405 says what is allowed, and every error, protocol-level ones
//! included, is JSON.

use std::time::{Duration, Instant};

use pd2_ticket_tests::{Server, ServerOptions, create_ticket, json, multipart};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Waits until the server closes `stream` (EOF or reset), failing after
/// `limit`; returns how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

/// A whole raw response: status and body, read until the server closes or
/// `Content-Length` bytes arrived.
async fn raw_exchange(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut stream = multipart::send(port, request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn slow_and_idle_connections_are_cut_off() {
    let server = Server::start_with(
        ServerOptions::default()
            .env("PD2_SERVER__HEADER_READ_TIMEOUT_SECS", 2)
            .env("PD2_SERVER__KEEP_ALIVE_SECS", 3),
    )
    .await;
    // Half a request line, then nothing (slowloris).
    let mut slow = multipart::send(server.port, b"GET /pi").await;
    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    // A request head trickling in a byte at a time is cut off too: the
    // timeout counts from its first byte, not from the last.
    let mut trickle =
        multipart::send(server.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    let trickler = tokio::spawn(async move {
        for _ in 0..200 {
            if trickle.write_all(b"a").await.is_err() {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    assert!(closed_within(&mut slow, Duration::from_secs(15)).await >= Duration::from_secs(1));
    closed_within(&mut silent, Duration::from_secs(15)).await;
    assert_eq!(
        trickler.await.expect("join"),
        Some(()),
        "trickling head never cut off"
    );

    // A kept-alive connection is closed once idle, after its request.
    let mut kept = multipart::send(server.port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle = closed_within(&mut kept, Duration::from_secs(15)).await;
    assert!(idle >= Duration::from_secs(2), "closed after {idle:?}");

    // Meanwhile the server answers everyone else.
    assert_eq!(server.get_anonymous("/ping").await.status(), 200);
}

/// At most `max_connections` are open. At the limit the connection idle
/// the longest is closed for a new client, so a full house of idle
/// (kept-alive, or silent) connections never keeps anyone waiting; while
/// every connection is busy with a request, a new one waits until a slot
/// frees.
#[tokio::test]
async fn the_number_of_connections_is_bounded() {
    let server = Server::start_with(
        ServerOptions::default()
            .env("PD2_SERVER__MAX_CONNECTIONS", 8)
            .env("PD2_SERVER__KEEP_ALIVE_SECS", 120)
            .env("PD2_SERVER__HEADER_READ_TIMEOUT_SECS", 120)
            // Eight uploads of one user below (the per-user cap is
            // `uploads::one_user_cannot_take_every_upload_slot`'s).
            .env("PD2_LIMITS__UPLOADS_PER_USER", 8),
    )
    .await;
    let token = server.token("81");
    let ping = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 1024];
    let answered =
        |n: usize, buf: &[u8]| String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200");

    // A full house of idle connections: eight kept alive after an answer.
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut stream = multipart::send(server.port, ping).await;
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("served")
            .expect("read");
        assert!(answered(n, &buf));
        idle.push(stream);
    }
    // Without room, a new client would wait for their 120 s timeouts; the
    // one idle the longest is closed for it instead.
    let mut newcomer = multipart::send(server.port, ping).await;
    let n = tokio::time::timeout(Duration::from_secs(30), newcomer.read(&mut buf))
        .await
        .expect("a new client is served at a full house of idle connections")
        .expect("read");
    assert!(answered(n, &buf));
    let closed = tokio::time::timeout(Duration::from_secs(30), idle[0].read(&mut buf))
        .await
        .expect("the oldest idle connection is closed")
        .unwrap_or(0);
    assert_eq!(closed, 0, "the oldest idle connection was closed");
    drop(idle);

    // Eight busy connections: uploads whose bodies are still coming.
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut head = multipart::post_head(server.port, Some(&token), 1 << 20);
        head.extend(multipart::file_head("slow.txt"));
        head.extend([b'x'; 1000]);
        busy.push(multipart::send(server.port, &head).await);
    }
    // The uploads are in progress (the server has their heads) once a
    // ninth connection is not served.
    let started = std::time::Instant::now();
    let mut waiting = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "a ninth connection was still served after 120 s: the uploads are not in progress"
        );
        let mut stream = multipart::send(server.port, ping).await;
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            // Served: a slot was still free (an upload's head not read yet,
            // or the harness's own idle connection closed for it).
            Ok(Ok(n)) if n > 0 => continue,
            Ok(other) => panic!("connection failed: {other:?}"),
            Err(_) => break stream,
        }
    };
    // One upload goes: the waiting client is accepted and answered.
    drop(busy.remove(0));
    let n = tokio::time::timeout(Duration::from_secs(30), waiting.read(&mut buf))
        .await
        .expect("served once a slot was free")
        .expect("read");
    assert!(answered(n, &buf));
}

#[tokio::test]
async fn head_405_and_protocol_errors_answer_like_the_api() {
    let server = Server::start().await;
    let token = server.token("41");
    let ticket = create_ticket(&server, &token, &[("a.txt", b"hello")], None).await;
    let file = format!(
        "/ticket/@me/{}/files/a.txt",
        ticket["id"].as_str().expect("id")
    );

    // HEAD: GET's status and headers, no body.
    let head = server
        .http
        .head(server.url(&file))
        .bearer_auth(&token)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5");
    assert!(head.headers().contains_key("etag"));
    assert!(head.bytes().await.expect("body").is_empty());
    let (status, head_text, body) = raw_exchange(
        server.port,
        b"HEAD /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, ""), "{head_text}");
    assert_eq!(
        server
            .http
            .head(server.url("/ticket"))
            .send()
            .await
            .expect("head")
            .status(),
        403
    );

    // 405 names what is allowed.
    let response = server
        .http
        .patch(server.url("/ticket"))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    let (status, body) = json(response).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (405, Some("Method Not Allowed"))
    );
    let response = server
        .http
        .post(server.url(&file))
        .send()
        .await
        .expect("post");
    assert_eq!(response.headers()["allow"], "GET, HEAD");

    // Requests hyper cannot parse still get a JSON body.
    let (status, head, body) = raw_exchange(server.port, b"NOT A REQUEST\r\n\r\n").await;
    assert_eq!(status, 400);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(body["detail"], "Bad Request");
    let mut huge = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(vec![b'a'; 512 * 1024]);
    huge.extend(b"\r\n\r\n");
    let (status, _, body) = raw_exchange(server.port, &huge).await;
    assert_eq!(status, 431);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(body["detail"], "Request Header Fields Too Large");
}

/// Paging numbers too large for 64 bits are still numbers: clamped like
/// any other (length to 100, offset past the end), never a 400.
#[tokio::test]
async fn huge_paging_numbers_are_clamped() {
    let server = Server::start().await;
    let token = server.token("42");
    create_ticket(&server, &token, &[("a.txt", b"a")], None).await;
    for (query, expected) in [
        ("length=99999999999999999999", 1),
        ("length=-99999999999999999999", 1),
        ("offset=9223372036854775808", 0),
        ("offset=-99999999999999999999", 1),
    ] {
        let (status, body) = json(
            server
                .get(&format!("/ticket?{query}"), &token)
                .send()
                .await
                .expect("list"),
        )
        .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body.as_array().map(Vec::len), Some(expected), "{query}");
    }
    let (status, _) = json(
        server
            .get("/ticket?length=ten", &token)
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(status, 400);
}
