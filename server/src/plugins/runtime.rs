//! wasmtime setup and one sandboxed call: a fresh instance per call from a
//! pre-instantiated component and a pooling allocator, with memory, time and
//! output limits. Nothing here knows about HTTP or MongoDB.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap, UpdateDeadline,
    component::{Component, HasSelf, Linker, Resource, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{
    PluginError,
    capture::Capture,
    logs::{CallLog, LogRate},
    text,
};

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    with: {
        "pd2:plugin/host.file": FileHandle,
    },
    imports: { default: trappable },
});

pub use exports::pd2::plugin::guest::{FileInfo, Manifest, Preview, Verdict};
pub use pd2::plugin::types::Hook;
#[cfg(test)]
pub use pd2::plugin::types::Matchers;

/// The major version of `pd2:plugin` this host implements (from the WIT
/// package line, like the bindings).
pub fn interface_major() -> u64 {
    env!("PLUGIN_INTERFACE_VERSION")
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}
pub const INTERFACE_PACKAGE: &str = "pd2:plugin";

/// Calls that may run at once; more wait for a slot. Bounds the pooling
/// allocator's reservation and the blocking threads plugins occupy.
pub const MAX_CONCURRENT_CALLS: u32 = 64;
/// Epoch tick: the resolution of the per-call time limit.
const TICK: Duration = Duration::from_millis(10);
/// Most bytes one `file.read` hands a plugin; it reads in pieces.
const MAX_READ: u32 = 4 * 1024 * 1024;
/// Most time one call may spend waiting for the host to read files. The
/// call's clock stops while the host reads (the plugin's time limit is for
/// the plugin's work: a validator whose file comes from a busy database is
/// not slow); past this, the call ends as the host's failure.
const MAX_HOST_READ_WAIT: Duration = Duration::from_secs(30);
/// What is kept of a call's stderr (where Rust's panic message goes).
const STDERR_CAPTURE: usize = 8 * 1024;
/// Longest panic message passed on to logs, statistics and the CLI.
const MAX_PANIC_CHARS: usize = 500;

/// Per-call limits, from `[plugins]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The preview service's check of a renderer's content type.
    pub preview_type: super::PreviewTypeCheck,
    pub memory: usize,
    pub timeout: Duration,
    pub output: usize,
    pub log_lines_per_call: u32,
}

/// Who a call runs for: the plugin's name, its settings and its log rate.
#[derive(Clone)]
pub struct Identity {
    pub name: Arc<str>,
    pub settings: Arc<str>,
    pub logs: Arc<LogRate>,
}

/// File content a plugin may read: bytes in memory (CLI) or in GridFS.
/// A failed read is the host's failure: the call ends with
/// [`PluginError::Unreadable`], which names no fault of the plugin.
pub trait FileSource: Send + Sync {
    fn size(&self) -> u64;
    fn read(&self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>>;
}

/// Bytes held in memory.
pub struct MemorySource(pub Vec<u8>);

impl FileSource for MemorySource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        let start = offset.min(self.0.len() as u64) as usize;
        let end = start.saturating_add(len as usize).min(self.0.len());
        Ok(self.0[start..end].to_vec())
    }
}

/// The other files of the ticket a render is for, behind
/// `host.open-file`. The implementation decides what a path means; the
/// runtime only bounds how often and how long a plugin may ask.
pub trait TicketFiles: Send + Sync {
    fn open(&self, path: &str) -> Option<(FileInfo, Arc<dyn FileSource>)>;
}

/// Most `open-file` answers one call gets; later calls get `none`.
pub const MAX_OPENED: u32 = 64;
/// Longest path `open-file` looks up (longer: `none`).
const MAX_OPEN_PATH: usize = 4096;

/// The host side of the `file` resource.
pub struct FileHandle {
    source: Arc<dyn FileSource>,
}

/// Everything one call's store holds. WASI is linked because components
/// built for wasm32-wasip2 import it, but its context grants nothing: no
/// preopened directories, environment, arguments, network or stdio.
pub struct CallState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    /// When the call's time limit ends; host waits stop there (`poll`).
    /// Moved later by the time the host spends reading files.
    pub(super) deadline: Instant,
    /// Time spent in the host's file reads so far.
    host_reads: Duration,
    memory: MemoryLimit,
    identity: Identity,
    log: CallLog,
    /// What `open-file` may open: set for renders only.
    ticket: Option<Arc<dyn TicketFiles>>,
    opened: u32,
}

/// The per-call memory limit, remembering whether the plugin ran into it,
/// so running out of memory is told apart from other traps.
struct MemoryLimit {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table entry is a pointer; count them against the same limit.
        let ok = desired.saturating_mul(size_of::<usize>()) <= self.limit;
        self.hit |= !ok;
        Ok(ok)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        8
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl pd2::plugin::types::Host for CallState {}

impl pd2::plugin::host::Host for CallState {
    fn log(&mut self, level: pd2::plugin::host::Level, message: String) -> wasmtime::Result<()> {
        use pd2::plugin::host::Level;
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        let identity = &self.identity;
        self.log
            .write(&identity.logs, &identity.name, level, &message);
        Ok(())
    }

    fn settings(&mut self) -> wasmtime::Result<String> {
        Ok(self.identity.settings.to_string())
    }

    fn time_left_ms(&mut self) -> wasmtime::Result<u32> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        Ok(left.as_millis().min(u128::from(u32::MAX)) as u32)
    }

    fn open_file(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Option<(FileInfo, Resource<FileHandle>)>> {
        let Some(ticket) = self.ticket.clone() else {
            return Ok(None);
        };
        if self.opened >= MAX_OPENED || path.len() > MAX_OPEN_PATH {
            return Ok(None);
        }
        self.opened += 1;
        match ticket.open(&path) {
            Some((info, source)) => Ok(Some((info, self.table.push(FileHandle { source })?))),
            None => Ok(None),
        }
    }
}

impl pd2::plugin::host::HostFile for CallState {
    fn size(&mut self, file: Resource<FileHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&file)?.source.size())
    }

    fn read(
        &mut self,
        file: Resource<FileHandle>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let source = self.table.get(&file)?.source.clone();
        let started = Instant::now();
        // A storage failure ends the call rather than handing the plugin a
        // silently short file; it is told apart from the plugin's own
        // failures (see `classify`).
        let bytes = source
            .read(offset, len.min(MAX_READ))
            .map_err(|e| wasmtime::Error::new(SourceFailed(Arc::new(e))))?;
        self.host_read_took(started.elapsed())?;
        Ok(bytes)
    }

    fn drop(&mut self, file: Resource<FileHandle>) -> wasmtime::Result<()> {
        self.table.delete(file)?;
        Ok(())
    }
}

impl CallState {
    /// Stops the call's clock for a read: its deadline moves by the read's
    /// time, up to [`MAX_HOST_READ_WAIT`] in all.
    fn host_read_took(&mut self, took: Duration) -> wasmtime::Result<()> {
        self.host_reads += took;
        if self.host_reads > MAX_HOST_READ_WAIT {
            let slow = anyhow::Error::new(ReadsTooSlow(MAX_HOST_READ_WAIT));
            return Err(wasmtime::Error::new(SourceFailed(Arc::new(slow))));
        }
        self.deadline += took;
        Ok(())
    }
}

/// Epoch ticks for `left` of a call's time (the ticker advances every
/// [`TICK`]); one more, so a call never ends early.
fn ticks(left: Duration) -> u64 {
    (left.as_millis() / TICK.as_millis()).max(1) as u64 + 1
}

/// The host's reads of one call took longer than it may wait for them: the
/// storage is too slow, not the plugin.
#[derive(Debug, thiserror::Error)]
#[error("reading files for the plugin took over {0:?} in all")]
pub struct ReadsTooSlow(pub Duration);

/// What a source answers when it has no bytes to give (a check of an
/// upload's names before its bytes are sent): a plugin that reads ends
/// there, and the host says nothing of it (nothing failed).
#[derive(Debug, thiserror::Error)]
#[error("the file's content is not available in a check of names")]
pub struct ContentWithheld;

/// A `file.read` the host could not serve.
#[derive(Debug, thiserror::Error)]
#[error("the host could not read the file: {0:#}")]
struct SourceFailed(Arc<anyhow::Error>);

/// The shared engine and linker, and the epoch ticker behind time limits.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub linker: Arc<Linker<CallState>>,
    pub limits: Limits,
}

impl Runtime {
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_CONCURRENT_CALLS)
            .total_core_instances(MAX_CONCURRENT_CALLS * 8)
            .total_memories(MAX_CONCURRENT_CALLS * 2)
            .total_tables(MAX_CONCURRENT_CALLS * 4)
            .max_memory_size(limits.memory);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        super::poll::add_to_linker(&mut linker)?;
        Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;

        // Drives every store's deadline; stops with the engine's last user.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;

        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits,
        })
    }

    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        Ok(Component::new(&self.engine, bytes)?)
    }

    pub fn prepare(&self, component: &Component) -> anyhow::Result<PluginPre<CallState>> {
        Ok(PluginPre::new(self.linker.instantiate_pre(component)?)?)
    }

    fn store(&self, identity: &Identity) -> (Store<CallState>, Capture) {
        let stderr = Capture::new(STDERR_CAPTURE);
        let state = CallState {
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            deadline: Instant::now() + self.limits.timeout,
            host_reads: Duration::ZERO,
            memory: MemoryLimit {
                limit: self.limits.memory,
                hit: false,
            },
            identity: identity.clone(),
            log: CallLog::new(self.limits.log_lines_per_call),
            ticket: None,
            opened: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(ticks(self.limits.timeout));
        // At each epoch deadline, the call's own deadline decides: it has
        // moved if the host spent time reading files.
        store.epoch_deadline_callback(|store| {
            let left = store
                .data()
                .deadline
                .saturating_duration_since(Instant::now());
            Ok(if left.is_zero() {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(ticks(left))
            })
        });
        (store, stderr)
    }

    /// Runs `f` on a fresh instance. Blocking: call it off the async reactor.
    pub fn call<R>(
        &self,
        pre: &PluginPre<CallState>,
        identity: &Identity,
        f: impl FnOnce(&mut Store<CallState>, &Plugin) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let started = Instant::now();
        let (mut store, stderr) = self.store(identity);
        let result = pre
            .instantiate(&mut store)
            .and_then(|instance| f(&mut store, &instance));
        let state = store.data();
        state
            .log
            .finish(&identity.name, self.limits.log_lines_per_call);
        let out_of_memory = state.memory.hit;
        // The plugin's own time: its clock stopped while the host read.
        let elapsed = started.elapsed().saturating_sub(state.host_reads);
        drop(store);
        result.map_err(|e| self.classify(e, elapsed, out_of_memory, &stderr))
    }

    /// Lets the call open the other files of a ticket (`open-file`).
    pub fn allow_ticket(store: &mut Store<CallState>, ticket: Option<Arc<dyn TicketFiles>>) {
        store.data_mut().ticket = ticket;
    }

    /// Hands a file to the call as a resource the plugin can borrow.
    pub fn file(
        store: &mut Store<CallState>,
        source: Arc<dyn FileSource>,
    ) -> wasmtime::Result<Resource<FileHandle>> {
        Ok(store.data_mut().table.push(FileHandle { source })?)
    }

    /// Tells apart why a call failed: time, memory, a panic (with its
    /// message), another trap.
    fn classify(
        &self,
        error: wasmtime::Error,
        elapsed: Duration,
        out_of_memory: bool,
        stderr: &Capture,
    ) -> PluginError {
        if let Some(SourceFailed(cause)) = error.downcast_ref::<SourceFailed>() {
            return PluginError::Unreadable(cause.clone());
        }
        let timeout = PluginError::Timeout(self.limits.timeout);
        if error.is::<super::poll::BlockedPastDeadline>() {
            return timeout;
        }
        let trap = error.downcast_ref::<Trap>();
        if matches!(trap, Some(Trap::Interrupt)) {
            return timeout;
        }
        if out_of_memory {
            return PluginError::OutOfMemory(self.limits.memory);
        }
        if let Some(message) = panic_message(&stderr.contents()) {
            return PluginError::Panic(message);
        }
        match trap {
            Some(trap) if elapsed >= self.limits.timeout => {
                PluginError::Timeout(self.limits.timeout).with_detail(trap.to_string())
            }
            Some(trap) => PluginError::Trap(trap.to_string()),
            None => PluginError::Trap(text::bounded(&format!("{error:#}"), MAX_PANIC_CHARS)),
        }
    }

    /// Checks what a renderer returned against the output limit and for a
    /// usable content type (one of the preview types, fit for a header).
    pub fn check_preview(&self, preview: Preview) -> Result<Preview, PluginError> {
        (self.limits.preview_type)(&preview.content_type).map_err(PluginError::Malformed)?;
        if preview.body.len() > self.limits.output {
            return Err(PluginError::Malformed(format!(
                "preview of {} bytes exceeds the {} byte limit",
                preview.body.len(),
                self.limits.output
            )));
        }
        Ok(preview)
    }
}

/// Rust's panic report on stderr, `thread '…' panicked at src/lib.rs:9:5:`
/// then the message: the message, with its location, bounded.
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let start = text.find("panicked at ")?;
    let report = &text[start + "panicked at ".len()..];
    let (location, rest) = report.split_once('\n').unwrap_or((report, ""));
    let location = location.trim_end_matches(':');
    // The message ends where the std hint about backtraces begins.
    let message = rest.split("\nnote: ").next().unwrap_or("").trim_end();
    Some(text::bounded(
        &format!("{message} (at {location})"),
        MAX_PANIC_CHARS,
    ))
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn panic_reports_are_read_from_stderr() {
        let stderr = b"\nthread '<unnamed>' panicked at src/lib.rs:72:26:\nrenderer panicked\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("renderer panicked (at src/lib.rs:72:26)")
        );
        assert_eq!(panic_message(b"something else"), None);
        let forged = b"thread 'x' panicked at a.rs:1:1:\nline one\nline two";
        assert_eq!(
            panic_message(forged).as_deref(),
            Some("line one\\nline two (at a.rs:1:1)")
        );
    }
}
