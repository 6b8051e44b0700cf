//! The gate every database operation of the store passes through.
//!
//! Two things about the driver decide its shape (mongodb 3.9, measured
//! here):
//!
//! - **A dropped operation future costs everyone.** The pool's worker task
//!   serves at most one queued check-out per event it wakes up for (a
//!   check-in, a new request, its 500 ms maintenance tick). A request whose
//!   client hung up while it waited for a connection stays in that queue;
//!   with no traffic left, the queue drains at about two entries a second.
//!   200 abandoned requests kept every later request (and a health ping on
//!   the same client) waiting ~90 s, while the database idled. A future
//!   dropped mid-command also closes its connection.
//! - **Nothing bounds a command once it is sent**: a server that accepts
//!   connections but does not answer (a frozen primary, a black-holed
//!   network) holds the caller for as long as it is frozen.
//!
//! So an operation runs on a task of its own, which a caller giving up
//! cannot cancel: the driver only ever sees operations run to completion,
//! and an abandoned one just finishes and returns its connection. At most
//! as many operations run as the pool has connections, so the driver's
//! queue never holds more than the pool can serve; callers queue here
//! instead, where waiting is cancellation-safe.
//!
//! How long a caller waits tells a database that is down from one that is
//! busy. A caller gives up (503) once the database has finished no
//! operation for `mongodb.timeout_ms` while it waited: a frozen or
//! unreachable database is reported that fast. While operations keep
//! finishing, the database is only busy, and the caller keeps its place in
//! the queue, up to the abandon limit. A fixed deadline for queue and
//! answer together turned load into failures: 32 students uploading a
//! 2.4 MB project at once queue for longer than 2 s behind each other's
//! writes, and got 503 `Database unavailable` from a database that was
//! working at full speed (bench `--folders`, issue 20).

use std::{
    future::Future,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{Notify, Semaphore},
    time::{Instant, timeout, timeout_at},
};

use super::{Result, StoreError};

/// An operation nobody waits for any more is dropped after this, so a
/// server that never answers cannot hold a connection (and a permit)
/// forever; the driver's own monitor usually gives up on it first.
const ABANDON_AFTER: Duration = Duration::from_secs(30);

/// When something last came back: for the gate, an operation of this
/// process that the database finished (its sign of life while it is busy);
/// for the upload budget, a share (see `upload_memory`).
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    /// Milliseconds after `epoch`.
    last: AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    pub(super) fn mark(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// The last time something came back.
    pub fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Whether something came back within `window` of now.
    pub fn within(&self, window: Duration) -> bool {
        self.last().elapsed() < window
    }
}

#[derive(Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    /// Silence from the database that makes a caller give up.
    deadline: Duration,
    abandon: Duration,
    progress: Arc<Progress>,
    /// Woken when an operation times out, so the health check looks at
    /// once instead of at its next period.
    suspect: Arc<Notify>,
    /// Set when an operation met a failure of the database's own (a full
    /// disk, a panicked storage engine): the health check looks into it.
    refused: Arc<AtomicBool>,
}

impl Gate {
    pub fn new(concurrency: usize, deadline: Duration, suspect: Arc<Notify>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            deadline,
            abandon: ABANDON_AFTER.max(deadline * 4),
            progress: Arc::new(Progress::new()),
            suspect,
            refused: Arc::default(),
        }
    }

    /// Runs one operation (one or a few round trips) to completion on its
    /// own task; the caller waits for a permit and the answer while the
    /// database keeps finishing operations, and gives up after the
    /// deadline without one (or at the abandon limit).
    pub async fn run<T, F>(&self, op: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.run_within(self.deadline, op).await
    }

    /// [`Self::run`] with a longer wait, for work no request waits on
    /// (building indexes at start can take long on a big collection).
    pub async fn run_within<T, F>(&self, wait: Duration, op: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let started = Instant::now();
        let patience = Patience {
            started,
            silence: wait,
            limit: started + wait.max(self.abandon),
            progress: &self.progress,
        };
        let permit = match patience.wait(self.permits.clone().acquire_owned()).await {
            Some(Ok(permit)) => permit,
            // The semaphore is never closed; a timeout it is.
            Some(Err(_)) | None => return Err(self.timed_out()),
        };
        let (abandon, progress, suspect, refused) = (
            self.abandon,
            self.progress.clone(),
            self.suspect.clone(),
            self.refused.clone(),
        );
        // The request's context goes along, so its log line counts the
        // commands this operation sends.
        let request = crate::telemetry::current_request();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let result = match request {
                Some(request) => request.scope(timeout(abandon, op)).await,
                None => timeout(abandon, op).await,
            };
            // Any answer, an error too, is the database alive; a failure
            // of its own is for the health check to look into.
            if let Ok(answer) = &result {
                progress.mark();
                if let Err(error) = answer
                    && error.is_database_failure()
                {
                    refused.store(true, Ordering::Relaxed);
                    suspect.notify_one();
                }
            }
            result
        });
        match patience.wait(task).await {
            Some(Ok(Ok(result))) => result,
            Some(Ok(Err(_abandoned))) => Err(self.timed_out()),
            Some(Err(join)) => Err(StoreError::Corrupt(format!(
                "a database operation failed: {join}"
            ))),
            None => Err(self.timed_out()),
        }
    }

    /// When operations last came back (shared with the health check).
    pub(super) fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// This gate (same permits) with the abandon limit as its deadline.
    pub(super) fn patient(&self) -> Gate {
        Gate {
            deadline: self.abandon,
            ..self.clone()
        }
    }

    pub(super) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Set when an operation met a failure of the database's own; the
    /// health check clears it when it looks.
    pub(super) fn refused(&self) -> Arc<AtomicBool> {
        self.refused.clone()
    }

    /// Notified whenever an operation times out.
    pub(super) fn suspect(&self) -> Arc<Notify> {
        self.suspect.clone()
    }

    /// After this, an operation whose caller gave up can no longer land.
    pub fn abandon_limit(&self) -> Duration {
        self.abandon
    }

    fn timed_out(&self) -> StoreError {
        self.suspect.notify_one();
        StoreError::Timeout(self.deadline)
    }
}

/// One caller's wait: over once the database has been silent for `silence`
/// since the later of the caller's start and the last operation to come
/// back, or at `limit`.
struct Patience<'a> {
    started: Instant,
    silence: Duration,
    limit: Instant,
    progress: &'a Progress,
}

impl Patience<'_> {
    fn give_up_at(&self) -> Instant {
        (self.progress.last().max(self.started) + self.silence).min(self.limit)
    }

    async fn wait<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        loop {
            match timeout_at(self.give_up_at(), &mut future).await {
                Ok(output) => return Some(output),
                // Another operation came back meanwhile: wait on.
                Err(_) if self.give_up_at() > Instant::now() => continue,
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(concurrency: usize, deadline_ms: u64) -> Gate {
        Gate::new(
            concurrency,
            Duration::from_millis(deadline_ms),
            Arc::new(Notify::new()),
        )
    }

    #[tokio::test]
    async fn an_operation_outlives_the_caller_that_gave_up() {
        let gate = gate(1, 50);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let result = gate
            .run(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = done_tx.send(());
                Ok(())
            })
            .await;
        assert!(matches!(result, Err(StoreError::Timeout(_))));
        // Not cancelled: it finishes after its caller answered.
        done_rx.await.expect("the operation ran to completion");
    }

    /// A busy database is not a down one: while operations keep coming
    /// back, a caller keeps its place in the queue however long it is; it
    /// gives up only when nothing came back for the deadline.
    #[tokio::test(start_paused = true)]
    async fn callers_wait_while_the_database_makes_progress() {
        let gate = gate(1, 100);
        // Ten operations of 60 ms each, queued at once: the last waits
        // ~600 ms, six deadlines, and is served.
        let queued: Vec<_> = (0..10)
            .map(|i| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    gate.run(async move {
                        tokio::time::sleep(Duration::from_millis(60)).await;
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        for (i, op) in queued.into_iter().enumerate() {
            assert_eq!(op.await.expect("join").expect("served"), i);
        }
        // One operation that is silent for longer than the deadline fails
        // its caller, and the one queued behind it.
        let stuck = gate.clone();
        let stuck = tokio::spawn(async move {
            stuck
                .run(async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(())
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = Instant::now();
        assert!(matches!(
            gate.run(async { Ok(()) }).await,
            Err(StoreError::Timeout(_))
        ));
        // The deadline after it began (nothing came back since), not the
        // stuck operation's 300 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert!(stuck.await.expect("join").is_err());
    }

    #[tokio::test]
    async fn callers_queue_for_permits_within_the_deadline() {
        let gate = gate(1, 100);
        let slow = gate.clone();
        let holder = tokio::spawn(async move {
            slow.run(async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let waiting = gate.run(async { Ok(()) }).await;
        assert!(matches!(waiting, Err(StoreError::Timeout(_))));
        assert!(started.elapsed() < Duration::from_millis(350));
        assert!(holder.await.expect("join").is_err());
        // Once the permit is back, operations run again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(gate.run(async { Ok(7) }).await.is_ok());
    }
}
