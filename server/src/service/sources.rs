//! Where a plugin reads a file from: bytes still in memory, or GridFS.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    plugins::{FileInfo, FileSource, ReadsTooSlow, TicketFiles},
    store::{ByteRange, FileStore, Staged, StoreError, StoredFile, TicketRecord},
};

/// A file of an upload being validated: what an earlier batch sent is
/// read from GridFS, the rest from memory (see `store::staging`).
struct StagedSource {
    gridfs: GridFsSource,
    staged: Staged,
    clock: Arc<ReadClock>,
}

impl FileSource for StagedSource {
    fn size(&self) -> u64 {
        self.gridfs.size()
    }

    fn read(&self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        let range = ByteRange {
            start: offset,
            end: offset.saturating_add(u64::from(len)),
        };
        let bytes = self.staged.read(range, |sent| {
            let _reading = self.clock.reading();
            self.gridfs.read_range(sent)
        })?;
        Ok(bytes)
    }
}

/// `clock` counts the time this upload's files spend being read back from
/// the database.
pub fn staged(
    files: &FileStore,
    staged: &Staged,
    runtime: tokio::runtime::Handle,
    clock: Arc<ReadClock>,
) -> Arc<dyn FileSource> {
    Arc::new(StagedSource {
        gridfs: GridFsSource {
            files: files.clone(),
            file: staged.file.clone(),
            runtime,
        },
        staged: staged.clone(),
        clock,
    })
}

/// The wall time during which at least one of an upload's files was being
/// read back from the database: what a busy database added to its
/// validation, which is not the validators' time (see `validation`).
#[derive(Debug, Default)]
pub struct ReadClock(Mutex<Reads>);

#[derive(Debug, Default)]
struct Reads {
    running: usize,
    since: Option<Instant>,
    done: Duration,
}

impl ReadClock {
    /// Counts from now until the guard is dropped.
    fn reading(&self) -> impl Drop + '_ {
        if let Ok(mut reads) = self.0.lock() {
            if reads.running == 0 {
                reads.since = Some(Instant::now());
            }
            reads.running += 1;
        }
        Reading(self)
    }

    pub fn waited(&self) -> Duration {
        self.0.lock().map_or(Duration::ZERO, |reads| {
            reads.done + reads.since.map_or(Duration::ZERO, |since| since.elapsed())
        })
    }
}

struct Reading<'a>(&'a ReadClock);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Ok(mut reads) = self.0.0.lock() {
            reads.running = reads.running.saturating_sub(1);
            if reads.running == 0
                && let Some(since) = reads.since.take()
            {
                reads.done += since.elapsed();
            }
        }
    }
}

/// A stored file read through GridFS, a range at a time. Plugin calls run
/// on blocking threads, so reads block on the runtime here.
struct GridFsSource {
    files: FileStore,
    file: StoredFile,
    runtime: tokio::runtime::Handle,
}

impl FileSource for GridFsSource {
    fn size(&self) -> u64 {
        self.file.size.max(0) as u64
    }

    fn read(&self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        let start = offset.min(self.size());
        let end = start.saturating_add(u64::from(len)).min(self.size());
        Ok(self.read_range(ByteRange { start, end })?)
    }
}

impl GridFsSource {
    fn read_range(&self, range: ByteRange) -> Result<Vec<u8>, StoreError> {
        self.runtime
            .block_on(self.files.read_into_one(&self.file, range))
    }
}

pub fn gridfs(
    files: &FileStore,
    file: &StoredFile,
    runtime: tokio::runtime::Handle,
) -> Arc<dyn FileSource> {
    Arc::new(GridFsSource {
        files: files.clone(),
        file: file.clone(),
        runtime,
    })
}

/// Why a source of ours failed a read, as the store said it.
pub fn read_failure(cause: &anyhow::Error) -> StoreError {
    if let Some(ReadsTooSlow(waited)) = cause.downcast_ref::<ReadsTooSlow>() {
        return StoreError::Timeout(*waited);
    }
    cause
        .downcast_ref::<StoreError>()
        .cloned()
        .unwrap_or_else(|| StoreError::Corrupt(format!("{cause:#}")))
}

pub fn info(file: &StoredFile) -> FileInfo {
    FileInfo {
        path: file.path.clone(),
        content_type: file.content_type.clone(),
        size: file.size.max(0) as u64,
    }
}

/// The other files of the ticket a preview is rendered for, as a renderer
/// sees them through `open-file`; remembers which paths it asked for, so
/// the preview is cached together with their content.
pub struct TicketSiblings {
    files: FileStore,
    ticket: Vec<StoredFile>,
    runtime: tokio::runtime::Handle,
    asked: Mutex<Vec<String>>,
}

impl TicketSiblings {
    pub fn new(files: &FileStore, ticket: &TicketRecord) -> Arc<Self> {
        Arc::new(Self {
            files: files.clone(),
            ticket: ticket.files.clone(),
            runtime: tokio::runtime::Handle::current(),
            asked: Mutex::new(Vec::new()),
        })
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl TicketFiles for TicketSiblings {
    fn open(&self, path: &str) -> Option<(FileInfo, Arc<dyn FileSource>)> {
        if let Ok(mut asked) = self.asked.lock()
            && !asked.iter().any(|a| a == path)
        {
            asked.push(path.to_owned());
        }
        let file = self.ticket.iter().find(|f| f.path == path)?;
        Some((info(file), gridfs(&self.files, file, self.runtime.clone())))
    }
}
