//! Per-connection bookkeeping: what phase a connection is in (waiting for
//! a request head, busy with requests, idle between them), so the server
//! can cut slow and idle clients off; and the JSON bodies of the errors
//! hyper answers by itself.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Notify,
    time::Instant,
};

/// No such moment.
const NEVER: u64 = u64::MAX;

/// What a connection is doing, shared by its IO, its requests and its
/// watchdog.
pub struct Activity {
    start: Instant,
    /// Requests being handled, bodies still being sent included.
    busy: AtomicU32,
    /// Requests handed to the routes so far.
    requests: AtomicU64,
    /// Milliseconds after `start` when the server began waiting for a
    /// request head: at connect, then at the first byte after an idle
    /// period. `NEVER` while no head is awaited.
    head_since: AtomicU64,
    /// Milliseconds after `start` when the last request finished.
    idle_since: AtomicU64,
    /// Closed to make room at the connection limit (see `evict`).
    evicted: AtomicBool,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            busy: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(NEVER),
            evicted: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    /// Since when the connection has been waiting for a client that sends
    /// nothing (no request in progress): its connect, or the end of its
    /// last request. `None` while a request is in progress.
    pub fn idle_from(&self) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        let since = match self.head_since.load(Ordering::SeqCst) {
            NEVER => self.idle_since.load(Ordering::SeqCst),
            since => since,
        };
        (since != NEVER).then(|| self.start + Duration::from_millis(since))
    }

    /// Asks the connection to close now, if it is still idle: the server is
    /// full and a new client needs its slot.
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A request head has been read; the connection is busy until the
    /// returned guard (held by the response body) is dropped.
    pub fn request_started(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(NEVER, Ordering::SeqCst);
        self.changed.notify_one();
        BusyGuard(self.clone())
    }

    fn bytes_read(&self) {
        if self.busy.load(Ordering::SeqCst) == 0
            && self.head_since.load(Ordering::SeqCst) == NEVER
            && self
                .head_since
                .compare_exchange(NEVER, self.now(), Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Resolves when the connection has overstayed: its request head took
    /// longer than `header`, or it sat idle longer than `keep_alive`.
    /// Never while a request is in progress.
    pub async fn expired(&self, header: Duration, keep_alive: Duration) -> &'static str {
        loop {
            let changed = self.changed.notified();
            // A request that began since keeps its connection.
            if self.is_idle() && self.evicted.load(Ordering::SeqCst) {
                return "closed for a new client at the connection limit";
            }
            self.evicted.store(false, Ordering::SeqCst);
            let deadline = if !self.is_idle() {
                None
            } else {
                match self.head_since.load(Ordering::SeqCst) {
                    NEVER => {
                        let since = self.idle_since.load(Ordering::SeqCst);
                        (since != NEVER).then(|| {
                            (
                                since + keep_alive.as_millis() as u64,
                                "idle keep-alive timeout",
                            )
                        })
                    }
                    since => Some((since + header.as_millis() as u64, "request head timeout")),
                }
            };
            match deadline {
                None => changed.await,
                Some((at, reason)) => {
                    let now = self.now();
                    if now >= at {
                        return reason;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// Marks its connection busy while alive.
pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::SeqCst);
        activity.busy.fetch_sub(1, Ordering::SeqCst);
        activity.changed.notify_one();
    }
}

/// warp's response body type, which warp does not name publicly.
pub trait BodyOf {
    type Body;
}
impl<B> BodyOf for warp::http::Response<B> {
    type Body = B;
}
type WarpBody = <warp::reply::Response as BodyOf>::Body;

/// A response body that keeps its connection busy until it is sent (or
/// dropped because the client went away).
pub struct Tracked {
    body: WarpBody,
    busy: Option<BusyGuard>,
}

impl Tracked {
    pub fn new(body: WarpBody, busy: BusyGuard) -> Self {
        Self {
            body,
            busy: Some(busy),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = warp::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, warp::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client socket, telling [`Activity`] when bytes arrive, and giving
/// the error responses hyper writes by itself (a request it cannot parse:
/// 400, 414, 431, with an empty body) the `{"detail": ...}` body every
/// other error has. Those are told from the routes' own responses by
/// counting: a response head written when every request handed to the
/// routes already has its head out can only be hyper's.
pub struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
    /// Response heads of the routes written so far.
    heads: u64,
    /// A replacement response still to be written, and how much of it is.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Watched {
    pub fn new(io: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            io,
            activity,
            heads: 0,
            replacement: None,
        }
    }

    /// Looks at a write that begins a response head: counts it when it
    /// answers a request of the routes; otherwise returns the JSON
    /// replacement of hyper's own error response, if it is one. `whole`
    /// is whether `first` is all that is being written.
    fn inspect(&mut self, first: &[u8], whole: bool) -> Option<Vec<u8>> {
        if !first.starts_with(b"HTTP/1.") {
            return None;
        }
        if self.heads < self.activity.requests.load(Ordering::SeqCst) {
            self.heads += 1;
            return None;
        }
        whole.then(|| replacement(first)).flatten()
    }

    /// Writes what is left of a replacement; `Ready(Ok)` once it is out.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The JSON version of one of hyper's own error responses: `buf` is a
/// whole bodiless 4xx head.
fn replacement(buf: &[u8]) -> Option<Vec<u8>> {
    if buf.len() > 512 || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?;
    let status_line = head.lines().next()?;
    let rest = status_line.strip_prefix("HTTP/1.1 4")?;
    let reason = rest.get(3..)?.trim();
    let lower = head.to_ascii_lowercase();
    if !lower.contains("content-length: 0\r\n") || reason.is_empty() {
        return None;
    }
    let body = serde_json::json!({ "detail": reason }).to_string();
    Some(
        format!(
            "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        if let Some(bytes) = self.inspect(buf, true) {
            self.replacement = Some((bytes, 0));
            // Accepted whole; written by the next poll (or flush).
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let Some(first) = non_empty.next() {
            let whole = non_empty.next().is_none();
            if let Some(bytes) = self.inspect(first, whole) {
                self.replacement = Some((bytes, 0));
                return Poll::Ready(Ok(first.len()));
            }
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_errors_get_a_json_body() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 00:00:00 GMT\r\n\r\n";
        let replaced = String::from_utf8(replacement(bare).expect("replaced")).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(replaced.ends_with("\r\n\r\n{\"detail\":\"Bad Request\"}"));
        assert!(replaced.contains("content-length: 24\r\n"));
        let with_body = b"HTTP/1.1 404 Not Found\r\ncontent-length: 24\r\n\r\n";
        assert!(replacement(with_body).is_none());
    }

    #[tokio::test]
    async fn the_routes_own_bodiless_errors_pass_untouched() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let activity = Arc::new(Activity::new());
        let mut watched = Watched::new(server, activity.clone());
        let bare = b"HTTP/1.1 416 Range Not Satisfiable\r\ncontent-range: bytes */5\r\ncontent-length: 0\r\n\r\n";
        // A request of the routes, finished before its head goes out.
        drop(activity.request_started());
        assert!(watched.inspect(bare, true).is_none());
        // A head nobody asked the routes for: hyper's own.
        assert!(watched.inspect(bare, true).is_some());
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_heads_and_idle_connections_expire() {
        let activity = Arc::new(Activity::new());
        let header = Duration::from_secs(10);
        let keep_alive = Duration::from_secs(30);
        // A fresh connection must send its head within `header`.
        let started = Instant::now();
        assert_eq!(
            activity.expired(header, keep_alive).await,
            "request head timeout"
        );
        assert_eq!(started.elapsed().as_secs(), 10);
        // Busy: never expires; then idle for `keep_alive`.
        let busy = activity.request_started();
        let watch = activity.clone();
        let expiry = tokio::spawn(async move { watch.expired(header, keep_alive).await });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!expiry.is_finished());
        let idle_from = Instant::now();
        drop(busy);
        assert_eq!(expiry.await.unwrap(), "idle keep-alive timeout");
        assert_eq!(idle_from.elapsed().as_secs(), 30);
    }
}
