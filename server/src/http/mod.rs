//! The HTTP server loop: hyper connections around warp's routes.
//!
//! warp's own `serve` is not used because it offers no hook around a
//! request's route filters: here each request runs inside a
//! [`RequestContext`] (so authentication can name the user in the log
//! line), is counted in the metrics under its route template, and shutdown
//! waits for in-flight requests only as long as the grace period allows.
//!
//! Connections are bounded here too, since a client needs no token to open
//! one: at most `server.max_connections` are open. At the limit the
//! connection idle the longest (one that has sent no request yet, or sits
//! in keep-alive between requests) is closed to make room, so a new client
//! is served at once while any slot is only held by waiting; when every
//! connection is busy with a request, the loop stops accepting and clients
//! wait in the kernel's listen queue (instead of costing memory and file
//! descriptors). A request head must arrive within
//! `server.header_read_timeout_secs` of connecting or of its first byte,
//! and an idle kept-alive connection is closed after
//! `server.keep_alive_secs`. Requests in progress are bounded by their own
//! limits (upload idle time, database and plugin deadlines), not here.

mod compress;
mod conn;

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::{Method, Request, body::Incoming, header::HeaderValue};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::Semaphore};
use warp::{filters::BoxedFilter, http::StatusCode, reply::Response};

use crate::{
    config::ServerConfig,
    telemetry::{RequestContext, metrics},
};

use conn::{Activity, Tracked, Watched};

/// The address a request's connection came from, in the request's
/// extensions for the routes (`warp::ext::optional::<Peer>()`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

/// Names requests for logs and metrics by the route they match, so labels
/// stay few whatever paths clients send. The route table implements it.
pub trait RouteLabels: Send + Sync {
    /// The route template a path matches (`unmatched` when none).
    fn label(&self, path: &str) -> &'static str;
    /// The `Allow` header for a path whose route exists with other methods.
    fn allow(&self, path: &str) -> Option<&'static str>;
}

/// What bounds a connection; from `[server]`.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keep_alive: Duration,
    pub grace: Duration,
}

impl Limits {
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections.max(1),
            header_read_timeout: server.header_read_timeout(),
            keep_alive: server.keep_alive(),
            grace: Duration::from_secs(server.shutdown_grace_secs),
        }
    }
}

pub async fn run(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    table: Arc<dyn RouteLabels>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = OpenConnections::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut saturated = false;
    'accept: loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((io, peer)) => (io, peer),
                Err(error) => {
                    // Usually out of file descriptors: back off briefly
                    // instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Then a slot: at the limit, the connection idle the longest is
        // closed to make room; while every one is busy, this client waits
        // (and the next ones in the listen queue) until a slot frees, and
        // one that goes idle meanwhile is closed for it.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => loop {
                open.evict_longest_idle();
                if !saturated {
                    saturated = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; closing idle connections, new ones wait"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => break slot,
                        Err(_) => break 'accept,
                    },
                    () = tokio::time::sleep(EVICT_RECHECK) => {}
                    () = &mut shutdown => break 'accept,
                }
            },
        };
        saturated = false;
        let service = warp::service(routes.clone());
        let table = table.clone();
        let watcher = graceful.watcher();
        let open = open.clone();
        tokio::spawn(async move {
            let _slot = slot;
            metrics().connections_open.inc();
            let activity = Arc::new(Activity::new());
            open.add(&activity);
            let io = Watched::new(io, activity.clone());
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(Peer(peer));
                    handle(service.clone(), &*table, &activity, request)
                })
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::select! {
                result = watcher.watch(connection) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                reason = activity.expired(limits.header_read_timeout, limits.keep_alive) => {
                    tracing::debug!(reason, "closing connection");
                }
            }
            metrics().connections_open.dec();
        });
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("in-flight requests finished"),
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace_secs = limits.grace.as_secs(), "grace period over; closing remaining connections");
        }
    }
}

/// How often a full server looks again for an idle connection to close.
const EVICT_RECHECK: Duration = Duration::from_millis(100);

/// The open connections, for closing the one idle the longest when the
/// server is full. Weak: a connection's task owns its activity.
#[derive(Clone, Default)]
struct OpenConnections(Arc<std::sync::Mutex<Vec<std::sync::Weak<Activity>>>>);

impl OpenConnections {
    fn add(&self, activity: &Arc<Activity>) {
        if let Ok(mut open) = self.0.lock() {
            // Closed ones go whenever one is added: the list stays at most
            // about `max_connections` long.
            open.retain(|a| a.strong_count() > 0);
            open.push(Arc::downgrade(activity));
        }
    }

    /// Asks the connection idle the longest to close, if there is one.
    fn evict_longest_idle(&self) {
        let Ok(open) = self.0.lock() else { return };
        let longest = open
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter_map(|a| a.idle_from().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        if let Some((_, activity)) = longest {
            tracing::debug!("closing the connection idle the longest for a new client");
            activity.evict();
        }
    }
}

/// One request: route filters inside the request context, then one log line
/// and the metrics.
fn handle<S>(
    mut service: S,
    table: &dyn RouteLabels,
    activity: &Arc<Activity>,
    mut request: Request<Incoming>,
) -> impl Future<Output = Result<hyper::Response<Tracked>, Infallible>> + use<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response, Error = Infallible>,
{
    let busy = activity.request_started();
    let method = request.method().clone();
    // HEAD is answered wherever GET is: the routes see a GET, and hyper,
    // which remembers the request's real method, sends the headers only.
    if method == Method::HEAD {
        *request.method_mut() = Method::GET;
    }
    let path = request.uri().path().to_owned();
    let encoding = compress::negotiate(request.headers().get(hyper::header::ACCEPT_ENCODING));
    let ranged = request.headers().contains_key(hyper::header::RANGE);
    let route = table.label(&path);
    let allow = table.allow(&path);
    let started = Instant::now();
    let context = RequestContext::default();
    async move {
        let Ok(mut response) = context
            .clone()
            .scope(async move { service.call(request).await })
            .await;
        let elapsed = started.elapsed();
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = allow
        {
            response
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
        }
        metrics().request(method_label(&method), route, status.as_str(), elapsed);
        tracing::info!(
            target: "pd2_ticket::request",
            method = %method,
            route,
            path,
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            user_id = context.user_id(),
            db_commands = context.db_commands(),
            "request"
        );
        let user = context.user_id();
        let response = compress::compress(response, encoding, ranged, user.as_deref()).await;
        // The connection counts as busy until the body has been sent.
        Ok(response.map(|body| Tracked::new(body, busy)))
    }
}

/// Methods as metric labels; anything unusual is one label, so a client
/// inventing methods cannot grow the metrics without bound.
fn method_label(method: &hyper::Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}
