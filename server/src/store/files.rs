//! File bytes in a GridFS bucket (`files.files` / `files.chunks`).
//!
//! Uploads stream through `staging::FileWriter`, which hashes as it writes. Reads go
//! straight to the chunks collection for just the chunks a byte range needs,
//! so `Range` requests and zips never load a whole file.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt, stream};
use mongodb::{
    Collection, Cursor, Database, IndexModel,
    bson::{Binary, DateTime, Document, doc, oid::ObjectId},
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result, StoreError, WriteBatch};

/// The bucket's collections.
pub(super) const FILES: &str = "files.files";
pub(super) const CHUNKS: &str = "files.chunks";
/// GridFS' customary chunk size: below MongoDB's 16 MiB document limit with
/// room to spare, and small enough that one chunk is a sensible read unit.
pub(super) const CHUNK_SIZE: u32 = 255 * 1024;
/// Chunks fetched per round trip when reading: bounds memory per download to
/// about 2 MiB while keeping round trips few.
const READ_BATCH: u32 = 8;

/// A file of a ticket as recorded in the ticket document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFile {
    pub path: String,
    pub file_id: ObjectId,
    pub size: i64,
    /// Hex SHA-256 of the content; doubles as the HTTP `ETag`.
    pub sha256: String,
    pub content_type: String,
    pub chunk_size: i64,
}

/// A half-open byte range `[start, end)` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

#[derive(Deserialize)]
pub(super) struct Chunk {
    n: i64,
    data: Binary,
}

#[derive(Clone)]
pub struct FileStore {
    pub(super) files: Collection<Document>,
    pub(super) chunks: Collection<Chunk>,
    pub(super) gate: Gate,
}

impl FileStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            files: db.collection(FILES),
            chunks: db.collection(CHUNKS),
            gate,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        // Reads and range deletes go by (files_id, n). Same keys and options
        // as earlier versions created, which let the driver's upload stream
        // make it, so existing databases see no conflict.
        self.chunks
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "files_id": 1, "n": 1 })
                    .build(),
            )
            .await?;
        // The janitor's check of recent files reads them by time (a range
        // on `_id` would do on MongoDB, but SecantusDB scans the whole
        // collection for one).
        self.files
            .create_index(IndexModel::builder().keys(doc! { "uploadDate": 1 }).build())
            .await?;
        // Uploads look for contents stored already (see `blobs`).
        self.files
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "metadata.shared_sha256": 1 })
                    .build(),
            )
            .await?;
        // Earlier versions found a ticket's files by ticket id; the ids in
        // the ticket record serve, and an index no query uses costs every
        // insert.
        super::drop_index(&self.files, "metadata.ticket_id_1").await
    }

    /// Puts the files documents waiting in `batch` before its chunks: in an
    /// upload sent as one batch, whatever part of it lands then includes a
    /// files document, which names the ticket (see [`Self::received`]).
    pub fn documents_first(&self, batch: &mut WriteBatch) {
        batch.lead_with(FILES);
    }

    /// The files received in `[from, to)` (Unix seconds, by `uploadDate`:
    /// when the file's last byte arrived), by ticket id.
    pub async fn received(&self, from: i64, to: i64) -> Result<HashMap<String, Vec<ObjectId>>> {
        let at = |secs: i64| DateTime::from_millis(secs.saturating_mul(1000));
        let filter = doc! { "uploadDate": { "$gte": at(from), "$lt": at(to) } };
        let projection = doc! { "_id": 1, "metadata.ticket_id": 1 };
        let docs =
            super::find_projected(&self.gate, self.files.clone(), filter, projection).await?;
        let mut by_ticket: HashMap<String, Vec<ObjectId>> = HashMap::new();
        for d in &docs {
            let ticket = d
                .get_document("metadata")
                .ok()
                .and_then(|m| m.get_str("ticket_id").ok());
            if let (Ok(id), Some(ticket)) = (d.get_object_id("_id"), ticket) {
                by_ticket.entry(ticket.to_owned()).or_default().push(id);
            }
        }
        Ok(by_ticket)
    }

    /// Removes these files. Chunks go first: a crash in between leaves
    /// files documents without chunks, never chunks no document names.
    pub async fn delete_files(&self, ids: Vec<ObjectId>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (files, chunks) = (self.files.clone(), self.chunks.clone());
        self.gate
            .run(async move {
                chunks
                    .delete_many(doc! { "files_id": { "$in": &ids } })
                    .await?;
                files.delete_many(doc! { "_id": { "$in": &ids } }).await?;
                Ok(())
            })
            .await
    }

    /// `range` of `file` in one buffer of the range's size (collecting the
    /// chunks and then joining them would hold every read twice). Callers
    /// bound the range.
    pub async fn read_into_one(&self, file: &StoredFile, range: ByteRange) -> Result<Vec<u8>> {
        let out = Vec::with_capacity(range.len() as usize);
        self.read(file, range)
            .try_fold(out, |mut out, piece: Bytes| async move {
                out.extend_from_slice(&piece);
                Ok(out)
            })
            .await
    }

    /// Streams `range` of `file`, fetching only the chunks it covers.
    pub fn read(
        &self,
        file: &StoredFile,
        range: ByteRange,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let chunks = self.chunks.clone();
        let gate = self.gate.clone();
        let file_id = file.file_id;
        let chunk_size = file.chunk_size.max(1) as u64;
        let first = (range.start / chunk_size) as i64;
        let last = if range.is_empty() {
            first - 1
        } else {
            ((range.end - 1) / chunk_size) as i64
        };

        enum State {
            Start,
            Reading(Box<Cursor<Chunk>>, i64),
            Done,
        }

        stream::try_unfold(State::Start, move |state| {
            let (chunks, gate) = (chunks.clone(), gate.clone());
            async move {
                let (cursor, expected) = match state {
                    State::Done => return Ok(None),
                    State::Start if first > last => return Ok(None),
                    State::Start => (None, first),
                    State::Reading(cursor, expected) => (Some(cursor), expected),
                };
                // Opening the cursor and every later batch go through the
                // gate: a client hanging up mid-download drops this stream,
                // never a driver operation in flight.
                let (cursor, chunk) = gate
                    .run(async move {
                        let mut cursor = match cursor {
                            Some(cursor) => cursor,
                            None => Box::new(
                                chunks
                                    .find(doc! {
                                        "files_id": file_id,
                                        "n": { "$gte": first, "$lte": last },
                                    })
                                    .sort(doc! { "n": 1 })
                                    .batch_size(READ_BATCH)
                                    .await?,
                            ),
                        };
                        let chunk = cursor.try_next().await?;
                        Ok((cursor, chunk))
                    })
                    .await?;
                let Some(chunk) = chunk else {
                    return Err(StoreError::Corrupt(format!(
                        "file {file_id} is missing chunk {expected}"
                    )));
                };
                if chunk.n != expected {
                    return Err(StoreError::Corrupt(format!(
                        "file {file_id}: expected chunk {expected}, found {}",
                        chunk.n
                    )));
                }
                let chunk_start = expected as u64 * chunk_size;
                let data = chunk.data.bytes;
                let from = range.start.saturating_sub(chunk_start) as usize;
                let to = ((range.end - chunk_start) as usize).min(data.len());
                if from > to {
                    return Err(StoreError::Corrupt(format!(
                        "file {file_id}: chunk {expected} is shorter than recorded"
                    )));
                }
                let mut bytes = Bytes::from(data);
                let piece = bytes.split_off(from).split_to(to - from);
                let next = if expected == last {
                    State::Done
                } else {
                    State::Reading(cursor, expected + 1)
                };
                Ok(Some((piece, next)))
            }
        })
    }
}
