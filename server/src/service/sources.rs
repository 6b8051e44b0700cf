//! Where a plugin reads a file from: bytes still in memory, or GridFS.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::{
    plugins::{FileInfo, FileSource, TicketFiles},
    store::{ByteRange, FileStore, StoredFile, TicketRecord},
};

/// A file of an upload whose bytes have not been sent yet.
pub struct MemorySource(pub Bytes);

impl FileSource for MemorySource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read(&self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        let start = offset.min(self.size()) as usize;
        let end = start.saturating_add(len as usize).min(self.0.len());
        Ok(self.0[start..end].to_vec())
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
        let stream = self.files.read(&self.file, ByteRange { start, end });
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
