//! The plugin host: loads WebAssembly components from `plugins.dir`, keeps
//! them in sync with the directory, and runs their hooks sandboxed within
//! process-wide budgets.
//!
//! Request handlers see only [`PluginHost`]. By role:
//! - `registry`: which files serve under which name (and conflicts), kept in
//!   sync with the directory;
//! - `load`: compile (with the on-disk cache), version and manifest checks;
//! - `runtime`: wasmtime, one sandboxed call and its per-call limits;
//! - `budget`: capacity shared by calls (memory, validator and renderer
//!   pools).
//!
//! What a preview may be and who may render one when is the preview
//! service's policy (`service::previews::policy`): the host is given the
//! check for a renderer's content type, and only runs hooks.
//! - `logs`, `text`, `capture`: bounding what a plugin writes.

mod budget;
mod capture;
mod load;
mod logs;
mod poll;
mod registry;
mod runtime;
mod text;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use budget::Pool;
use load::Loader;
pub use load::{LoadedPlugin, ManifestInfo, hook_name};
pub use registry::Conflict;
use registry::Registry;
pub use runtime::{
    ContentWithheld, FileInfo, FileSource, Hook, MemorySource, Preview, ReadsTooSlow, TicketFiles,
    Verdict,
};
use runtime::{Limits, Runtime};
pub use text::bounded as bounded_text;

use crate::config::PluginsConfig;

/// Why a plugin call produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("exceeded its {0:?} time limit")]
    Timeout(Duration),
    #[error("ran out of memory (limit {} MiB)", .0 >> 20)]
    OutOfMemory(usize),
    #[error("panicked: {0}")]
    Panic(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned unusable output: {0}")]
    Malformed(String),
    #[error("host error: {0}")]
    Host(String),
    /// The host could not read the file the plugin asked for (a storage
    /// failure, not the plugin's): the cause, for the caller to report.
    #[error("the file could not be read: {0:#}")]
    Unreadable(Arc<anyhow::Error>),
    /// Not run: every slot of this pool stayed taken while it waited.
    #[error("not run: the {0} are all busy")]
    Busy(&'static str),
}

impl PluginError {
    fn with_detail(self, detail: String) -> Self {
        match self {
            PluginError::Timeout(d) => PluginError::Trap(format!("{detail} after {d:?}")),
            other => other,
        }
    }

    /// The `reason` label of `pd2_plugin_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Timeout(_) => "timeout",
            PluginError::OutOfMemory(_) => "out_of_memory",
            PluginError::Panic(_) => "panic",
            PluginError::Trap(_) => "trap",
            PluginError::Malformed(_) => "bad_output",
            PluginError::Host(_) => "host",
            PluginError::Unreadable(_) => "unreadable",
            PluginError::Busy(_) => "busy",
        }
    }
}

/// Call statistics of one plugin name; they survive reloads.
#[derive(Debug)]
pub struct Stats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub total_micros: AtomicU64,
    /// The last failure, bounded, for admins (`GET /plugins`).
    last_failure: Mutex<Option<String>>,
    logs: Arc<logs::LogRate>,
}

impl Stats {
    fn new(logs: Arc<logs::LogRate>) -> Self {
        Self {
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            total_micros: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            logs,
        }
    }

    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().ok().and_then(|f| f.clone())
    }
}

/// What `/health` says about plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// The plugins present at start are still loading.
    Starting,
    Ready,
}

/// How a hook call ended, for the caller to act on.
pub type CallResult<T> = Result<T, PluginError>;

/// The plugin host shared by all requests.
pub struct PluginHost {
    loader: Loader,
    dir: PathBuf,
    registry: RwLock<Registry>,
    state: watch::Sender<HostState>,
    validators: Pool,
    renderers: Pool,
}

/// Checks a renderer's content type: `Err` says why it may not be one.
pub type PreviewTypeCheck = fn(&str) -> Result<(), String>;

impl PluginHost {
    pub fn new(
        config: &PluginsConfig,
        preview_type: PreviewTypeCheck,
    ) -> anyhow::Result<Arc<Self>> {
        let limits = Limits {
            preview_type,
            memory: config.memory_limit as usize,
            timeout: Duration::from_millis(config.timeout_ms),
            output: config.max_output as usize,
            log_lines_per_call: config.log_lines_per_call,
        };
        let runtime = Runtime::new(limits)?;
        let settings = config
            .settings
            .iter()
            .map(|(name, table)| {
                let json = serde_json::to_string(table).unwrap_or_else(|_| "{}".into());
                (name.clone(), Arc::<str>::from(json))
            })
            .collect();
        let cache = (!config.cache_dir.is_empty()).then(|| PathBuf::from(&config.cache_dir));
        let (validators, renderers) = budget::pools(config);
        Ok(Arc::new(Self {
            loader: Loader::new(runtime, settings, cache, config.log_lines_per_minute),
            dir: PathBuf::from(&config.dir),
            registry: RwLock::new(Registry::default()),
            state: watch::Sender::new(HostState::Starting),
            validators,
            renderers,
        }))
    }

    /// Loads one file outside the watched directory (CLI).
    pub fn load_file(&self, path: &Path) -> anyhow::Result<Arc<LoadedPlugin>> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        self.loader.load(path, &bytes).map(Arc::new)
    }

    /// Brings the loaded set in line with the directory (see
    /// `registry::sync`).
    pub fn sync(&self) {
        registry::sync(&self.dir, &self.loader, &self.registry);
    }

    /// Loads the directory on a thread of its own, then re-syncs every
    /// `interval`. Returns at once: the server answers (`/ping`, and
    /// `/health` saying `starting`) while the first load runs.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let host = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || {
                while let Some(host) = host.upgrade() {
                    let started = Instant::now();
                    host.sync();
                    host.state.send_if_modified(|state| {
                        let first = *state == HostState::Starting;
                        if first {
                            let (from_cache, compiled) = host.loader.take_counts();
                            tracing::info!(
                                elapsed = ?started.elapsed(),
                                loaded = host.read().active().len(),
                                from_cache,
                                compiled,
                                "plugins loaded"
                            );
                            *state = HostState::Ready;
                        }
                        first
                    });
                    drop(host);
                    std::thread::sleep(interval);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot watch the plugin directory; plugins are off");
            self.state.send_replace(HostState::Ready);
        }
    }

    pub fn state(&self) -> HostState {
        *self.state.borrow()
    }

    /// Waits (at most `limit`) for the plugins present at start to load:
    /// a route that needs a validator must never run without it.
    pub async fn ready(&self, limit: Duration) -> bool {
        let mut state = self.state.subscribe();
        tokio::time::timeout(limit, state.wait_for(|s| *s == HostState::Ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        registry::read(&self.registry)
    }

    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        self.read().active().to_vec()
    }

    pub fn load_errors(&self) -> BTreeMap<PathBuf, String> {
        self.read().errors().clone()
    }

    pub fn conflicts(&self) -> Vec<Conflict> {
        self.read().conflicts()
    }

    pub fn stats(&self, name: &str) -> Option<Arc<Stats>> {
        self.read().stats(name)
    }

    /// Plugins implementing `hook` that want this file, in priority order.
    pub fn matching(&self, hook: Hook, info: &FileInfo) -> Vec<Arc<LoadedPlugin>> {
        self.read()
            .active()
            .iter()
            .filter(|p| p.has(hook) && p.matches(info))
            .cloned()
            .collect()
    }

    /// Plugins implementing `validate-ticket`.
    pub fn ticket_validators(&self) -> Vec<Arc<LoadedPlugin>> {
        self.read()
            .active()
            .iter()
            .filter(|p| p.has(Hook::ValidateTicket))
            .cloned()
            .collect()
    }

    /// A name conflict that leaves a check owed to this file (or, without
    /// a file, to any upload) undone.
    pub fn contested(&self, hook: Hook, info: Option<&FileInfo>) -> Option<Conflict> {
        self.read().contested(hook, info)
    }

    pub async fn validate_file(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Verdict> {
        self.run(&self.validators, plugin, "validate-file", move |rt, p| {
            validate_file(rt, p, info, source)
        })
        .await
    }

    pub async fn validate_ticket(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        files: Vec<FileInfo>,
    ) -> CallResult<Verdict> {
        self.run(&self.validators, plugin, "validate-ticket", move |rt, p| {
            validate_ticket(rt, p, &files)
        })
        .await
    }

    pub async fn render(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        info: FileInfo,
        source: Arc<dyn FileSource>,
        ticket: Option<Arc<dyn TicketFiles>>,
    ) -> CallResult<Option<Preview>> {
        self.run(&self.renderers, plugin, "render", move |rt, p| {
            render(rt, p, info, source, ticket)
        })
        .await
    }

    /// Runs a call on its pool's threads (never on the reactor) within the
    /// pool's capacity, and records its statistics and failures.
    async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        pool: &Pool,
        plugin: &Arc<LoadedPlugin>,
        hook: &'static str,
        call: impl FnOnce(&Runtime, &LoadedPlugin) -> CallResult<R> + Send + 'static,
    ) -> CallResult<R> {
        let _capacity = pool.enter().await?;
        let started = Instant::now();
        let runtime = self.loader.runtime.clone();
        let loaded = plugin.clone();
        let result = pool
            .spawn(move || call(&runtime, &loaded))
            .await
            .unwrap_or_else(|e| Err(PluginError::Host(format!("call panicked: {e}"))));
        self.record(plugin, hook, started.elapsed(), result.as_ref().err());
        result
    }

    fn record(
        &self,
        plugin: &LoadedPlugin,
        hook: &'static str,
        elapsed: Duration,
        error: Option<&PluginError>,
    ) {
        // The host failing to read a file is no fault of the plugin's: it
        // is reported to the caller, not counted against the plugin.
        let error = match error {
            Some(PluginError::Unreadable(cause)) if is_withheld(cause) => None,
            Some(PluginError::Unreadable(cause)) => {
                tracing::warn!(
                    plugin = plugin.name(),
                    "{hook}: the host could not read the file: {cause:#}"
                );
                None
            }
            other => other,
        };
        crate::telemetry::metrics().plugin_call(
            plugin.name(),
            hook,
            elapsed,
            error.map(PluginError::kind),
        );
        let Some(stats) = self.stats(plugin.name()) else {
            return;
        };
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats
            .total_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if let Some(error) = error {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = stats.last_failure.lock() {
                *last = Some(format!("{hook}: {error}"));
            }
            tracing::warn!(
                plugin = plugin.name(),
                build = %plugin.build,
                reason = error.kind(),
                "plugin call failed: {hook} {error}"
            );
        }
    }

    /// The hooks run synchronously (CLI, benchmarks): no async runtime.
    pub fn render_blocking(
        &self,
        plugin: &LoadedPlugin,
        info: FileInfo,
        source: Arc<dyn FileSource>,
        ticket: Option<Arc<dyn TicketFiles>>,
    ) -> CallResult<Option<Preview>> {
        render(&self.loader.runtime, plugin, info, source, ticket)
    }

    pub fn validate_file_blocking(
        &self,
        plugin: &LoadedPlugin,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Verdict> {
        validate_file(&self.loader.runtime, plugin, info, source)
    }

    pub fn validate_ticket_blocking(
        &self,
        plugin: &LoadedPlugin,
        files: Vec<FileInfo>,
    ) -> CallResult<Verdict> {
        validate_ticket(&self.loader.runtime, plugin, &files)
    }
}

/// The read failed because the source had no bytes to give (see
/// [`ContentWithheld`]).
fn is_withheld(cause: &anyhow::Error) -> bool {
    cause.chain().any(|c| c.is::<ContentWithheld>())
}

fn validate_file(
    rt: &Runtime,
    p: &LoadedPlugin,
    info: FileInfo,
    source: Arc<dyn FileSource>,
) -> CallResult<Verdict> {
    rt.call(&p.pre, &p.identity, |store, instance| {
        let file = Runtime::file(store, source)?;
        instance
            .pd2_plugin_guest()
            .call_validate_file(store, &info, file)
    })
}

fn validate_ticket(rt: &Runtime, p: &LoadedPlugin, files: &[FileInfo]) -> CallResult<Verdict> {
    rt.call(&p.pre, &p.identity, |store, instance| {
        instance
            .pd2_plugin_guest()
            .call_validate_ticket(store, files)
    })
}

/// Renders, then checks the output's size and content type.
fn render(
    rt: &Runtime,
    p: &LoadedPlugin,
    info: FileInfo,
    source: Arc<dyn FileSource>,
    ticket: Option<Arc<dyn TicketFiles>>,
) -> CallResult<Option<Preview>> {
    let preview = rt.call(&p.pre, &p.identity, |store, instance| {
        Runtime::allow_ticket(store, ticket);
        let file = Runtime::file(store, source)?;
        instance.pd2_plugin_guest().call_render(store, &info, file)
    })?;
    preview.map(|p| rt.check_preview(p)).transpose()
}
