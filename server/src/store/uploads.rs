//! The `uploads` collection: a journal of long uploads in flight, and of
//! ticket deletions under way.
//!
//! GridFS writes a file's chunks before its files document, so the bytes of
//! an interrupted upload cannot be found by ticket id alone. Each upload
//! therefore takes a block of file ids up front ([`FileIdBlock`]). An upload
//! sent in several batches (or one that took long to arrive) records it here
//! before its first byte is written. Whatever interrupts it (a rejected
//! file, a database outage, a crashed process), the entry names exactly
//! which chunks to remove; it is deleted once the ticket record is written
//! or the bytes are gone. (An upload sent in one batch needs no entry: see
//! `service::upload`.)
//!
//! The entry costs no round trip of its own: it is the first write of the
//! upload's first batch (see `store::batch`), and its removal the last write
//! of the batch that records the ticket.

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{DateTime, doc, oid::ObjectId},
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result, WriteBatch};

pub(super) const UPLOADS: &str = "uploads";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadEntry {
    /// The upload's key (the ticket id of a new ticket, the version's key
    /// of a new version: see `store::blobs`), or for a deletion
    /// `delete:` and the ticket id.
    #[serde(rename = "_id")]
    pub key: String,
    /// The upload's own file ids (none for a deletion).
    #[serde(default)]
    pub first_file_id: Option<ObjectId>,
    #[serde(default)]
    pub last_file_id: Option<ObjectId>,
    pub started_at: DateTime,
    /// Refreshed while bytes arrive; an entry nobody touches for a while
    /// belongs to an upload that died with its process.
    pub touched_at: DateTime,
    /// Claimed by a sweep as abandoned; the upload may no longer finish.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swept: bool,
    /// Stored files of others this upload took a reference on (it found
    /// their contents stored), or, for a deletion, every file of the
    /// ticket: whose references a cleanup must give back.
    #[serde(default)]
    pub held: Vec<ObjectId>,
    /// A deletion: the ticket removed, and the keys of its versions.
    #[serde(default)]
    pub deleting: Option<String>,
    #[serde(default)]
    pub keys: Vec<String>,
}

/// The journal key of a ticket's deletion.
pub fn deletion_key(ticket_id: &str) -> String {
    format!("delete:{ticket_id}")
}

/// The GridFS ids one upload may use: the first 8 bytes (a timestamp and
/// random bytes, like any ObjectId) are fixed, the last 4 count files. All of
/// an upload's chunks thus fall in one range of the `files_id` index.
#[derive(Debug, Clone, Copy)]
pub struct FileIdBlock {
    prefix: [u8; 8],
    next: u32,
}

impl FileIdBlock {
    pub fn new() -> Self {
        let seed = ObjectId::new().bytes();
        let mut prefix = [0u8; 8];
        prefix[..4].copy_from_slice(&seed[..4]);
        prefix[4..].copy_from_slice(&rand::random::<[u8; 4]>());
        Self { prefix, next: 0 }
    }

    fn id(&self, n: u32) -> ObjectId {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&self.prefix);
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        ObjectId::from_bytes(bytes)
    }

    pub fn first(&self) -> ObjectId {
        self.id(0)
    }

    pub fn last(&self) -> ObjectId {
        self.id(u32::MAX)
    }

    /// The id for the next file of the upload.
    pub fn next_id(&mut self) -> ObjectId {
        let id = self.id(self.next);
        self.next = self.next.saturating_add(1);
        id
    }
}

impl Default for FileIdBlock {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
pub struct UploadJournal {
    uploads: Collection<UploadEntry>,
    gate: Gate,
}

impl UploadJournal {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            uploads: db.collection(UPLOADS),
            gate,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        let index = IndexModel::builder().keys(doc! { "touched_at": 1 }).build();
        self.uploads.create_index(index).await?;
        Ok(())
    }

    /// Opens the upload's entry ahead of everything already in `batch`
    /// (its first chunks, or the whole upload), so the entry lands before
    /// any byte it covers.
    pub fn begin_in(&self, batch: &mut WriteBatch, ticket_id: &str, ids: &FileIdBlock) {
        let now = DateTime::now();
        batch.insert_first(
            UPLOADS,
            doc! {
                "_id": ticket_id,
                "first_file_id": ids.first(),
                "last_file_id": ids.last(),
                "started_at": now,
                "touched_at": now,
            },
        );
    }

    /// Records, in `batch`, that the upload holds references on `held`
    /// (the entry is in the batch already, or landed before).
    pub fn hold_in(&self, batch: &mut WriteBatch, key: &str, held: &[ObjectId]) {
        batch.update_many(
            UPLOADS,
            doc! { "_id": key },
            doc! { "$addToSet": { "held": { "$each": held.to_vec() } } },
        );
    }

    /// Opens the journal entry of a ticket's deletion, before its record
    /// goes: should the process die in between, the janitor finishes it.
    pub async fn begin_delete(
        &self,
        ticket_id: &str,
        keys: Vec<String>,
        held: Vec<ObjectId>,
    ) -> Result<()> {
        let (now, key) = (DateTime::now(), deletion_key(ticket_id));
        let entry = doc! {
            "_id": &key,
            "started_at": now,
            "touched_at": now,
            "deleting": ticket_id,
            "keys": keys,
            "held": held,
        };
        let uploads = self.uploads.clone_with_type::<mongodb::bson::Document>();
        self.gate
            .run(async move {
                // A deletion that died before is done again from scratch.
                uploads
                    .replace_one(doc! { "_id": key }, entry)
                    .upsert(true)
                    .await?;
                Ok(())
            })
            .await
    }

    /// Writes (again) the entry of an upload whose client was told it
    /// failed, claimed (`swept`), before its cleanup begins: its last
    /// batch may have removed the entry with the ticket.
    pub async fn reopen(
        &self,
        key: &str,
        first: ObjectId,
        last: ObjectId,
        held: &[ObjectId],
    ) -> Result<()> {
        let now = DateTime::now();
        let uploads = self.uploads.clone_with_type::<mongodb::bson::Document>();
        let (filter, update) = (
            doc! { "_id": key },
            doc! {
                "$set": { "first_file_id": first, "last_file_id": last, "swept": true },
                "$setOnInsert": { "started_at": now, "touched_at": now },
                "$addToSet": { "held": { "$each": held.to_vec() } },
            },
        );
        self.gate
            .run(async move {
                uploads.update_one(filter, update).upsert(true).await?;
                Ok(())
            })
            .await
    }

    /// Closes the entry after the batch's other writes (the ticket record).
    pub fn close_in(&self, batch: &mut WriteBatch, ticket_id: &str) {
        batch.delete_one(UPLOADS, doc! { "_id": ticket_id });
    }

    /// Marks the upload alive. `false` when a sweep has claimed it as
    /// abandoned (its bytes are being or have been removed): the upload must
    /// fail. The entry is then recreated if the sweep already removed it, so
    /// the failed upload's own cleanup still finds every chunk, including any
    /// written after the sweep.
    pub async fn touch(&self, ticket_id: &str, ids: &FileIdBlock) -> Result<bool> {
        let now = DateTime::now();
        let (uploads, ticket_id, ids) = (self.uploads.clone(), ticket_id.to_owned(), *ids);
        self.gate
            .run(async move { touch(&uploads, &ticket_id, &ids, now).await })
            .await
    }

    /// Claims a stale entry for removal, unless its upload touched it since
    /// `before`. The claim and the touch exclude each other: an upload either
    /// refreshed its entry first (and the sweep leaves it) or finds it
    /// claimed at its next touch (and fails).
    pub async fn claim_stale(&self, ticket_id: &str, before: DateTime) -> Result<bool> {
        let (uploads, filter) = (
            self.uploads.clone(),
            doc! { "_id": ticket_id, "touched_at": { "$lt": before } },
        );
        self.gate
            .run(async move {
                let claimed = uploads
                    .update_one(filter, doc! { "$set": { "swept": true } })
                    .await?;
                Ok(claimed.matched_count == 1)
            })
            .await
    }

    pub async fn get(&self, ticket_id: &str) -> Result<Option<UploadEntry>> {
        let (uploads, filter) = (self.uploads.clone(), doc! { "_id": ticket_id });
        self.gate
            .run(async move { Ok(uploads.find_one(filter).await?) })
            .await
    }

    /// Which of these uploads have an entry.
    pub async fn journaled(
        &self,
        ticket_ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>> {
        let uploads = self.uploads.clone_with_type();
        super::existing_ids(&self.gate, uploads, ticket_ids).await
    }

    pub async fn remove(&self, ticket_id: &str) -> Result<()> {
        let (uploads, filter) = (self.uploads.clone(), doc! { "_id": ticket_id });
        self.gate
            .run(async move {
                uploads.delete_one(filter).await?;
                Ok(())
            })
            .await
    }

    /// Entries not touched since `before`.
    pub async fn stale(&self, before: DateTime) -> Result<Vec<UploadEntry>> {
        let (uploads, filter) = (
            self.uploads.clone(),
            doc! { "touched_at": { "$lt": before } },
        );
        self.gate
            .run(async move { Ok(uploads.find(filter).limit(100).await?.try_collect().await?) })
            .await
    }
}

/// See [`UploadJournal::touch`].
async fn touch(
    uploads: &Collection<UploadEntry>,
    ticket_id: &str,
    ids: &FileIdBlock,
    now: DateTime,
) -> Result<bool> {
    let alive = uploads
        .update_one(
            doc! { "_id": ticket_id, "swept": { "$ne": true } },
            doc! { "$set": { "touched_at": now } },
        )
        .await?;
    if alive.matched_count == 1 {
        return Ok(true);
    }
    uploads
        .update_one(
            doc! { "_id": ticket_id },
            doc! { "$setOnInsert": {
                "first_file_id": ids.first(),
                "last_file_id": ids.last(),
                "started_at": now,
                "touched_at": now,
                "swept": true,
            } },
        )
        .upsert(true)
        .await?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::FileIdBlock;

    #[test]
    fn an_uploads_ids_lie_in_its_block_and_nobody_elses() {
        let mut block = FileIdBlock::new();
        let ids: Vec<_> = (0..3).map(|_| block.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ids.iter()
                .all(|id| block.first() <= *id && *id <= block.last())
        );
        // Another upload's block does not overlap (random middle bytes).
        let other = FileIdBlock::new();
        assert!(other.last() < block.first() || other.first() > block.last());
    }
}
