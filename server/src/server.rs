//! The composition root: builds nothing itself but wires what `context`
//! built to the outside world: background tasks (health check, database
//! preparation, janitor, plugin watcher, preview sweeps), then the HTTP
//! server until a shutdown signal.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use warp::{Filter, Reply};

use crate::{api, http, service, service::Ctx, telemetry};

/// How often the plugin directory is checked for changes.
const PLUGIN_RESCAN: Duration = Duration::from_secs(1);

/// Runs the server until SIGINT/SIGTERM, then lets in-flight requests finish.
pub async fn serve(ctx: Ctx) -> anyhow::Result<()> {
    let addr: SocketAddr = format!("{}:{}", ctx.config.server.host, ctx.config.server.port)
        .parse()
        .map_err(|e| {
            anyhow::anyhow!("invalid configuration at `server.host`/`server.port`: {e}")
        })?;
    let listener = listen(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    // The bound address, not the configured one: with `server.port = 0` the
    // system picks the port and this line is how to learn it.
    let addr = listener.local_addr().unwrap_or(addr);
    telemetry::metrics();
    // None of these wait for the database: the server starts (and answers
    // 503 on data routes) while it is down, and recovers when it returns.
    tokio::spawn(ctx.store.monitor().run());
    tokio::spawn(prepare_database(ctx.clone()));
    let janitor = ctx.janitor.clone();
    tokio::spawn(async move { janitor.run().await });
    // Plugins load in the background: `/ping` answers from the first
    // instant, and routes that need plugins wait for the first load.
    ctx.plugins.watch(PLUGIN_RESCAN);
    tokio::spawn(service::previews::sweep(ctx.clone()));
    tokio::spawn(ctx.upload_memory.clone().give_back());
    tracing::info!(
        %addr,
        uploads_at_once = ctx.upload_memory.shares(),
        "listening"
    );

    let origins = &ctx.config.server.cors_origins;
    let routes = if origins.is_empty() {
        api::routes(ctx.clone()).boxed()
    } else {
        let cors = warp::cors()
            .allow_origins(origins.iter().map(String::as_str))
            .allow_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
            .allow_headers(["authorization", "content-type", "range", "if-none-match"])
            .expose_headers([
                "etag",
                "content-disposition",
                "content-range",
                "accept-ranges",
            ])
            .max_age(600);
        // The inner routes never reject (they recover into responses), so
        // every answer, errors included, carries the CORS headers; the outer
        // recover answers the requests CORS itself refuses.
        api::routes(ctx.clone())
            .with(cors)
            .map(Reply::into_response)
            .recover(api::recover)
            .unify()
            .boxed()
    };
    let limits = http::Limits::from_config(&ctx.config.server);
    let table = Arc::new(api::RouteTable::new());
    http::run(listener, routes, table, shutdown_signal(), limits).await;
    tracing::info!("stopped");
    Ok(())
}

/// A listener whose connections send small writes at once. Without
/// TCP_NODELAY the last piece of a streamed response waits for the client's
/// delayed ACK: about 40 ms per file download. Linux hands the option from
/// the listening socket to every accepted one (warp accepts them itself).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Creates indexes and loads the JWT secret once the database is reachable
/// (a secret already in memory keeps tokens verifiable through an outage);
/// retries in the background so start-up never waits for the database.
async fn prepare_database(ctx: Ctx) {
    let mut delay = Duration::from_millis(500);
    loop {
        let ready = async {
            ctx.store.ensure_indexes().await?;
            ctx.tokens.warm().await?;
            ctx.store.background().tickets.number_legacy().await
        };
        match ready.await {
            Ok(()) => {
                tracing::info!("database ready");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "database not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
