//! An upload's files on their way to GridFS, and where each of their bytes
//! is until the ticket is recorded.
//!
//! A file's chunks join the upload's [`WriteBatch`] as they fill, and the
//! batch is sent whenever it holds about [`BATCH_BYTES`]: often in the
//! middle of a file. So while an upload is validated, a file may be split
//! in two: its first chunks in GridFS (sent with an earlier batch), the rest
//! (its chunks in the batch not sent yet, and the chunk being filled) only
//! here. [`Staged::read`] takes each part from where it is, so a validator
//! reads every file exactly as sent, from whichever batch it went out in.
//!
//! The first [`HEAD_BYTES`] of each file stay in memory until the ticket
//! is recorded: a validator that sniffs a file's type reads only its start
//! (`file-policy` reads 512 bytes), and a read of GridFS fetches a whole
//! 255 KiB chunk, so without them an upload of 1 MiB files moved a quarter
//! of its bytes again (bench `--big-uploads`). At most `max_files` × 4 KiB
//! an upload.
//!
//! [`Staging`] is the one owner of that split: every file it holds, and the
//! one being written, learn together that a batch was sent. (Before, the
//! file being written was taken for sent when a batch left while its first
//! chunk was still filling, and validators looked for it in GridFS, where
//! it was not yet: uploads of more than ~1 MiB over several files failed.)

use bytes::Bytes;
use mongodb::bson::{Binary, DateTime, Document, doc, oid::ObjectId, spec::BinarySubtype};
use sha2::{Digest, Sha256};

use super::{
    ByteRange, Result, StoreError, WriteBatch,
    files::{CHUNK_SIZE, CHUNKS, FILES, StoredFile},
};

/// Chunks sent per round trip when writing: up to 1 MiB of an upload goes
/// in one batch, at ~1 MiB buffered per upload.
const WRITE_BATCH: u32 = 4;

/// Chunk bytes a batch may hold before it is sent: bounds the memory of an
/// upload to about this much (twice, with the validators' copy).
const BATCH_BYTES: usize = (WRITE_BATCH * CHUNK_SIZE) as usize;

/// Bytes at the start of each file kept in memory for validators.
pub const HEAD_BYTES: usize = 4 * 1024;

/// The most memory one upload's staging holds: a full batch of chunk
/// documents, the same bytes again as the part not yet sent (the next
/// chunk filling behind them), the driver's encoding of the batch as it
/// goes out, and the first bytes of every file.
pub fn staging_bytes_at_most(max_files: usize) -> u64 {
    let batch = BATCH_BYTES as u64 + u64::from(CHUNK_SIZE);
    3 * batch + max_files as u64 * HEAD_BYTES as u64
}

/// Where an upload's writes wait to be sent: a [`WriteBatch`], or in tests
/// a stand-in that plays the database.
pub trait ChunkBatch {
    fn insert(&mut self, collection: &'static str, document: Document);
    /// Bytes waiting to be sent.
    fn bytes(&self) -> usize;
}

impl ChunkBatch for WriteBatch {
    fn insert(&mut self, collection: &'static str, document: Document) {
        WriteBatch::insert(self, collection, document);
    }
    fn bytes(&self) -> usize {
        WriteBatch::bytes(self)
    }
}

/// A received file: its record, and the part of it no sent batch holds.
#[derive(Debug, Clone)]
pub struct Staged {
    pub file: StoredFile,
    /// Bytes `[0, sent)` are in GridFS; `[sent, size)` are `unsent`.
    sent: u64,
    unsent: Bytes,
    /// The file's first bytes (up to [`HEAD_BYTES`]), wherever they are.
    head: Bytes,
}

impl Staged {
    /// The bytes `[0, sent_len())` were sent; the rest are only here.
    #[cfg(test)]
    pub fn sent_len(&self) -> u64 {
        self.sent
    }

    /// Reads `range` (clipped to the file), the part already sent through
    /// `sent`, the rest from memory.
    pub fn read(
        &self,
        range: ByteRange,
        sent: impl FnOnce(ByteRange) -> Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let size = self.file.size.max(0) as u64;
        let start = range.start.min(size);
        let end = range.end.clamp(start, size);
        let mut out = if start < self.sent {
            let early = ByteRange {
                start,
                end: end.min(self.sent),
            };
            if early.end <= self.head.len() as u64 {
                self.head[early.start as usize..early.end as usize].to_vec()
            } else {
                let bytes = sent(early)?;
                if bytes.len() as u64 != early.len() {
                    return Err(StoreError::Corrupt(format!(
                        "file {}: read {} bytes of {}",
                        self.file.file_id,
                        bytes.len(),
                        early.len()
                    )));
                }
                bytes
            }
        } else {
            Vec::new()
        };
        if end > self.sent {
            let from = (start.max(self.sent) - self.sent) as usize;
            let to = (end - self.sent) as usize;
            let tail = self.unsent.get(from..to).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "file {}: bytes {from}..{to} past the {} held",
                    self.file.file_id,
                    self.unsent.len()
                ))
            })?;
            out.extend_from_slice(tail);
        }
        Ok(out)
    }
}

/// The files of one upload: those received, and the one being written.
#[derive(Default)]
pub struct Staging {
    files: Vec<Staged>,
    current: Option<FileWriter>,
}

impl Staging {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the next file, under `id` (from the upload's
    /// [`super::FileIdBlock`], so an interrupted upload can be found).
    pub fn begin(&mut self, id: ObjectId, ticket_id: &str, path: &str, content_type: &str) {
        self.current = Some(FileWriter::new(id, ticket_id, path, content_type));
    }

    /// Bytes of the file being written so far.
    pub fn current_size(&self) -> u64 {
        self.current.as_ref().map_or(0, FileWriter::size)
    }

    /// Appends bytes to the file being written; each full chunk joins
    /// `batch`. True when the batch is full: send it, then call
    /// [`Self::sent`].
    pub fn write(&mut self, data: &[u8], batch: &mut impl ChunkBatch) -> bool {
        if let Some(writer) = &mut self.current {
            writer.write(data, batch);
        }
        batch.bytes() >= BATCH_BYTES
    }

    /// Ends the file being written: its last chunk and its files document
    /// (chunks first, as GridFS readers expect) join `batch`.
    pub fn finish(&mut self, batch: &mut impl ChunkBatch) {
        if let Some(writer) = self.current.take() {
            self.files.push(writer.finish(batch));
        }
    }

    /// The batch holding everything written so far was sent: those bytes
    /// are read from GridFS from now on, and no longer kept here.
    pub fn sent(&mut self) {
        for staged in &mut self.files {
            staged.sent = staged.file.size.max(0) as u64;
            staged.unsent = Bytes::new();
        }
        if let Some(writer) = &mut self.current {
            writer.sent();
        }
    }

    /// The files received, to point some at contents stored already (see
    /// `blobs`): only once validation, which reads them, is done.
    pub fn files_mut(&mut self) -> &mut [Staged] {
        &mut self.files
    }

    /// The files received, in upload order.
    pub fn files(&self) -> &[Staged] {
        &self.files
    }
}

/// One file on its way to GridFS, in the bucket's standard layout (so any
/// GridFS client can read it), hashed as it is written.
struct FileWriter {
    id: ObjectId,
    ticket_id: String,
    path: String,
    content_type: String,
    hasher: Sha256,
    /// Chunks that joined a batch.
    next_chunk: u32,
    /// Chunks that joined a batch that was sent.
    sent_chunks: u32,
    /// The content from chunk `sent_chunks` on: the chunks waiting in the
    /// batch, then the chunk being filled.
    unsent: Vec<u8>,
    /// The first [`HEAD_BYTES`].
    head: Vec<u8>,
}

impl FileWriter {
    fn new(id: ObjectId, ticket_id: &str, path: &str, content_type: &str) -> Self {
        Self {
            id,
            ticket_id: ticket_id.to_owned(),
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            hasher: Sha256::new(),
            next_chunk: 0,
            sent_chunks: 0,
            unsent: Vec::new(),
            head: Vec::new(),
        }
    }

    fn size(&self) -> u64 {
        u64::from(self.sent_chunks) * u64::from(CHUNK_SIZE) + self.unsent.len() as u64
    }

    /// Where the chunk being filled begins in `unsent`.
    fn filling(&self) -> usize {
        (self.next_chunk - self.sent_chunks) as usize * CHUNK_SIZE as usize
    }

    fn write(&mut self, data: &[u8], batch: &mut impl ChunkBatch) {
        self.hasher.update(data);
        let wanted = HEAD_BYTES.saturating_sub(self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..wanted]);
        // Doubling, but not past what a batch holds: a large file's buffer
        // would otherwise reach twice that (`staging_bytes_at_most`).
        let needed = self.unsent.len() + data.len();
        if needed > self.unsent.capacity() {
            let cap = (self.unsent.capacity() * 2).min(BATCH_BYTES + CHUNK_SIZE as usize);
            self.unsent
                .reserve_exact(needed.max(cap) - self.unsent.len());
        }
        self.unsent.extend_from_slice(data);
        while self.unsent.len() - self.filling() >= CHUNK_SIZE as usize {
            self.push_chunk(batch);
        }
    }

    /// The chunk being filled (whole, or the last) joins the batch.
    fn push_chunk(&mut self, batch: &mut impl ChunkBatch) {
        let start = self.filling();
        let end = (start + CHUNK_SIZE as usize).min(self.unsent.len());
        let bytes = self.unsent[start..end].to_vec();
        batch.insert(
            CHUNKS,
            doc! {
                "_id": ObjectId::new(),
                "files_id": self.id,
                "n": self.next_chunk as i32,
                "data": Binary { subtype: BinarySubtype::Generic, bytes },
            },
        );
        self.next_chunk += 1;
    }

    /// The chunks that joined a batch are in GridFS now; the chunk being
    /// filled is not.
    fn sent(&mut self) {
        let done = self.filling();
        self.unsent.drain(..done);
        self.sent_chunks = self.next_chunk;
    }

    fn finish(mut self, batch: &mut impl ChunkBatch) -> Staged {
        if self.unsent.len() > self.filling() {
            self.push_chunk(batch);
        }
        let sha256 = hex::encode(self.hasher.finalize_reset());
        let size = self.size() as i64;
        batch.insert(
            FILES,
            doc! {
                "_id": self.id,
                "length": size,
                "chunkSize": CHUNK_SIZE as i32,
                "uploadDate": DateTime::now(),
                "filename": &self.path,
                "metadata": {
                    // The upload's key (see `blobs`): its owner, and
                    // its first reference.
                    "ticket_id": &self.ticket_id,
                    "refs": [&self.ticket_id],
                    "path": &self.path,
                    "content_type": &self.content_type,
                    "sha256": &sha256,
                    "size": size,
                },
            },
        );
        Staged {
            file: StoredFile {
                path: self.path,
                file_id: self.id,
                size,
                sha256,
                content_type: self.content_type,
                chunk_size: CHUNK_SIZE as i64,
            },
            sent: u64::from(self.sent_chunks) * u64::from(CHUNK_SIZE),
            unsent: Bytes::from(self.unsent),
            head: Bytes::from(self.head),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The batch planning against a stand-in database: random folders
    //! (sizes around the chunk and batch sizes, empty files among them)
    //! arriving in random pieces, sent whenever the batch is full; every
    //! read a validator could make returns the bytes sent.

    use std::collections::HashMap;

    use mongodb::bson::{Bson, Document, oid::ObjectId};
    use proptest::prelude::*;

    use super::*;

    /// Plays the database: a batch, and what was sent of it.
    #[derive(Default)]
    struct Database {
        waiting: Vec<(&'static str, Document)>,
        bytes: usize,
        /// Sent chunks by (file, n).
        chunks: HashMap<(ObjectId, i32), Vec<u8>>,
        files: usize,
    }

    impl ChunkBatch for Database {
        fn insert(&mut self, collection: &'static str, document: Document) {
            if let Ok(data) = document.get_binary_generic("data") {
                self.bytes += data.len();
            }
            self.waiting.push((collection, document));
        }
        fn bytes(&self) -> usize {
            self.bytes
        }
    }

    impl Database {
        fn send(&mut self) {
            for (collection, document) in self.waiting.drain(..) {
                if collection == FILES {
                    self.files += 1;
                    continue;
                }
                let id = document.get_object_id("files_id").expect("files_id");
                let n = document.get_i32("n").expect("n");
                let Some(Bson::Binary(data)) = document.get("data") else {
                    panic!("chunk without data");
                };
                let old = self.chunks.insert((id, n), data.bytes.clone());
                assert!(old.is_none(), "chunk {n} of {id} sent twice");
            }
            self.bytes = 0;
        }

        /// What a GridFS read of `range` returns, or the error it fails with.
        fn read(&self, file: &StoredFile, range: ByteRange) -> Result<Vec<u8>> {
            let size = CHUNK_SIZE as u64;
            let mut out = Vec::new();
            for n in range.start / size..range.end.div_ceil(size) {
                let chunk = self.chunks.get(&(file.file_id, n as i32)).ok_or_else(|| {
                    StoreError::Corrupt(format!("file {} is missing chunk {n}", file.file_id))
                })?;
                let base = n * size;
                let from = range.start.saturating_sub(base) as usize;
                let to = ((range.end - base) as usize).min(chunk.len());
                out.extend_from_slice(&chunk[from..to]);
            }
            Ok(out)
        }
    }

    fn content(seed: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7919)) as u8)
            .collect()
    }

    /// Sizes where the planning changes: around a chunk, a batch, zero.
    fn size() -> impl Strategy<Value = usize> {
        let c = CHUNK_SIZE as usize;
        prop_oneof![
            0..2usize,
            1..4096usize,
            (c - 2)..(c + 2),
            (BATCH_BYTES - 2)..(BATCH_BYTES + 2),
            (2 * c - 1)..(2 * c + 1),
            0..(3 * BATCH_BYTES),
        ]
    }

    /// Runs the upload's loop over `files`, each cut into pieces of
    /// `piece` bytes (as a multipart parser hands them over).
    fn upload(files: &[Vec<u8>], pieces: &[usize]) -> (Staging, Database) {
        let mut staging = Staging::new();
        let mut db = Database::default();
        let mut cut = pieces.iter().cycle();
        for (i, bytes) in files.iter().enumerate() {
            staging.begin(ObjectId::new(), "t", &format!("f{i}"), "text/plain");
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let take = (*cut.next().unwrap_or(&1)).clamp(1, rest.len());
                let (piece, tail) = rest.split_at(take);
                rest = tail;
                if staging.write(piece, &mut db) {
                    db.send();
                    staging.sent();
                }
            }
            assert_eq!(staging.current_size(), bytes.len() as u64);
            staging.finish(&mut db);
        }
        (staging, db)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn every_read_returns_the_bytes_sent(
            sizes in prop::collection::vec(size(), 1..8),
            pieces in prop::collection::vec(1usize..300_000, 1..6),
            reads in prop::collection::vec((0.0f64..1.0, 0u32..400_000), 1..12),
        ) {
            let files: Vec<Vec<u8>> =
                sizes.iter().enumerate().map(|(i, &n)| content(i, n)).collect();
            let (staging, db) = upload(&files, &pieces);
            prop_assert_eq!(staging.files().len(), files.len());
            for (staged, bytes) in staging.files().iter().zip(&files) {
                prop_assert_eq!(staged.file.size as usize, bytes.len());
                // Only whole chunks, or the whole file, ever count as sent.
                let sent = staged.sent_len();
                prop_assert!(sent % u64::from(CHUNK_SIZE) == 0 || sent == bytes.len() as u64);
                let whole = staged
                    .read(ByteRange { start: 0, end: bytes.len() as u64 }, |r| {
                        db.read(&staged.file, r)
                    })
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(whole == *bytes, "{} differs", staged.file.path);
                // A sniff of the start never goes to the database.
                let sniff = staged
                    .read(ByteRange { start: 0, end: 512 }, |_| {
                        Err(StoreError::Corrupt("went to the database".into()))
                    })
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(sniff == bytes[..bytes.len().min(512)]);
                for &(at, len) in &reads {
                    let start = (at * bytes.len() as f64) as u64;
                    let range = ByteRange { start, end: start + u64::from(len) };
                    let got = staged
                        .read(range, |r| db.read(&staged.file, r))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let end = (start as usize + len as usize).min(bytes.len());
                    prop_assert!(got == bytes[start as usize..end], "{} at {start}", staged.file.path);
                }
            }
            // What is held in memory is exactly what waits in the batch.
            let held: usize = staging.files().iter().map(|s| s.unsent.len()).sum();
            prop_assert_eq!(held, db.bytes());
        }
    }

    /// The smallest case of issue 20: a batch leaves while the third
    /// file's first chunk is filling.
    #[test]
    fn a_file_begun_as_a_batch_leaves_is_read_from_memory() {
        let files = vec![content(0, 600_000), content(1, 500_000), content(2, 1_000)];
        let (staging, db) = upload(&files, &[65_536]);
        let third = &staging.files()[2];
        assert_eq!(third.sent_len(), 0);
        let read = third
            .read(
                ByteRange {
                    start: 0,
                    end: 1_000,
                },
                |r| db.read(&third.file, r),
            )
            .expect("read");
        assert_eq!(read, files[2]);
    }
}
