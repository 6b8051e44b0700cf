//! The plugin host: loads WebAssembly components from `plugins.dir`, keeps
//! them in sync with the directory, and runs their hooks sandboxed.
//!
//! Request handlers see only the hook methods of [`PluginHost`]; loading,
//! version checks, matching and the wasmtime details stay in here.

mod poll;
mod runtime;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};

use runtime::{CallState, INTERFACE_MAJOR, INTERFACE_PACKAGE, Limits, PluginPre, Runtime};
pub use runtime::{FileInfo, FileSource, Hook, MemorySource, Preview, Verdict};

use crate::config::PluginsConfig;

/// Why a plugin call produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("exceeded its {0:?} time limit")]
    Timeout(Duration),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned unusable output: {0}")]
    Malformed(String),
    #[error("host error: {0}")]
    Host(String),
}

impl PluginError {
    fn with_detail(self, detail: String) -> Self {
        match self {
            PluginError::Timeout(d) => PluginError::Trap(format!("{detail} after {d:?}")),
            other => other,
        }
    }
}

/// A plugin's declared identity and interests, as `GET /plugins` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ManifestInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub hooks: Vec<&'static str>,
    pub matchers: MatchersInfo,
    pub priority: i32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MatchersInfo {
    pub paths: Vec<String>,
    pub mime_types: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub total_micros: AtomicU64,
}

/// One loaded build of a plugin.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub manifest: ManifestInfo,
    pub file: PathBuf,
    /// First 16 hex digits of the file's SHA-256: identifies the build.
    pub build: String,
    hooks: Vec<Hook>,
    paths: GlobSet,
    mime_types: Vec<String>,
    pre: PluginPre<CallState>,
    name: Arc<str>,
    settings: Arc<str>,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings table this plugin sees, as JSON.
    pub fn settings_json(&self) -> &str {
        &self.settings
    }

    pub fn has(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook)
    }

    fn call_validate_file(
        &self,
        rt: &Runtime,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Verdict> {
        rt.call(&self.pre, &self.name, &self.settings, |store, instance| {
            let file = Runtime::file(store, source)?;
            instance
                .pd2_plugin_guest()
                .call_validate_file(store, &info, file)
        })
    }

    fn call_validate_ticket(&self, rt: &Runtime, files: Vec<FileInfo>) -> CallResult<Verdict> {
        rt.call(&self.pre, &self.name, &self.settings, |store, instance| {
            instance
                .pd2_plugin_guest()
                .call_validate_ticket(store, &files)
        })
    }

    /// Renders, then checks the output's size and content type.
    fn call_render(
        &self,
        rt: &Runtime,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Option<Preview>> {
        let preview = rt.call(&self.pre, &self.name, &self.settings, |store, instance| {
            let file = Runtime::file(store, source)?;
            instance.pd2_plugin_guest().call_render(store, &info, file)
        })?;
        preview.map(|p| rt.check_preview(p)).transpose()
    }

    /// Any path glob or MIME pattern matches; none declared matches all.
    pub fn matches(&self, info: &FileInfo) -> bool {
        if self.paths.is_empty() && self.mime_types.is_empty() {
            return true;
        }
        let mime = info.content_type.split(';').next().unwrap_or("").trim();
        self.paths.is_match(&info.path)
            || self
                .mime_types
                .iter()
                .any(|pattern| mime_matches(pattern, mime))
    }
}

fn mime_matches(pattern: &str, mime: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(kind) => mime
            .split_once('/')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case(kind)),
        None => pattern.eq_ignore_ascii_case(mime),
    }
}

#[derive(Default)]
struct Registry {
    /// Highest priority first, then by name.
    plugins: Vec<Arc<LoadedPlugin>>,
    /// Load errors by file, shown to admins.
    errors: BTreeMap<PathBuf, String>,
    /// What each file looked like when last examined.
    seen: HashMap<PathBuf, (SystemTime, u64)>,
    /// Call statistics by plugin name; they survive reloads.
    stats: HashMap<String, Arc<Stats>>,
}

/// The plugin host shared by all requests.
pub struct PluginHost {
    runtime: Runtime,
    dir: PathBuf,
    settings: BTreeMap<String, Arc<str>>,
    registry: RwLock<Registry>,
    slots: tokio::sync::Semaphore,
}

/// How a hook call ended, for the caller to act on.
pub type CallResult<T> = Result<T, PluginError>;

impl PluginHost {
    pub fn new(config: &PluginsConfig) -> anyhow::Result<Arc<Self>> {
        let runtime = Runtime::new(Limits {
            memory: config.memory_limit as usize,
            timeout: Duration::from_millis(config.timeout_ms),
            output: config.max_output as usize,
        })?;
        let settings = config
            .settings
            .iter()
            .map(|(name, table)| {
                let json = serde_json::to_string(table).unwrap_or_else(|_| "{}".into());
                (name.clone(), Arc::<str>::from(json))
            })
            .collect();
        Ok(Arc::new(Self {
            runtime,
            dir: PathBuf::from(&config.dir),
            settings,
            registry: RwLock::new(Registry::default()),
            slots: tokio::sync::Semaphore::new(runtime::MAX_CONCURRENT_CALLS as usize),
        }))
    }

    /// Loads one file outside the watched directory (CLI).
    pub fn load_file(&self, path: &Path) -> anyhow::Result<Arc<LoadedPlugin>> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        self.load_bytes(path, &bytes).map(Arc::new)
    }

    fn load_bytes(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<LoadedPlugin> {
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!("not a WebAssembly file");
        }
        let component = self
            .runtime
            .compile(bytes)
            .map_err(|e| anyhow::anyhow!("not a loadable WebAssembly component: {e}"))?;
        check_interface_version(&self.runtime.engine, &component)?;
        let pre = self
            .runtime
            .prepare(&component)
            .map_err(|e| anyhow::anyhow!("cannot be linked against this host: {e:#}"))?;
        let file_name: Arc<str> = path
            .file_name()
            .map(|n| n.to_string_lossy().into())
            .unwrap_or_else(|| "plugin".into());
        let manifest = self
            .runtime
            .call(&pre, &file_name, &Arc::from("{}"), |store, plugin| {
                plugin.pd2_plugin_guest().call_describe(store)
            })
            .map_err(|e| anyhow::anyhow!("describe() failed: {e}"))?;
        let build = hex::encode(Sha256::digest(bytes))[..16].to_owned();
        self.accept_manifest(manifest, path, build, pre)
    }

    fn accept_manifest(
        &self,
        m: runtime::Manifest,
        path: &Path,
        build: String,
        pre: PluginPre<CallState>,
    ) -> anyhow::Result<LoadedPlugin> {
        let valid_name = !m.name.is_empty()
            && m.name.len() <= 64
            && m.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        anyhow::ensure!(
            valid_name,
            "manifest name {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
            m.name
        );
        anyhow::ensure!(!m.hooks.is_empty(), "manifest lists no hooks");
        let mut globs = GlobSetBuilder::new();
        for pattern in &m.matchers.paths {
            // A glob without a folder matches the file name anywhere.
            let full = if pattern.contains('/') {
                pattern.clone()
            } else {
                format!("**/{pattern}")
            };
            let glob = GlobBuilder::new(&full)
                .literal_separator(true)
                .build()
                .map_err(|e| anyhow::anyhow!("invalid path glob {pattern:?}: {e}"))?;
            globs.add(glob);
        }
        for pattern in &m.matchers.mime_types {
            let ok = pattern
                .split_once('/')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !a.contains('*'));
            anyhow::ensure!(ok, "invalid MIME pattern {pattern:?}");
        }
        let hooks: Vec<&'static str> = m
            .hooks
            .iter()
            .map(|h| match h {
                Hook::ValidateFile => "validate-file",
                Hook::ValidateTicket => "validate-ticket",
                Hook::Render => "render",
            })
            .collect();
        let settings = self
            .settings
            .get(&m.name)
            .cloned()
            .unwrap_or_else(|| Arc::from("{}"));
        Ok(LoadedPlugin {
            name: Arc::from(m.name.as_str()),
            manifest: ManifestInfo {
                name: m.name,
                version: m.version,
                description: m.description,
                hooks,
                matchers: MatchersInfo {
                    paths: m.matchers.paths,
                    mime_types: m.matchers.mime_types.clone(),
                },
                priority: m.priority,
            },
            file: path.to_path_buf(),
            build,
            hooks: m.hooks,
            paths: globs.build()?,
            mime_types: m.matchers.mime_types,
            pre,
            settings,
        })
    }

    /// Brings the loaded set in line with the directory: new and changed
    /// `.wasm` files are (re)loaded, removed ones unloaded. A file that fails
    /// to load is reported and skipped; an older working build of it stays.
    pub fn sync(&self) {
        let mut found: HashMap<PathBuf, (SystemTime, u64)> = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                    continue;
                }
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    found.insert(path, (modified, meta.len()));
                }
            }
        }
        let (changed, removed): (Vec<PathBuf>, Vec<PathBuf>) = {
            let registry = self.read();
            let changed = found
                .iter()
                .filter(|(path, stamp)| registry.seen.get(*path) != Some(stamp))
                .map(|(path, _)| path.clone())
                .collect();
            let removed = registry
                .seen
                .keys()
                .filter(|p| !found.contains_key(*p))
                .cloned()
                .collect();
            (changed, removed)
        };
        if changed.is_empty() && removed.is_empty() {
            return;
        }
        // Compile outside the lock: requests keep using the current set.
        let mut loaded = Vec::new();
        for path in &changed {
            let result = std::fs::read(path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| self.load_bytes(path, &bytes));
            loaded.push((path.clone(), result));
        }

        let mut registry = self.write();
        for path in &removed {
            registry.seen.remove(path);
            registry.errors.remove(path);
            if let Some(p) = registry.plugins.iter().find(|p| &p.file == path) {
                tracing::info!(plugin = p.name(), file = %path.display(), "plugin unloaded");
            }
            registry.plugins.retain(|p| &p.file != path);
        }
        for (path, result) in loaded {
            registry.seen.insert(path.clone(), found[&path]);
            let plugin = match result {
                Ok(plugin) => plugin,
                Err(error) => {
                    tracing::error!(file = %path.display(), "plugin not loaded: {error:#}");
                    registry.errors.insert(path, format!("{error:#}"));
                    continue;
                }
            };
            let clash = registry
                .plugins
                .iter()
                .find(|p| p.name() == plugin.name() && p.file != path)
                .map(|p| p.file.display().to_string());
            if let Some(other) = clash {
                let error = format!("plugin name {:?} is already used by {other}", plugin.name());
                tracing::error!(file = %path.display(), "plugin not loaded: {error}");
                registry.errors.insert(path, error);
                continue;
            }
            tracing::info!(
                plugin = plugin.name(),
                version = %plugin.manifest.version,
                build = %plugin.build,
                file = %path.display(),
                "plugin loaded"
            );
            registry.errors.remove(&path);
            registry.stats.entry(plugin.name().to_owned()).or_default();
            registry.plugins.retain(|p| p.file != path);
            registry.plugins.push(Arc::new(plugin));
        }
        registry.plugins.sort_by(|a, b| {
            b.manifest
                .priority
                .cmp(&a.manifest.priority)
                .then(a.name().cmp(b.name()))
        });
    }

    /// Re-syncs with the directory every `interval` on a thread of its own.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let host = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || {
                while let Some(host) = host.upgrade() {
                    host.sync();
                    drop(host);
                    std::thread::sleep(interval);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot watch the plugin directory; hot reload is off");
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        self.read().plugins.clone()
    }

    pub fn load_errors(&self) -> BTreeMap<PathBuf, String> {
        self.read().errors.clone()
    }

    pub fn stats(&self, name: &str) -> Arc<Stats> {
        self.read().stats.get(name).cloned().unwrap_or_default()
    }

    /// Plugins implementing `hook` that want this file, in priority order.
    pub fn matching(&self, hook: Hook, info: &FileInfo) -> Vec<Arc<LoadedPlugin>> {
        self.read()
            .plugins
            .iter()
            .filter(|p| p.has(hook) && p.matches(info))
            .cloned()
            .collect()
    }

    /// Plugins implementing `validate-ticket`.
    pub fn ticket_validators(&self) -> Vec<Arc<LoadedPlugin>> {
        self.read()
            .plugins
            .iter()
            .filter(|p| p.has(Hook::ValidateTicket))
            .cloned()
            .collect()
    }

    pub async fn validate_file(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Verdict> {
        self.run(plugin, "validate-file", move |rt, p| {
            p.call_validate_file(rt, info, source)
        })
        .await
    }

    pub async fn validate_ticket(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        files: Vec<FileInfo>,
    ) -> CallResult<Verdict> {
        self.run(plugin, "validate-ticket", move |rt, p| {
            p.call_validate_ticket(rt, files)
        })
        .await
    }

    pub async fn render(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Option<Preview>> {
        self.run(plugin, "render", move |rt, p| {
            p.call_render(rt, info, source)
        })
        .await
    }

    /// Runs a call on the blocking pool (never on the reactor), bounded by
    /// the call slots, and records its statistics and failures.
    async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        plugin: &Arc<LoadedPlugin>,
        hook: &'static str,
        call: impl FnOnce(&Runtime, &LoadedPlugin) -> CallResult<R> + Send + 'static,
    ) -> CallResult<R> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| PluginError::Host("plugin host is shutting down".into()))?;
        let stats = self.stats(plugin.name());
        let started = Instant::now();
        let runtime = self.runtime.clone();
        let loaded = plugin.clone();
        let result = tokio::task::spawn_blocking(move || call(&runtime, &loaded))
            .await
            .unwrap_or_else(|e| Err(PluginError::Host(format!("call panicked: {e}"))));
        let elapsed = started.elapsed();
        crate::telemetry::metrics().plugin_call(plugin.name(), hook, elapsed, result.is_err());
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats
            .total_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if let Err(error) = &result {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(plugin = plugin.name(), build = %plugin.build, "plugin call failed: {error}");
        }
        result
    }

    /// The hooks run synchronously (CLI, benchmarks): no async runtime.
    pub fn render_blocking(
        &self,
        plugin: &LoadedPlugin,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Option<Preview>> {
        plugin.call_render(&self.runtime, info, source)
    }

    pub fn validate_file_blocking(
        &self,
        plugin: &LoadedPlugin,
        info: FileInfo,
        source: Arc<dyn FileSource>,
    ) -> CallResult<Verdict> {
        plugin.call_validate_file(&self.runtime, info, source)
    }

    pub fn validate_ticket_blocking(
        &self,
        plugin: &LoadedPlugin,
        files: Vec<FileInfo>,
    ) -> CallResult<Verdict> {
        plugin.call_validate_ticket(&self.runtime, files)
    }

    /// Replaces the settings a loaded plugin sees (CLI `--settings`).
    pub fn with_settings(plugin: &LoadedPlugin, settings_json: String) -> LoadedPlugin {
        LoadedPlugin {
            settings: Arc::from(settings_json),
            ..plugin.clone()
        }
    }
}

/// Refuses components built against another major version of the
/// interface, naming both versions.
fn check_interface_version(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> anyhow::Result<()> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .chain(ty.exports(engine).map(|(name, _)| name.to_owned()))
        .collect();
    let prefix = format!("{INTERFACE_PACKAGE}/");
    let mut versions: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once('@').map(|(_, v)| v))
        .collect();
    versions.sort();
    versions.dedup();
    let accepted = format!("{INTERFACE_PACKAGE}@{INTERFACE_MAJOR}.x");
    if versions.is_empty() {
        anyhow::bail!("not a PD2 Ticket plugin: it does not use {accepted}");
    }
    for version in versions {
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok());
        if major != Some(INTERFACE_MAJOR) {
            anyhow::bail!(
                "built against {INTERFACE_PACKAGE}@{version}; this host accepts {accepted} \
                 (rebuild it with pd2-plugin-sdk {INTERFACE_MAJOR}.x)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mime_matches;

    #[test]
    fn mime_patterns() {
        assert!(mime_matches("image/*", "image/png"));
        assert!(mime_matches("text/markdown", "text/markdown"));
        assert!(!mime_matches("image/*", "text/plain"));
        assert!(!mime_matches("text/markdown", "text/x-markdown"));
    }
}
