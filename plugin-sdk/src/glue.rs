//! The guest side of the interface, implemented once for every [`Plugin`]
//! (`Adapter` on wasm), and the conversions between the WIT bindings and
//! the SDK's own types. Not part of the public API.

#[cfg(target_arch = "wasm32")]
use crate::bindings::pd2::plugin::host;
use crate::bindings::pd2::plugin::types as wit;
use crate::{Content, FileInfo, Hook, Plugin, Verdict};

pub fn manifest<P: Plugin>() -> wit::Manifest {
    let m = P::manifest();
    wit::Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        hooks: m
            .hooks
            .into_iter()
            .map(|h| match h {
                Hook::ValidateFile => wit::Hook::ValidateFile,
                Hook::ValidateTicket => wit::Hook::ValidateTicket,
                Hook::Render => wit::Hook::Render,
            })
            .collect(),
        matchers: wit::Matchers {
            paths: m.paths,
            mime_types: m.mime_types,
        },
        priority: m.priority,
    }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn info(i: wit::FileInfo) -> FileInfo {
    FileInfo {
        path: i.path,
        content_type: i.content_type,
        size: i.size,
    }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn verdict(v: Verdict) -> wit::Verdict {
    match v {
        Verdict::Accept => wit::Verdict::Accept,
        Verdict::Reject(message) => wit::Verdict::Reject(message),
    }
}

#[cfg(target_arch = "wasm32")]
struct HostFile<'a>(&'a host::File);

#[cfg(target_arch = "wasm32")]
impl Content for HostFile<'_> {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        self.0.read(offset, len)
    }
}

/// A file the plugin opened itself (`open_file`): owned, dropped with it.
#[cfg(target_arch = "wasm32")]
struct OwnedFile(host::File);

#[cfg(target_arch = "wasm32")]
impl Content for OwnedFile {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        self.0.read(offset, len)
    }
}

#[cfg(target_arch = "wasm32")]
pub fn open_file(path: &str) -> Option<(FileInfo, Box<dyn Content>)> {
    host::open_file(path).map(|(i, file)| (info(i), Box::new(OwnedFile(file)) as Box<dyn Content>))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn open_file(path: &str) -> Option<(FileInfo, Box<dyn Content>)> {
    crate::testing::open_file(path)
}

/// The guest side of the interface for any [`Plugin`]: what
/// [`export_plugin!`](crate::export_plugin) registers.
#[cfg(target_arch = "wasm32")]
pub struct Adapter<P>(core::marker::PhantomData<P>);

#[cfg(target_arch = "wasm32")]
impl<P: Plugin> crate::bindings::exports::pd2::plugin::guest::Guest for Adapter<P> {
    fn describe() -> wit::Manifest {
        manifest::<P>()
    }

    fn validate_file(i: wit::FileInfo, content: &host::File) -> wit::Verdict {
        verdict(P::validate_file(&info(i), &HostFile(content)))
    }

    fn validate_ticket(files: Vec<wit::FileInfo>) -> wit::Verdict {
        let files: Vec<FileInfo> = files.into_iter().map(info).collect();
        verdict(P::validate_ticket(&files))
    }

    fn render(i: wit::FileInfo, content: &host::File) -> Option<wit::Preview> {
        P::render(&info(i), &HostFile(content)).map(|p| wit::Preview {
            content_type: p.content_type,
            body: p.body,
        })
    }
}

// Keeps `Content` in use on native builds, where the wasm glue is absent.
#[allow(dead_code)]
fn _content_is_object_safe(_: &dyn Content) {}

#[cfg(target_arch = "wasm32")]
pub fn settings_json() -> String {
    host::settings()
}

#[cfg(not(target_arch = "wasm32"))]
pub fn settings_json() -> String {
    crate::testing::current_settings()
}

#[cfg(target_arch = "wasm32")]
pub fn time_left() -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(host::time_left_ms()))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn time_left() -> std::time::Duration {
    crate::testing::current_time_left()
}

#[cfg(target_arch = "wasm32")]
pub fn log(level: crate::log::Level, message: &str) {
    use crate::log::Level;
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
pub fn log(level: crate::log::Level, message: &str) {
    eprintln!("[plugin {level:?}] {message}");
}
