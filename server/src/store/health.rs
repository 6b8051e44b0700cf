//! Database health: a background check that lets requests fail fast.
//!
//! The driver would make every request wait for a server up to the
//! selection timeout while the database is down. Instead, two sources keep
//! one up/down flag: the driver's topology events (a lost connection or a
//! primary stepping down is known at once) and a periodic ping (which also
//! catches a server that accepts connections but does not answer). While
//! the flag is down, data routes answer 503 at once; the first sign of a
//! usable server lets them through again.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::watch;

/// Ping period while the database answers.
const CHECK_UP: Duration = Duration::from_millis(500);
/// Ping period while it does not: recovery is noticed within this.
const CHECK_DOWN: Duration = Duration::from_millis(250);
/// A ping slower than this counts as a failure. Generous: a busy server is
/// not a dead one, and lost connections are reported by topology events.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

pub struct DbHealth {
    up: watch::Sender<bool>,
    last: Mutex<Check>,
}

#[derive(Clone, Default)]
struct Check {
    at: Option<Instant>,
    latency: Option<Duration>,
    error: Option<String>,
}

/// What `GET /health` reports about the database: the last background
/// check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DbStatus {
    /// `up`, `down`, or `unknown` before the first check.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Age of the check this status comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_ms_ago: Option<u64>,
}

impl Default for DbHealth {
    fn default() -> Self {
        // Until the first check answers, requests go to the driver.
        Self {
            up: watch::Sender::new(true),
            last: Mutex::new(Check::default()),
        }
    }
}

impl DbHealth {
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Changes of availability, for work that waits for the database.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    pub fn status(&self) -> DbStatus {
        let last = self.last.lock().map(|c| c.clone()).unwrap_or_default();
        DbStatus {
            status: match (last.at, self.is_up()) {
                (None, _) => "unknown",
                (Some(_), true) => "up",
                (Some(_), false) => "down",
            },
            latency_ms: last.latency.map(|d| d.as_secs_f64() * 1000.0),
            error: last.error,
            checked_ms_ago: last.at.map(|at| at.elapsed().as_millis() as u64),
        }
    }

    /// From the driver's topology events: whether a server can take writes.
    pub fn topology_changed(&self, writable: bool) {
        if writable {
            self.record(Ok(None));
        } else if self.last.lock().is_ok_and(|last| last.at.is_none()) {
            // The driver's first view, before it has contacted anything:
            // not news. The first ping decides what to report.
            self.up.send_replace(false);
        } else {
            self.record(Err(
                "no writable server (connection lost or no primary)".into()
            ));
        }
    }

    fn record(&self, result: Result<Option<Duration>, String>) {
        let up = result.is_ok();
        let was_up = self.is_up();
        if let Ok(mut last) = self.last.lock() {
            let first = last.at.is_none();
            *last = match result {
                Ok(latency) => Check {
                    at: Some(Instant::now()),
                    latency: latency.or(last.latency),
                    error: None,
                },
                Err(error) => {
                    if was_up || first {
                        tracing::error!(%error, "database unavailable");
                    }
                    Check {
                        at: Some(Instant::now()),
                        latency: None,
                        error: Some(error),
                    }
                }
            };
            if up && (!was_up || first) {
                tracing::info!("database available");
            }
        }
        crate::telemetry::metrics().database_up.set(i64::from(up));
        self.up.send_if_modified(|current| {
            let changed = *current != up;
            *current = up;
            changed
        });
    }
}

impl super::Store {
    /// Checks the database forever; spawned once by the server.
    pub async fn monitor(self) {
        loop {
            let started = Instant::now();
            let result = match tokio::time::timeout(PING_TIMEOUT, self.ping()).await {
                Ok(Ok(())) => Ok(Some(started.elapsed())),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
            };
            let up = result.is_ok();
            self.health.record(result);
            tokio::time::sleep(if up { CHECK_UP } else { CHECK_DOWN }).await;
        }
    }
}
