//! A ticket's deletion: its record, then every stored file only it still
//! references (see `blobs`), journaled so that a process dying half way
//! leaves the rest to any instance's janitor.

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
        match self.tickets.delete(read).await {
            Ok(true) => {}
            Ok(false) => {
                self.uploads.remove(&key).await?;
                return Ok(false);
            }
            Err(error) => {
                // Whether the record went is unknown: the janitor looks.
                janitor.discard(&key).await;
                return Err(error);
            }
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
