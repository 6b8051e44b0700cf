//! Native test support: in-memory files and settings, so a plugin's
//! [`Plugin`](crate::Plugin) impl can be unit-tested with `cargo test`.

use std::cell::RefCell;

use crate::{Content, FileInfo};

/// A file held in memory. Counts the bytes read, so a test can prove a
/// check looked only at a header.
#[derive(Debug, Default)]
pub struct MemoryFile {
    data: Vec<u8>,
    read: std::cell::Cell<u64>,
}

impl MemoryFile {
    /// A file holding `data`.
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        Self {
            data: data.into(),
            read: Default::default(),
        }
    }
    /// Bytes handed out by [`Content::read`] so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.get()
    }
}

impl Content for MemoryFile {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        let start = (offset.min(self.data.len() as u64)) as usize;
        let end = start.saturating_add(len as usize).min(self.data.len());
        self.read.set(self.read.get() + (end - start) as u64);
        self.data[start..end].to_vec()
    }
}

/// A file's info and content, as the server would hand them over.
pub fn file(path: &str, content_type: &str, data: impl Into<Vec<u8>>) -> (FileInfo, MemoryFile) {
    let file = MemoryFile::new(data);
    let info = FileInfo {
        path: path.to_owned(),
        content_type: content_type.to_owned(),
        size: file.size(),
    };
    (info, file)
}

/// Just the info (for `validate_ticket`).
pub fn info(path: &str, size: u64) -> FileInfo {
    FileInfo {
        path: path.to_owned(),
        content_type: "application/octet-stream".to_owned(),
        size,
    }
}

thread_local! {
    static FILES: RefCell<Vec<(FileInfo, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    static SETTINGS: RefCell<String> = RefCell::new("{}".to_owned());
    static TIME_LEFT: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(std::time::Duration::from_secs(3600)) };
}

/// Sets what [`crate::time_left`] returns on this thread, to test how a
/// renderer behaves near the server's time limit.
pub fn set_time_left(left: std::time::Duration) {
    TIME_LEFT.with(|t| t.set(left));
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn current_time_left() -> std::time::Duration {
    TIME_LEFT.with(|t| t.get())
}

/// Sets what [`crate::settings`] returns on this thread, as the server would
/// from `[plugins.settings.<name>]`.
pub fn set_settings(settings: serde_json::Value) {
    SETTINGS.with(|s| *s.borrow_mut() = settings.to_string());
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn current_settings() -> String {
    SETTINGS.with(|s| s.borrow().clone())
}

/// Adds a file to the ticket [`crate::open_file`] sees on this thread, as
/// if it were uploaded beside the file being rendered.
pub fn add_file(path: &str, content_type: &str, data: impl Into<Vec<u8>>) {
    let data = data.into();
    let info = FileInfo {
        path: path.to_owned(),
        content_type: content_type.to_owned(),
        size: data.len() as u64,
    };
    FILES.with(|f| f.borrow_mut().push((info, data)));
}

/// Empties the ticket of [`add_file`].
pub fn clear_files() {
    FILES.with(|f| f.borrow_mut().clear());
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn open_file(path: &str) -> Option<(FileInfo, Box<dyn Content>)> {
    FILES.with(|f| {
        f.borrow()
            .iter()
            .find(|(info, _)| info.path == path)
            .map(|(info, data)| {
                (
                    info.clone(),
                    Box::new(MemoryFile::new(data.clone())) as Box<dyn Content>,
                )
            })
    })
}
