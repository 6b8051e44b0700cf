//! Database health: a background check that lets requests fail fast once
//! an outage is confirmed, and only then.
//!
//! The check pings over a client of its own (one connection, its own
//! pool), so request traffic can never delay it: an earlier version shared
//! the request pool, and a burst of abandoned requests queued in front of
//! its ping made it report a healthy database as down for minutes (see
//! `gate`). One failed ping is not an outage (a late answer on a loaded
//! machine, one connection lost to an idle timeout): the check retries at
//! once on a fresh connection, and only a second failure in a row turns
//! the flag down. A late ping while requests' operations keep completing is
//! not a failure at all: the database is busy, not down (see `gate`).
//! Until then requests go to the driver, which retries a
//! lost connection itself, bounded by `mongodb.timeout_ms`. While the flag
//! is down, data routes answer 503 at once; the first good ping lets them
//! through again.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use mongodb::{Database, bson::doc};
use serde::Serialize;
use tokio::sync::{Notify, watch};

/// Ping period while the database answers.
const CHECK_UP: Duration = Duration::from_millis(500);
/// Ping period while it does not: recovery is noticed within this.
const CHECK_DOWN: Duration = Duration::from_millis(250);
/// Failed pings in a row that make an outage.
const CONFIRM: u32 = 2;

pub struct DbHealth {
    up: watch::Sender<bool>,
    last: Mutex<Check>,
    /// The database answers but fails writes on its side (a full disk):
    /// what its last write probe said.
    refusing: Mutex<Option<Refusal>>,
}

#[derive(Clone)]
struct Refusal {
    error: String,
    space: bool,
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
    /// `up`; `failing` when it answers but refuses writes (a full disk, a
    /// panicked storage engine: data routes answer 503, or 507 for space);
    /// `down`; or `unknown` before the first check.
    pub status: &'static str,
    /// With `failing`: the cause is known to be space.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub storage_full: bool,
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
            refusing: Mutex::new(None),
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

    /// Whether the last write probe was refused.
    pub fn is_refusing(&self) -> bool {
        self.refusing.lock().is_ok_and(|r| r.is_some())
    }

    pub fn status(&self) -> DbStatus {
        let last = self.last.lock().map(|c| c.clone()).unwrap_or_default();
        let refusal = self.refusing.lock().ok().and_then(|r| r.clone());
        let up = self.is_up();
        DbStatus {
            status: match (last.at, up, &refusal) {
                (None, _, _) => "unknown",
                (Some(_), true, Some(_)) => "failing",
                (Some(_), true, None) => "up",
                (Some(_), false, _) => "down",
            },
            storage_full: up && refusal.as_ref().is_some_and(|r| r.space),
            latency_ms: last.latency.map(|d| d.as_secs_f64() * 1000.0),
            error: match (up, refusal) {
                (true, Some(r)) => Some(format!("writes refused: {}", r.error)),
                _ => last.error,
            },
            checked_ms_ago: last.at.map(|at| at.elapsed().as_millis() as u64),
        }
    }

    /// What a write probe found: `None`, writes work.
    fn record_refusal(&self, refusal: Option<Refusal>) {
        let Ok(mut current) = self.refusing.lock() else {
            return;
        };
        match (&*current, &refusal) {
            (None, Some(r)) => {
                tracing::error!(error = %r.error, storage_full = r.space, "database refuses writes");
            }
            (Some(_), None) => tracing::info!("database accepts writes again"),
            _ => {}
        }
        crate::telemetry::metrics()
            .database_up
            .set(i64::from(self.is_up() && refusal.is_none()));
        *current = refusal;
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
        crate::telemetry::metrics()
            .database_up
            .set(i64::from(up && !self.is_refusing()));
        self.up.send_if_modified(|current| {
            let changed = *current != up;
            *current = up;
            changed
        });
    }
}

/// The health check: pings over its own client and records the result.
pub struct Monitor {
    pub(super) db: Database,
    pub(super) health: std::sync::Arc<DbHealth>,
    /// An answer slower than this is a failed ping: `mongodb.timeout_ms`,
    /// the same bound requests get.
    pub(super) timeout: Duration,
    /// A ping older than this is given up for a new one.
    pub(super) abandon: Duration,
    /// Notified when a request's operation timed out: look now.
    pub(super) suspect: std::sync::Arc<Notify>,
    /// When requests' operations last came back (see `gate`).
    pub(super) progress: std::sync::Arc<super::gate::Progress>,
    /// Set by the gate when an operation met a failure of the database's
    /// own; cleared here when looked at.
    pub(super) refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Monitor {
    /// Checks the database forever; spawned once by the server.
    ///
    /// A ping that does not answer in time counts as failed but is not
    /// dropped: the next check waits for the same one. Dropping it would
    /// leave a dead check-out in the driver's queue of this one-connection
    /// pool (see `gate`), which would hold back the pings after the
    /// database recovers; waiting for it instead notices the recovery the
    /// moment it answers.
    pub async fn run(self) {
        let mut failures = 0u32;
        let mut probed: Option<Instant> = None;
        let mut in_flight: Option<(Instant, tokio::task::JoinHandle<_>)> = None;
        loop {
            let (started, ping) = in_flight.get_or_insert_with(|| {
                let db = self.db.clone();
                let ping = tokio::spawn(async move { db.run_command(doc! { "ping": 1 }).await });
                (Instant::now(), ping)
            });
            let started = *started;
            if started.elapsed() > self.abandon {
                // A connection that never answers (a black-holed network)
                // must not keep the check down after the path heals.
                ping.abort();
                in_flight = None;
                continue;
            }
            let result = match tokio::time::timeout(self.timeout, &mut *ping).await {
                // A late ping while requests' operations keep coming back
                // is a busy database (one process answering in turn), not
                // a down one: wait on for the same ping.
                Err(_) if self.progress.within(self.timeout) => {
                    tracing::debug!("database ping slow while operations complete: busy");
                    continue;
                }
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
                Ok(answer) => {
                    in_flight = None;
                    match answer {
                        Ok(Ok(_)) => Ok(Some(started.elapsed())),
                        Ok(Err(error)) => Err(error.to_string()),
                        Err(join) => Err(format!("the ping failed: {join}")),
                    }
                }
            };
            match result {
                Ok(latency) => {
                    failures = 0;
                    self.health.record(Ok(latency));
                    // A ping says nothing of writes: after an operation met
                    // a failure of the database's own, and while writes
                    // fail, a small write tells.
                    // At most one probe per CHECK_DOWN, however many
                    // failing requests wake the check.
                    let due = probed.is_none_or(|at: Instant| at.elapsed() >= CHECK_DOWN);
                    if due
                        && (self
                            .refused
                            .swap(false, std::sync::atomic::Ordering::Relaxed)
                            || self.health.is_refusing())
                    {
                        probed = Some(Instant::now());
                        self.probe_writes().await;
                    }
                }
                Err(error) => {
                    failures += 1;
                    if failures >= CONFIRM {
                        self.health.record(Err(error));
                    } else {
                        // Unconfirmed: look again at once. After an error
                        // the driver has closed the connection that failed,
                        // so the retry runs on a fresh one; after a timeout
                        // it waits once more for the same ping.
                        tracing::debug!(%error, "database ping failed; checking again");
                        continue;
                    }
                }
            }
            let period = if failures == 0 && !self.health.is_refusing() {
                CHECK_UP
            } else {
                CHECK_DOWN
            };
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = self.suspect.notified() => {}
            }
        }
    }

    /// Writes one small document (collection `health`) and records
    /// whether the database took it. Run on a task of its own, like the
    /// ping, so giving up on it never leaves a dead check-out behind.
    async fn probe_writes(&self) {
        let db = self.db.clone();
        let probe = tokio::spawn(async move {
            db.collection::<mongodb::bson::Document>("health")
                .update_one(
                    doc! { "_id": "write-probe" },
                    doc! { "$set": { "at": mongodb::bson::DateTime::now() } },
                )
                .upsert(true)
                .await
        });
        match tokio::time::timeout(self.timeout, probe).await {
            Ok(Ok(Ok(_))) => self.health.record_refusal(None),
            Ok(Ok(Err(error))) => {
                let error = super::StoreError::from(error);
                if error.is_database_failure() {
                    self.health.record_refusal(Some(Refusal {
                        space: error.is_out_of_space(),
                        error: error.to_string(),
                    }));
                }
            }
            // No answer in time, or a failed task: the pings decide.
            Ok(Err(_)) | Err(_) => {}
        }
    }
}
