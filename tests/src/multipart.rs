//! Hand-built multipart bodies and raw HTTP, for uploads that a normal
//! client cannot produce: cut off halfway, larger than declared, or sent
//! slowly to see when the server answers.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub const BOUNDARY: &str = "pd2testboundary7MA4YWxkTrZu0gW";

/// The opening of a file part.
pub fn file_head(name: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes()
}

/// A complete file part.
pub fn file_part(name: &str, content: &[u8]) -> Vec<u8> {
    let mut part = file_head(name);
    part.extend_from_slice(content);
    part.extend_from_slice(b"\r\n");
    part
}

pub fn closing() -> Vec<u8> {
    format!("--{BOUNDARY}--\r\n").into_bytes()
}

/// Request head of a multipart `POST /ticket` declaring `content_length`.
pub fn post_head(port: u16, token: Option<&str>, content_length: usize) -> Vec<u8> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /ticket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n"
    )
    .into_bytes()
}

/// Reads an HTTP response head (and whatever body follows) until `limit`;
/// returns the status code, or `None` if none arrived in time.
pub async fn read_status(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            return head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        }
    }
    None
}

/// Connects, sends `bytes`, and leaves the connection open.
pub async fn send(port: u16, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("send");
    stream
}
