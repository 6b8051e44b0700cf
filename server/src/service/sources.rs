//! Where a plugin reads a file from: bytes still in memory, or GridFS.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::{
    plugins::{FileInfo, FileSource, TicketFiles},
    store::{ByteRange, FileStore, Staged, StoreError, StoredFile, TicketRecord},
};

/// A file of an upload being validated: what an earlier batch sent is
/// read from GridFS, the rest from memory (see `store::staging`).
struct StagedSource {
    gridfs: GridFsSource,
    staged: Staged,
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
        let bytes = self
            .staged
            .read(range, |sent| self.gridfs.read_range(sent))?;
        Ok(bytes)
    }
}

pub fn staged(
    files: &FileStore,
    staged: &Staged,
    runtime: tokio::runtime::Handle,
) -> Arc<dyn FileSource> {
    Arc::new(StagedSource {
        gridfs: GridFsSource {
            files: files.clone(),
            file: staged.file.clone(),
            runtime,
        },
        staged: staged.clone(),
    })
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
        let stream = self.files.read(&self.file, range);
        let pieces: Vec<Bytes> = self.runtime.block_on(stream.try_collect())?;
        Ok(pieces.concat())
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
