//! The HTTP server loop: hyper connections around warp's routes.
//!
//! warp's own `serve` is not used because it offers no hook around a
//! request's route filters: here each request runs inside a
//! [`RequestContext`] (so authentication can name the user in the log
//! line), is counted in the metrics under its route template, and shutdown
//! waits for in-flight requests only as long as the grace period allows.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::{Request, body::Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;
use warp::{filters::BoxedFilter, reply::Response};

use crate::{
    api::RouteTable,
    telemetry::{RequestContext, metrics},
};

pub async fn run(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    table: Arc<RouteTable>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let io = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((io, _)) => io,
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
        let service = warp::service(routes.clone());
        let table = table.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                handle(service.clone(), &table, request)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("in-flight requests finished"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
        }
    }
}

/// One request: route filters inside the request context, then one log line
/// and the metrics.
fn handle<S>(
    mut service: S,
    table: &RouteTable,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Response, Infallible>> + use<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response, Error = Infallible>,
{
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = table.label(&path);
    let started = Instant::now();
    let context = RequestContext::default();
    async move {
        let Ok(response) = context
            .clone()
            .scope(async move { service.call(request).await })
            .await;
        let elapsed = started.elapsed();
        let status = response.status();
        metrics().request(method_label(&method), route, status.as_str(), elapsed);
        tracing::info!(
            target: "pd2_ticket::request",
            method = %method,
            route,
            path,
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            user_id = context.user_id(),
            "request"
        );
        Ok(response)
    }
}

/// Methods as metric labels; anything unusual is one label, so a client
/// inventing methods cannot grow the metrics without bound.
fn method_label(method: &hyper::Method) -> &'static str {
    use hyper::Method;
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
