//! A ticket's deletion: its record, then every stored file only it still
//! references (see `blobs`), journaled so that a process dying half way
//! (or a delete without an answer) leaves the rest to any instance's
//! janitor.

use super::{Janitor, Result, Store, TicketRecord, deletion_key};

impl Store {
    /// Deletes the ticket `read` if it is still as read (same author, same
    /// versions); `false` if it changed (a new version landed: read it
    /// again, its files are to go too) or went. Once the record is gone,
    /// the deletion counts as done: what is left of it is the janitor's.
    pub async fn delete_ticket(&self, janitor: &Janitor, read: &TicketRecord) -> Result<bool> {
        let (keys, held) = (read.keys(), read.all_file_ids());
        let key = deletion_key(&read.id);
        // The entry first: a process dying after the record went leaves
        // it, and the janitor gives back the references.
        self.uploads
            .begin_delete(&read.id, keys.clone(), held.clone())
            .await?;
        // When the delete misses (another version came first, or another
        // request deleted it) or has no answer (it may still land), the
        // entry stays for the janitor's sweep, which looks once it is stale,
        // when nothing of this request can land any more: the ticket still
        // there, it only drops the entry; gone, it gives back the
        // references. (Removing it now could drop a concurrent deletion's
        // entry of the same key, or clean up before a late delete lands.)
        if !self.tickets.delete(read).await? {
            return Ok(false);
        }
        super::crash::point("delete-after-record");
        let finished = async {
            self.files.release(&keys, &held).await?;
            self.uploads.remove(&key).await
        };
        if let Err(error) = finished.await {
            tracing::warn!(%error, ticket_id = read.id, "removing a deleted ticket's files failed; will retry");
            janitor.discard(&key).await;
        }
        Ok(true)
    }
}
