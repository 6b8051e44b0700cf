//! An upload's lifetime in the database, in one place: [`UploadTx`] holds
//! the bytes received (staging), the writes not yet sent (one ordered
//! [`WriteBatch`]), the journal entry and the upload's memory share, and
//! decides what a failure leaves to clean up. `commit()` records the
//! ticket; an upload that ends any other way is cleaned up by `abort()`,
//! or, if it is dropped unfinished (a panic), handed to the [`Janitor`].
//!
//! Round trips are the cost that matters (each one is a command the
//! database must parse and commit), so writes are collected in one batch
//! and sent when it holds about 1 MiB of chunks or when the upload is
//! complete. Validators read each file as sent: the part that went out in
//! an earlier batch from GridFS, the rest from memory (see `staging`).
//!
//! What could be left behind decides what that batch holds:
//! - An upload sent in several batches (over 1 MiB) is journaled: its first
//!   batch leads with a journal entry naming its file ids, its last ends by
//!   removing it, after the ticket (see `uploads`). A process that dies in
//!   between leaves the entry, and any instance removes the bytes.
//! - An upload sent in one batch needs no journal: until then nothing was
//!   written, and the batch leads with the files documents, then the
//!   chunks, then the ticket. Whatever part of it lands includes a files
//!   document naming the ticket, so a batch cut short by a failing database
//!   is removed by this process once the database answers, or, if this
//!   process dies first, found by the janitor's check of recent files (a
//!   file without a ticket or journal entry, received long enough ago).
//!   That check relies on a file's batch being sent soon after the file
//!   arrived: an upload that took longer than `limits.upload_idle_secs` is
//!   journaled even in one batch, so the check never looks at one still
//!   landing.
//!
//! On failure every byte sent for the ticket is removed before `abort`
//! returns (or, if the database is gone, by the janitor once it is back);
//! an upload that failed before sending anything cost nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use mongodb::bson::oid::ObjectId;

use super::{
    FileIdBlock, Janitor, Result, Share, Staged, Staging, Store, StoreError, TicketRecord,
    WriteBatch,
};

/// One upload on its way to becoming a ticket.
pub struct UploadTx {
    store: Store,
    ticket_id: String,
    /// `limits.upload_idle_secs`: how often the journal entry is refreshed,
    /// and past which even a one-batch upload is journaled.
    idle: Duration,
    staging: Staging,
    batch: WriteBatch,
    /// The journal entry is in a batch that was sent.
    journaled: bool,
    /// When the upload began.
    started: Instant,
    /// When the journal entry was last refreshed.
    touched: Instant,
    /// What a failure would leave; `None` once committed or cleaned up.
    leftovers: Option<Leftovers>,
}

/// What must happen to the bytes sent if the upload does not commit.
struct Leftovers {
    janitor: Arc<Janitor>,
    ticket_id: String,
    ids: FileIdBlock,
    /// Something was sent (and may have landed, even if it failed).
    sent: bool,
    last: Last,
    /// Returned when the outcome is known; a last batch still landing
    /// keeps it until it has landed (it holds the bytes).
    share: Option<Share>,
}

/// The last batch: the one that records the ticket.
enum Last {
    NotSent,
    /// It failed: whatever of it landed must go.
    Failed,
    /// No answer within the request deadline; it still runs.
    Landing(tokio::task::JoinHandle<Result<()>>),
}

impl UploadTx {
    pub fn begin(
        store: &Store,
        janitor: Arc<Janitor>,
        ticket_id: &str,
        idle: Duration,
        share: Share,
    ) -> Self {
        Self {
            store: store.clone(),
            ticket_id: ticket_id.to_owned(),
            idle,
            staging: Staging::new(),
            batch: store.batch(),
            journaled: false,
            started: Instant::now(),
            touched: Instant::now(),
            leftovers: Some(Leftovers {
                janitor,
                ticket_id: ticket_id.to_owned(),
                ids: FileIdBlock::new(),
                sent: false,
                last: Last::NotSent,
                share: Some(share),
            }),
        }
    }

    fn leftovers(&mut self) -> &mut Leftovers {
        self.leftovers
            .as_mut()
            .expect("an upload is used only until it commits or aborts")
    }

    /// The files received, and where their bytes are.
    pub fn files(&self) -> &[Staged] {
        self.staging.files()
    }

    /// Starts the next file; its bytes follow with [`Self::write`].
    pub fn begin_file(&mut self, path: &str, content_type: &str) {
        let id: ObjectId = self.leftovers().ids.next_id();
        self.staging.begin(id, &self.ticket_id, path, content_type);
    }

    /// Bytes of the file being received so far.
    pub fn current_size(&self) -> u64 {
        self.staging.current_size()
    }

    /// Adds bytes to the file being received, sending the batch when it is
    /// full.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.staging.write(bytes, &mut self.batch) {
            self.journal_first();
            self.leftovers().sent = true;
            self.batch.send().await?;
            self.staging.sent();
        }
        Ok(())
    }

    pub fn finish_file(&mut self) {
        self.staging.finish(&mut self.batch);
    }

    fn journal_first(&mut self) {
        if !self.journaled {
            let ids = self.leftovers().ids;
            self.store
                .uploads
                .begin_in(&mut self.batch, &self.ticket_id, &ids);
            self.journaled = true;
            self.touched = Instant::now();
        }
    }

    /// Refreshes the journal entry once per idle period (the pace the
    /// janitor counts on). `false`: a sweep has claimed the upload as
    /// abandoned, and it must not be recorded (its bytes may be gone).
    /// Nothing to refresh before the first batch is sent.
    pub async fn keep_alive(&mut self) -> Result<bool> {
        if !self.journaled || self.touched.elapsed() < self.idle {
            return Ok(true);
        }
        let ids = self.leftovers().ids;
        if !self.store.uploads.touch(&self.ticket_id, &ids).await? {
            tracing::warn!(
                ticket_id = self.ticket_id,
                "upload was taken for abandoned; refusing to record it"
            );
            return Ok(false);
        }
        self.touched = Instant::now();
        Ok(true)
    }

    /// Records the ticket with the last batch. That batch runs to its end
    /// even past the request deadline: if it has not answered by then, the
    /// upload fails, and whatever of it landed is removed once it has
    /// (cleaning up while it may still land would race it). On an error,
    /// call [`Self::abort`].
    pub async fn commit(&mut self, ticket: &TicketRecord) -> Result<()> {
        self.store.tickets.insert_in(&mut self.batch, ticket)?;
        // See the module's comment for when the journal is needed.
        if self.journaled || self.started.elapsed() >= self.idle {
            self.journal_first();
            self.store
                .uploads
                .close_in(&mut self.batch, &self.ticket_id);
        } else {
            self.store.files.documents_first(&mut self.batch);
        }
        self.leftovers().sent = true;
        let mut batch = std::mem::replace(&mut self.batch, self.store.batch()).patient();
        let mut landing = crate::telemetry::spawn_in_request(async move { batch.send().await });
        let deadline = self.store.request_deadline();
        let result = match tokio::time::timeout(deadline, &mut landing).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(StoreError::Corrupt(format!("a write task failed: {join}"))),
            Err(_) => {
                self.leftovers().last = Last::Landing(landing);
                return Err(StoreError::Timeout(deadline));
            }
        };
        match result {
            Ok(()) => {
                self.leftovers = None;
                Ok(())
            }
            Err(error) => {
                self.leftovers().last = Last::Failed;
                Err(error)
            }
        }
    }

    /// Ends an upload that did not commit: its memory goes back at once,
    /// then whatever it sent is removed. With `wait` the removal is done
    /// before this returns; without (the database is away: waiting would
    /// hold the client's answer for another deadline), it runs on its own.
    pub async fn abort(mut self, wait: bool) {
        let Some(leftovers) = self.leftovers.take() else {
            return;
        };
        drop(std::mem::replace(&mut self.staging, Staging::new()));
        drop(std::mem::replace(&mut self.batch, self.store.batch()));
        if let Some(cleanup) = leftovers.cleanup() {
            if wait {
                cleanup.await;
            } else {
                tokio::spawn(cleanup);
            }
        }
    }
}

impl Drop for UploadTx {
    /// Dropped neither committed nor aborted (a panic in the code using
    /// it): the janitor removes what was sent, on its own task.
    fn drop(&mut self) {
        if let Some(leftovers) = self.leftovers.take()
            && let Some(cleanup) = leftovers.cleanup()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(cleanup);
        }
    }
}

impl Leftovers {
    /// Returns the share (unless a last batch still lands with its bytes)
    /// and says what removes what was sent.
    fn cleanup(mut self) -> Option<BoxFuture<'static, ()>> {
        let (janitor, id, ids) = (self.janitor, self.ticket_id, self.ids);
        match self.last {
            Last::NotSent if self.sent => {
                drop(self.share.take());
                Some(Box::pin(async move { janitor.discard_twice(&id).await }))
            }
            Last::NotSent => None,
            Last::Failed => {
                drop(self.share.take());
                Some(Box::pin(
                    async move { janitor.remove_failed(&id, &ids).await },
                ))
            }
            Last::Landing(landing) => {
                let share = self.share.take();
                let landed = tokio::spawn(async move {
                    let _ = landing.await;
                    drop(share);
                });
                janitor.remove_after(landed, &id, &ids);
                None
            }
        }
    }
}
