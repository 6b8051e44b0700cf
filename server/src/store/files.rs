//! File bytes in a GridFS bucket (`files.files` / `files.chunks`).
//!
//! Uploads stream through [`FileUpload`], which hashes as it writes. Reads go
//! straight to the chunks collection for just the chunks a byte range needs,
//! so `Range` requests and zips never load a whole file.

use bytes::Bytes;
use futures_util::{AsyncWriteExt, Stream, TryStreamExt, stream};
use mongodb::{
    Collection, Cursor, Database, IndexModel,
    bson::{Binary, Bson, Document, doc, oid::ObjectId},
    gridfs::{GridFsBucket, GridFsUploadStream},
    options::GridFsBucketOptions,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Gate, Result, StoreError};

const BUCKET: &str = "files";
/// GridFS' customary chunk size: below MongoDB's 16 MiB document limit with
/// room to spare, and small enough that one chunk is a sensible read unit.
const CHUNK_SIZE: u32 = 255 * 1024;
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
struct Chunk {
    n: i64,
    data: Binary,
}

#[derive(Clone)]
pub struct FileStore {
    bucket: GridFsBucket,
    files: Collection<Document>,
    chunks: Collection<Chunk>,
    gate: Gate,
}

impl FileStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        let options = GridFsBucketOptions::builder()
            .bucket_name(BUCKET.to_owned())
            .chunk_size_bytes(CHUNK_SIZE)
            .build();
        Self {
            bucket: db.gridfs_bucket(options),
            files: db.collection(&format!("{BUCKET}.files")),
            chunks: db.collection(&format!("{BUCKET}.chunks")),
            gate,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        // The driver creates the chunk index on first upload only when the
        // bucket is empty; creating it here (with the driver's exact options,
        // so the two never conflict) makes it independent of history.
        self.chunks
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "files_id": 1, "n": 1 })
                    .build(),
            )
            .await?;
        self.files
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "metadata.ticket_id": 1 })
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Starts storing one file of a ticket under `id` (from the upload's
    /// [`super::FileIdBlock`], so an interrupted upload can be found).
    pub async fn begin(
        &self,
        id: ObjectId,
        ticket_id: &str,
        path: &str,
        content_type: &str,
    ) -> Result<FileUpload> {
        let stream = self
            .gate
            .bounded(async {
                Ok(self
                    .bucket
                    .open_upload_stream(path)
                    .id(Bson::ObjectId(id))
                    .metadata(doc! {
                        "ticket_id": ticket_id,
                        "path": path,
                        "content_type": content_type,
                    })
                    .await?)
            })
            .await?;
        Ok(FileUpload {
            stream,
            gate: self.gate.clone(),
            files: self.files.clone(),
            id,
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Removes every stored file of a ticket, complete or not. Chunks go
    /// first: a crash in between leaves a files document without chunks,
    /// which is still found (and removed) by ticket id.
    pub async fn delete_ticket(&self, ticket_id: &str) -> Result<()> {
        let (files, chunks) = (self.files.clone(), self.chunks.clone());
        let filter = doc! { "metadata.ticket_id": ticket_id };
        self.gate
            .run(async move {
                let ids: Vec<Bson> = files
                    .find(filter)
                    .projection(doc! { "_id": 1 })
                    .await?
                    .try_filter_map(|d| async move { Ok(d.get("_id").cloned()) })
                    .try_collect()
                    .await?;
                if ids.is_empty() {
                    return Ok(());
                }
                chunks
                    .delete_many(doc! { "files_id": { "$in": &ids } })
                    .await?;
                files.delete_many(doc! { "_id": { "$in": &ids } }).await?;
                Ok(())
            })
            .await
    }

    /// Removes every file, complete or not, whose id is in `first..=last`.
    /// Chunks go first, for the same reason as in [`Self::delete_ticket`].
    pub async fn delete_id_range(&self, first: ObjectId, last: ObjectId) -> Result<()> {
        let range = doc! { "$gte": first, "$lte": last };
        let (files, chunks) = (self.files.clone(), self.chunks.clone());
        self.gate
            .run(async move {
                chunks
                    .delete_many(doc! { "files_id": range.clone() })
                    .await?;
                files.delete_many(doc! { "_id": range }).await?;
                Ok(())
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

/// One file being written to GridFS. Dropping it unfinished makes the driver
/// delete the chunks written so far.
pub struct FileUpload {
    stream: GridFsUploadStream,
    gate: Gate,
    files: Collection<Document>,
    id: ObjectId,
    path: String,
    content_type: String,
    hasher: Sha256,
    size: u64,
}

impl FileUpload {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        let stream = &mut self.stream;
        self.gate
            .bounded(async {
                stream
                    .write_all(data)
                    .await
                    .map_err(|e| StoreError::from(mongodb::error::Error::from(e)))
            })
            .await
    }

    /// Flushes the last chunk, writes the files document, and records the
    /// content hash in its metadata.
    pub async fn finish(mut self) -> Result<StoredFile> {
        let stream = &mut self.stream;
        self.gate
            .bounded(async {
                stream
                    .close()
                    .await
                    .map_err(|e| StoreError::from(mongodb::error::Error::from(e)))
            })
            .await?;
        let sha256 = hex::encode(self.hasher.finalize());
        let (files, id, size) = (self.files.clone(), self.id, self.size as i64);
        let set = doc! { "$set": { "metadata.sha256": &sha256, "metadata.size": size } };
        self.gate
            .run(async move {
                files.update_one(doc! { "_id": id }, set).await?;
                Ok(())
            })
            .await?;
        Ok(StoredFile {
            path: self.path,
            file_id: self.id,
            size: self.size as i64,
            sha256,
            content_type: self.content_type,
            chunk_size: CHUNK_SIZE as i64,
        })
    }

    /// Discards the chunks written so far.
    pub async fn abort(mut self) -> Result<()> {
        let stream = &mut self.stream;
        self.gate.bounded(async { Ok(stream.abort().await?) }).await
    }
}
