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
//! and an abandoned one just finishes and returns its connection. The
//! caller waits at most `mongodb.timeout_ms` for it (then answers 503,
//! while the operation may still complete). At most as many operations run
//! as the pool has connections, so the driver's queue never holds more
//! than the pool can serve; callers queue here instead, where waiting is
//! cancellation-safe and bounded by the same deadline.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    sync::{Notify, Semaphore},
    time::{Instant, timeout, timeout_at},
};

use super::{Result, StoreError};

/// An operation nobody waits for any more is dropped after this, so a
/// server that never answers cannot hold a connection (and a permit)
/// forever; the driver's own monitor usually gives up on it first.
const ABANDON_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    deadline: Duration,
    abandon: Duration,
    /// Woken when an operation times out, so the health check looks at
    /// once instead of at its next period.
    suspect: Arc<Notify>,
}

impl Gate {
    pub fn new(concurrency: usize, deadline: Duration, suspect: Arc<Notify>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            deadline,
            abandon: ABANDON_AFTER.max(deadline * 4),
            suspect,
        }
    }

    /// Runs one operation (one or a few round trips) to completion on its
    /// own task; the caller waits at most the deadline for a permit and the
    /// answer together.
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
        let deadline = Instant::now() + wait;
        let permit = match timeout_at(deadline, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; a timeout it is.
            Ok(Err(_)) | Err(_) => return Err(self.timed_out()),
        };
        let abandon = self.abandon;
        // The request's context goes along, so its log line counts the
        // commands this operation sends.
        let request = crate::telemetry::current_request();
        let task = tokio::spawn(async move {
            let _permit = permit;
            match request {
                Some(request) => request.scope(timeout(abandon, op)).await,
                None => timeout(abandon, op).await,
            }
        });
        match timeout_at(deadline, task).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(_abandoned))) => Err(self.timed_out()),
            Ok(Err(join)) => Err(StoreError::Corrupt(format!(
                "a database operation failed: {join}"
            ))),
            Err(_) => Err(self.timed_out()),
        }
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
