//! wasmtime setup and one sandboxed call: a fresh instance per call from a
//! pre-instantiated component and a pooling allocator, with memory, time and
//! output limits. Nothing here knows about HTTP or MongoDB.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap,
    component::{Component, HasSelf, Linker, Resource, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PluginError;

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

/// The major version of `pd2:plugin` this host implements.
pub const INTERFACE_MAJOR: u64 = 1;
pub const INTERFACE_PACKAGE: &str = "pd2:plugin";

/// Calls that may run at once; more wait for a slot. Bounds the pooling
/// allocator's reservation and the blocking threads plugins occupy.
pub const MAX_CONCURRENT_CALLS: u32 = 64;
/// Epoch tick: the resolution of the per-call time limit.
const TICK: Duration = Duration::from_millis(10);
/// Most bytes one `file.read` hands a plugin; it reads in pieces.
const MAX_READ: u32 = 4 * 1024 * 1024;
/// Longest log line a plugin may write.
const MAX_LOG_LINE: usize = 4096;

/// Per-call limits, from `[plugins]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory: usize,
    pub timeout: Duration,
    pub output: usize,
}

/// File content a plugin may read: bytes in memory (CLI) or in GridFS.
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
    pub(super) deadline: Instant,
    limits: StoreLimits,
    plugin: Arc<str>,
    settings: Arc<str>,
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
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "pd2_ticket::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "pd2_ticket::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "pd2_ticket::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "pd2_ticket::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "pd2_ticket::plugin", plugin, "{message}"),
        }
        Ok(())
    }

    fn settings(&mut self) -> wasmtime::Result<String> {
        Ok(self.settings.to_string())
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
        // A storage failure ends the call (fails it) rather than handing the
        // plugin a silently short file.
        source
            .read(offset, len.min(MAX_READ))
            .map_err(wasmtime::Error::from_anyhow)
    }

    fn drop(&mut self, file: Resource<FileHandle>) -> wasmtime::Result<()> {
        self.table.delete(file)?;
        Ok(())
    }
}

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

    fn store(&self, plugin: &Arc<str>, settings: &Arc<str>) -> Store<CallState> {
        let state = CallState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            deadline: Instant::now() + self.limits.timeout,
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory)
                .instances(32)
                .tables(64)
                .memories(8)
                .trap_on_grow_failure(false)
                .build(),
            plugin: plugin.clone(),
            settings: settings.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = (self.limits.timeout.as_millis() / TICK.as_millis()).max(1) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store
    }

    /// Runs `f` on a fresh instance. Blocking: call it off the async reactor.
    pub fn call<R>(
        &self,
        pre: &PluginPre<CallState>,
        plugin: &Arc<str>,
        settings: &Arc<str>,
        f: impl FnOnce(&mut Store<CallState>, &Plugin) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let started = Instant::now();
        let mut store = self.store(plugin, settings);
        let result = pre
            .instantiate(&mut store)
            .and_then(|instance| f(&mut store, &instance));
        result.map_err(|e| self.classify(e, started.elapsed()))
    }

    /// Hands a file to the call as a resource the plugin can borrow.
    pub fn file(
        store: &mut Store<CallState>,
        source: Arc<dyn FileSource>,
    ) -> wasmtime::Result<Resource<FileHandle>> {
        Ok(store.data_mut().table.push(FileHandle { source })?)
    }

    fn classify(&self, error: wasmtime::Error, elapsed: Duration) -> PluginError {
        if error.is::<super::poll::BlockedPastDeadline>() {
            return PluginError::Timeout(self.limits.timeout);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout(self.limits.timeout),
            Some(trap) if elapsed >= self.limits.timeout => {
                PluginError::Timeout(self.limits.timeout).with_detail(trap.to_string())
            }
            Some(trap) => PluginError::Trap(trap.to_string()),
            None => PluginError::Trap(format!("{error:#}")),
        }
    }

    /// Checks what a renderer returned against the output limit and for a
    /// usable content type.
    pub fn check_preview(&self, preview: Preview) -> Result<Preview, PluginError> {
        if preview.body.len() > self.limits.output {
            return Err(PluginError::Malformed(format!(
                "preview of {} bytes exceeds the {} byte limit",
                preview.body.len(),
                self.limits.output
            )));
        }
        let valid_type = preview.content_type.parse::<mime_guess::Mime>().is_ok()
            && warp::http::HeaderValue::from_str(&preview.content_type).is_ok();
        if !valid_type {
            return Err(PluginError::Malformed(format!(
                "invalid content type {:?}",
                preview.content_type
            )));
        }
        Ok(preview)
    }
}
