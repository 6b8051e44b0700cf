//! Removes the bytes of uploads that did not become tickets.
//!
//! An upload that fails cleans up after itself at once. When it cannot (the
//! database went away mid-upload), its ticket id waits here and is cleaned
//! as soon as the database is back. Uploads whose process died are found by
//! any instance: a journaled one by its stale journal entry (see
//! `store::uploads`), one sent in a single batch by the check of recent
//! files, which removes files that have neither a ticket nor a journal
//! entry once they are old enough that no batch can still be landing (see
//! `store::upload`). That check goes through each file once, whichever
//! instance does it, up to a mark kept in the database.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use mongodb::bson::{DateTime, oid::ObjectId};

use super::{FileIdBlock, Result, Store, StoreError};
use crate::telemetry::Throttle;

/// The id range of an upload whose client was told it failed (see
/// [`Janitor::remove_failed`]); `None` for an ordinary cleanup.
type Unanswered = Option<UnansweredUpload>;

/// What an upload whose client was told it failed may have left: its own
/// id range, and the stored files it took references on (its journal
/// entry, which names them too, may have gone with its last batch).
#[derive(Clone)]
pub struct UnansweredUpload {
    pub first: ObjectId,
    pub last: ObjectId,
    pub held: Arc<[ObjectId]>,
}

/// An entry untouched for this many idle periods (`limits.upload_idle_secs`)
/// belongs to a dead upload. A live upload touches its entry at least once
/// per idle period while bytes flow, and is cut off after one idle period
/// without bytes, so its entry is never older than two periods; the rest is
/// margin for clocks that disagree between instances.
const STALE_PERIODS: u32 = 10;
/// Files received less than this many idle periods ago are not checked yet:
/// an upload sent in one batch is sent less than one idle period after it
/// began (or it is journaled), so by then it landed or failed.
const CHECK_AFTER_PERIODS: u32 = 10;
/// The first span of time (seconds) one check reads; it doubles while spans hold
/// few files, so catching up after a long stop takes few queries.
const CHECK_SPAN: i64 = 60;
const CHECK_SPAN_MAX: i64 = 24 * 3600;
/// A span holding more files than this is not widened.
const CHECK_FEW: usize = 1000;
/// How often cleanups that failed are retried while the database answers:
/// a failure during a brief freeze is repaired right after it, without
/// waiting for the health check to have seen an outage.
const RETRY: Duration = Duration::from_secs(1);
/// While every retry fails (a database that answers but refuses writes: a
/// full disk), the retries slow down, doubling up to this.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A cleanup failing again and again is logged at most this often, with
/// how many failures the report stands for.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// All cleanups run one at a time from [`Janitor::run`]: they are
/// background work, and a burst of them (every upload an outage failed)
/// must not take the database from the requests that come back with it.
pub struct Janitor {
    /// Immediate cleanups use it (bounded like requests); the background
    /// loop its patient twin (see `Store::background`).
    store: Store,
    /// `limits.upload_idle_secs`: paces touching and sweeping.
    idle: Duration,
    /// After this, a write that timed out can no longer land (the store's
    /// abandon limit).
    settle: Duration,
    pending: Mutex<HashMap<String, Unanswered>>,
    /// Cleanups that wait until writes in flight for them have settled.
    later: Mutex<Vec<(Instant, String)>>,
    /// Wakes `run` when a cleanup joins `pending`.
    wake: tokio::sync::Notify,
    /// Cleanup failures, logged at most once per [`REPORT_EVERY`].
    failures: Mutex<Throttle>,
}

impl Janitor {
    pub fn new(store: Store, idle: Duration) -> Self {
        Self {
            settle: store.abandon_limit(),
            store,
            idle,
            pending: Mutex::default(),
            later: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            failures: Mutex::new(Throttle::new(REPORT_EVERY)),
        }
    }

    /// Removes what a failed upload stored; if the database cannot be
    /// reached now, remembers it for when it can.
    pub async fn discard(&self, ticket_id: &str) {
        self.clean_now(ticket_id, None).await;
    }

    /// [`Self::discard`] now, and once more when writes that timed out for
    /// the upload can no longer land: such a write (its journal entry, a
    /// chunk) may arrive after the first cleanup found nothing to remove.
    pub async fn discard_twice(&self, ticket_id: &str) {
        self.discard(ticket_id).await;
        if let Ok(mut later) = self.later.lock() {
            later.push((Instant::now() + self.settle, ticket_id.to_owned()));
        }
        self.wake.notify_one();
    }

    /// For an upload whose last batch (the one with its ticket) failed:
    /// the client is told so, hence everything of it goes, the ticket too
    /// if it landed after all. Its journal entry may be gone with the
    /// batch, hence the ids. Retried while the database does not answer.
    pub async fn remove_failed(&self, ticket_id: &str, ids: &FileIdBlock, held: Arc<[ObjectId]>) {
        let upload = UnansweredUpload {
            first: ids.first(),
            last: ids.last(),
            held,
        };
        self.clean_now(ticket_id, Some(upload)).await;
    }

    /// One cleanup now; if it fails, it waits in `pending` for a retry (an
    /// upload told it failed keeps its id range there).
    async fn clean_now(&self, ticket_id: &str, unanswered: Unanswered) {
        match clean(&self.store, ticket_id, unanswered.clone()).await {
            Ok(()) => tracing::info!(ticket_id, "removed the bytes of a failed upload"),
            Err(error) => {
                self.failed(ticket_id, &error);
                if let Ok(mut pending) = self.pending.lock() {
                    let waiting = pending.entry(ticket_id.to_owned()).or_insert(None);
                    if unanswered.is_some() {
                        *waiting = unanswered;
                    }
                }
                self.wake.notify_one();
            }
        }
    }

    /// [`Self::remove_failed`] once `landing`, a last batch that did not
    /// answer within the request deadline, has landed or been abandoned:
    /// cleaning up while it may still land would race it.
    pub fn remove_after<T: Send + 'static>(
        self: &Arc<Self>,
        landing: tokio::task::JoinHandle<T>,
        ticket_id: &str,
        ids: &FileIdBlock,
        held: Arc<[ObjectId]>,
    ) {
        let (janitor, ticket_id, ids) = (self.clone(), ticket_id.to_owned(), *ids);
        tokio::spawn(async move {
            let _ = landing.await;
            janitor.remove_failed(&ticket_id, &ids, held).await;
        });
    }

    /// Moves the deferred cleanups that are due into `pending`.
    fn promote_due(&self) {
        let due: Vec<String> = match self.later.lock() {
            Ok(mut later) => {
                let now = Instant::now();
                let (due, waiting): (Vec<_>, Vec<_>) =
                    later.drain(..).partition(|(at, _)| *at <= now);
                *later = waiting;
                due.into_iter().map(|(_, id)| id).collect()
            }
            Err(_) => return,
        };
        if let Ok(mut pending) = self.pending.lock() {
            for id in due {
                pending.entry(id).or_insert(None);
            }
        }
    }

    /// Runs forever: retries pending cleanups whenever the database comes
    /// back, and sweeps stale uploads periodically.
    pub async fn run(&self) {
        // One operation at a time, each waited for (see `Store::background`).
        let store = self.store.background();
        let mut health = store.health.subscribe();
        let mut sweep = tokio::time::interval(self.idle);
        // Every second while cleanups wait; slower while every retry fails.
        let mut backoff = RETRY;
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = &mut retry, if self.has_work() => {
                    self.promote_due();
                    let refused = store.health.is_up() && self.retry_pending(&store).await;
                    backoff = if refused { (backoff * 2).min(RETRY_MAX) } else { RETRY };
                    retry.as_mut().reset(tokio::time::Instant::now() + backoff);
                }
                _ = sweep.tick() => {
                    if store.health.is_up() {
                        self.retry_pending(&store).await;
                        if let Err(error) = sweep_stale(&store, self.idle * STALE_PERIODS).await {
                            tracing::warn!(%error, "sweeping stale uploads failed");
                        }
                        if let Err(error) = check_files(&store, self.check_after()).await {
                            tracing::warn!(%error, "checking recent files failed");
                        }
                    }
                }
                changed = health.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *health.borrow_and_update() {
                        self.retry_pending(&store).await;
                    }
                }
            }
        }
    }

    /// How old files must be before [`check_files`] looks at them: one idle
    /// period to arrive, and the abandon limit for each command of the
    /// batch (three without `bulkWrite`), with margin for clocks.
    fn check_after(&self) -> Duration {
        (self.idle * CHECK_AFTER_PERIODS).max(self.idle + self.settle * 4)
    }

    fn has_work(&self) -> bool {
        self.pending.lock().is_ok_and(|p| !p.is_empty())
            || self.later.lock().is_ok_and(|l| !l.is_empty())
    }

    /// Logs a cleanup that failed, unless one was logged within the last
    /// minute (then it is counted into the next line): a database that
    /// refuses every write must not fill the log.
    fn failed(&self, ticket_id: &str, error: &StoreError) {
        let report = self
            .failures
            .lock()
            .ok()
            .and_then(|mut t| t.report(Instant::now()));
        if let Some(quiet) = report {
            tracing::warn!(
                %error,
                ticket_id,
                more_failures_since_last_report = quiet,
                "cannot remove a failed upload yet; will retry"
            );
        }
    }

    /// Retries every pending cleanup; true when at least one failed and
    /// none succeeded (the retries then slow down).
    async fn retry_pending(&self, store: &Store) -> bool {
        let pending: Vec<(String, Unanswered)> = match self.pending.lock() {
            Ok(pending) => pending
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Err(_) => return false,
        };
        let (mut succeeded, mut failed) = (false, false);
        for (ticket_id, unanswered) in pending {
            match clean(store, &ticket_id, unanswered).await {
                Ok(()) => {
                    succeeded = true;
                    tracing::info!(ticket_id, "removed the bytes of a failed upload");
                    if let Ok(mut p) = self.pending.lock() {
                        p.remove(&ticket_id);
                    }
                }
                Err(error) => {
                    failed = true;
                    self.failed(&ticket_id, &error);
                }
            }
        }
        failed && !succeeded
    }
}

/// A failed upload's cleanup: for one whose client was told it failed, by
/// its id range and its ticket too ([`remove_unanswered`]), else by its
/// journal entry ([`cleanup`]).
async fn clean(store: &Store, ticket_id: &str, unanswered: Unanswered) -> Result<()> {
    match unanswered {
        Some(upload) => remove_unanswered(store, ticket_id, upload).await,
        None => cleanup(store, ticket_id).await,
    }
}

/// Finishes what a journal entry was left for: removes the bytes of an
/// upload unless it was recorded (a write whose acknowledgement was lost in
/// an outage) and gives back the references it took, or finishes a
/// ticket's deletion unless the ticket is still there; then the entry.
async fn cleanup(store: &Store, key: &str) -> Result<()> {
    let Some(entry) = store.uploads.get(key).await? else {
        return Ok(());
    };
    if let Some(ticket_id) = &entry.deleting {
        if store.tickets.get(ticket_id).await?.is_none() {
            store.files.release(&entry.keys, &entry.held).await?;
        }
    } else if store
        .tickets
        .recorded(vec![key.to_owned()])
        .await?
        .is_empty()
    {
        let key = vec![key.to_owned()];
        store.files.release(&key, &entry.held).await?;
        if let (Some(first), Some(last)) = (entry.first_file_id, entry.last_file_id) {
            store.files.release_range(&key[0], first, last).await?;
        }
    }
    store.uploads.remove(key).await
}

/// See [`Janitor::remove_failed`]. The record goes first, so no
/// ticket points at bytes being removed; before it, a journal entry naming
/// what the upload held, so a process dying half way leaves the rest to
/// the sweep. A ticket its author already gave a new version (it was
/// visible in their list meanwhile) is theirs now, and stays.
async fn remove_unanswered(store: &Store, ticket_id: &str, upload: UnansweredUpload) -> Result<()> {
    store
        .uploads
        .reopen(ticket_id, upload.first, upload.last, &upload.held)
        .await?;
    if store.tickets.remove_unversioned(ticket_id).await? {
        tracing::info!(
            ticket_id,
            "removed a ticket whose upload was answered with an error"
        );
    } else if store.tickets.get(ticket_id).await?.is_some() {
        return store.uploads.remove(ticket_id).await;
    }
    let key = [ticket_id.to_owned()];
    store.files.release(&key, &upload.held).await?;
    store
        .files
        .release_range(ticket_id, upload.first, upload.last)
        .await?;
    store.uploads.remove(ticket_id).await
}

async fn sweep_stale(store: &Store, stale_after: Duration) -> Result<()> {
    let before = DateTime::from_system_time(SystemTime::now() - stale_after);
    for entry in store.uploads.stale(before).await? {
        if store.uploads.claim_stale(&entry.key, before).await? {
            if entry.deleting.is_some() {
                tracing::info!(key = entry.key, "finishing an abandoned deletion");
            } else {
                tracing::info!(key = entry.key, "removing an abandoned upload");
            }
            cleanup(store, &entry.key).await?;
        }
    }
    Ok(())
}

/// Removes the files of uploads that died half written in one batch: files
/// received before `after` ago, since the last check, that have neither a
/// ticket nor a journal entry.
async fn check_files(store: &Store, after: Duration) -> Result<()> {
    let now = unix_secs(SystemTime::now());
    let horizon = now - after.as_secs() as i64;
    let mut from = store.settings.files_checked_until(now).await?;
    let mut span = CHECK_SPAN;
    while from < horizon {
        let to = from.saturating_add(span).min(horizon);
        let mut files = store.files.received(from, to).await?;
        let count: usize = files.values().map(Vec::len).sum();
        if !files.is_empty() {
            let tickets: Vec<String> = files.keys().cloned().collect();
            // Journal first, then tickets: a journaled upload records its
            // ticket before removing its entry, so one not journaled now
            // has its ticket already if it ever will.
            let journaled = store.uploads.journaled(tickets).await?;
            files.retain(|ticket, _| !journaled.contains(ticket));
            let recorded = store
                .tickets
                .recorded(files.keys().cloned().collect())
                .await?;
            for (ticket_id, ids) in files.into_iter().filter(|(t, _)| !recorded.contains(t)) {
                tracing::info!(
                    ticket_id,
                    "removing the files of an upload that died half written"
                );
                store.files.delete_unshared(ids).await?;
            }
        }
        store.settings.set_files_checked_until(to).await?;
        from = to;
        span = if count < CHECK_FEW {
            (span * 2).min(CHECK_SPAN_MAX)
        } else {
            CHECK_SPAN
        };
    }
    Ok(())
}

fn unix_secs(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_failure_is_reported_once_a_minute_with_its_count() {
        let mut throttle = Throttle::new(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(throttle.report(start), Some(0));
        for s in 1..60 {
            assert_eq!(throttle.report(start + Duration::from_secs(s)), None);
        }
        assert_eq!(throttle.report(start + Duration::from_secs(60)), Some(59));
        assert_eq!(throttle.report(start + Duration::from_secs(61)), None);
        assert_eq!(throttle.report(start + Duration::from_secs(200)), Some(1));
    }
}
