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
//!
//! Before it commits, an upload looks for its contents among the files
//! stored already (`share_stored`, see `blobs`): a file found is not stored
//! again, and the record points at the stored one. An upload that holds
//! such references is journaled (the entry names them), and so is every
//! new version of a ticket, whose record is an update of the ticket's
//! rather than a write of the batch (`commit_version`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use mongodb::bson::oid::ObjectId;

use super::{
    FileIdBlock, Janitor, MAX_VERSIONS, Result, Share, Staged, Staging, Store, StoreError,
    TicketRecord, WriteBatch,
    files::{CHUNKS, FILES},
};

/// How a new version's commit ended, when the database answered.
pub enum VersionCommit {
    Added(Box<TicketRecord>),
    /// The ticket was deleted meanwhile (or is not the author's).
    Gone,
    /// It has [`MAX_VERSIONS`] already.
    Full,
    /// Its record would pass `MAX_RECORD_BYTES` with this version.
    TooBig,
}

/// One upload on its way to becoming a ticket, or a ticket's new version.
pub struct UploadTx {
    store: Store,
    /// The ticket id for a new ticket, a version's own key for a version
    /// (see `blobs`).
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
    /// Stored files of others it took references on.
    held: Vec<ObjectId>,
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
                held: Vec::new(),
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

    fn own(&self, id: &ObjectId) -> bool {
        self.leftovers
            .as_ref()
            .is_some_and(|l| l.ids.first() <= *id && *id <= l.ids.last())
    }

    /// The upload's own files that its record uses, with their contents.
    fn own_ids(&self) -> Vec<(ObjectId, String)> {
        let mut ids: Vec<(ObjectId, String)> = self
            .staging
            .files()
            .iter()
            .filter(|s| self.own(&s.file.file_id))
            .map(|s| (s.file.file_id, s.file.sha256.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Points every file whose content is stored already (by an earlier
    /// upload, or earlier in this one) at the stored file, and drops its
    /// own copy. Call after validation, before building the record.
    pub async fn share_stored(&mut self) -> Result<()> {
        let mut wanted: Vec<(String, i64)> = self
            .staging
            .files()
            .iter()
            .map(|s| (s.file.sha256.clone(), s.file.size))
            .collect();
        wanted.sort();
        wanted.dedup();
        let found = self.store.files.reusable(&wanted).await?;
        let mut held = std::collections::HashSet::new();
        if !found.is_empty() {
            let ids: Vec<ObjectId> = found.values().copied().collect();
            let mut batch = self.store.batch();
            if !self.journaled {
                // The entry leads: it lands before the references it names
                // and before every chunk still waiting in `self.batch`.
                let block = self.leftovers().ids;
                self.store
                    .uploads
                    .begin_in(&mut batch, &self.ticket_id, &block);
                self.journaled = true;
                self.touched = Instant::now();
            }
            self.store
                .uploads
                .hold_in(&mut batch, &self.ticket_id, &ids);
            self.store.files.hold_in(&mut batch, &self.ticket_id, &ids);
            self.leftovers().sent = true;
            self.leftovers().held.extend(&ids);
            // Waited for to the end: references landing after a cleanup
            // had removed the entry naming them would never be given back.
            batch.patient().send().await?;
            held = self.store.files.held_by(&self.ticket_id, &ids).await?;
            super::crash::point("upload-after-hold");
        }
        let mut first_of: std::collections::HashMap<(String, i64), ObjectId> = Default::default();
        let mut dropped = Vec::new();
        for staged in self.staging.files_mut() {
            let file = &mut staged.file;
            let content = (file.sha256.clone(), file.size);
            let stored = found.get(&file.sha256).filter(|id| held.contains(*id));
            let target = match stored {
                Some(id) => *id,
                None => *first_of.entry(content).or_insert(file.file_id),
            };
            if target != file.file_id {
                dropped.push(file.file_id);
                file.file_id = target;
            }
        }
        if !dropped.is_empty() {
            self.batch.drop_inserts(FILES, "_id", &dropped);
            self.batch.drop_inserts(CHUNKS, "files_id", &dropped);
            if self.leftovers().sent {
                // Parts of them went in earlier batches: theirs alone (never
                // shared before the record), removed now.
                self.store.files.delete_files(dropped).await?;
            }
        }
        Ok(())
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
        let own = self.own_ids();
        self.store.files.share_in(&mut self.batch, &own);
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

    /// Records the upload as the newest version of ticket `ticket_id` (by
    /// `author_id`), after every byte has landed. Another version that
    /// lands first makes this one the next number. If the outcome is not
    /// known (no answer), the cleanup keeps the files if the version was
    /// recorded after all. On an error, call [`Self::abort`].
    pub async fn commit_version(
        &mut self,
        ticket_id: &str,
        author_id: &str,
        remark: String,
        time: i64,
    ) -> Result<VersionCommit> {
        self.journal_first();
        self.leftovers().sent = true;
        self.batch.send().await?;
        let files: Vec<_> = self
            .staging
            .files()
            .iter()
            .map(|s| s.file.clone())
            .collect();
        let patient = self.store.background();
        let mut attempts = 0;
        let record = loop {
            let read = match self.store.tickets.get(ticket_id).await? {
                Some(read) if read.author_id == author_id => read,
                _ => return Ok(VersionCommit::Gone),
            };
            if read.versions.len() >= MAX_VERSIONS {
                return Ok(VersionCommit::Full);
            }
            let mut record = read.clone();
            record.add_version(&self.ticket_id, files.clone(), remark.clone(), time);
            if !record.fits() {
                return Ok(VersionCommit::TooBig);
            }
            // Waited for to the end (up to the abandon limit): an update
            // still landing while the cleanup runs would record a version
            // whose files are being removed.
            if patient.tickets.save_versions(&read, &record).await? {
                break record;
            }
            attempts += 1;
            if attempts >= 16 {
                return Err(StoreError::Corrupt(
                    "the ticket kept changing while its new version was recorded".into(),
                ));
            }
        };
        super::crash::point("version-after-record");
        let own = self.own_ids();
        self.leftovers = None;
        let mut batch = self.store.batch();
        self.store.files.share_in(&mut batch, &own);
        self.store.uploads.close_in(&mut batch, &self.ticket_id);
        if let Err(error) = batch.send().await {
            // The version stands; the entry left behind is removed by the
            // janitor's sweep (its key is recorded), the files stay
            // unshared: nothing is lost.
            tracing::warn!(%error, key = self.ticket_id, "could not close a version's journal entry");
        }
        Ok(VersionCommit::Added(Box::new(record)))
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
        let held: Arc<[ObjectId]> = self.held.into();
        match self.last {
            Last::NotSent if self.sent => {
                drop(self.share.take());
                Some(Box::pin(async move { janitor.discard_twice(&id).await }))
            }
            Last::NotSent => None,
            Last::Failed => {
                drop(self.share.take());
                Some(Box::pin(async move {
                    janitor.remove_failed(&id, &ids, held).await
                }))
            }
            Last::Landing(landing) => {
                let share = self.share.take();
                let landed = tokio::spawn(async move {
                    let _ = landing.await;
                    drop(share);
                });
                janitor.remove_after(landed, &id, &ids, held);
                None
            }
        }
    }
}
