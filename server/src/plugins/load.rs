//! Turning a `.wasm` file into a [`LoadedPlugin`]: compile (or take the
//! compiled code from the on-disk cache), check the interface version, ask
//! for the manifest and hold it to the documented bounds. Nothing here
//! touches the registry: a file is judged on its own.

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{
    logs::LogRate,
    runtime::{
        self, CallState, FileInfo, Hook, INTERFACE_PACKAGE, Identity, PluginPre, Runtime,
        interface_major,
    },
    text,
};

/// Manifest bounds. They are part of the interface (plugin authors build
/// against them), so they are constants, documented in both READMEs.
pub const MAX_NAME: usize = 64;
pub const MAX_VERSION: usize = 64;
pub const MAX_DESCRIPTION: usize = 1000;
/// Path globs and MIME patterns together.
pub const MAX_MATCHERS: usize = 128;
pub const MAX_PATTERN: usize = 200;
pub const PRIORITIES: std::ops::RangeInclusive<i32> = -1000..=1000;
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
    pub(super) pre: PluginPre<CallState>,
    pub(super) identity: Identity,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// The settings table this plugin sees, as JSON.
    pub fn settings_json(&self) -> &str {
        &self.identity.settings
    }

    pub fn has(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook)
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

    /// The same build with other settings (CLI `--settings`).
    pub fn with_settings(&self, settings_json: String) -> LoadedPlugin {
        let mut plugin = self.clone();
        plugin.identity.settings = Arc::from(settings_json);
        plugin
    }

    /// The same build sharing `logs` (its name's rate, kept across reloads).
    pub(super) fn with_logs(mut self, logs: Arc<LogRate>) -> LoadedPlugin {
        self.identity.logs = logs;
        self
    }
}

pub(super) fn mime_matches(pattern: &str, mime: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(kind) => mime
            .split_once('/')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case(kind)),
        None => pattern.eq_ignore_ascii_case(mime),
    }
}

/// Loads plugin files: the runtime, each name's settings, and the
/// compile cache.
pub struct Loader {
    pub(super) runtime: Runtime,
    settings: std::collections::BTreeMap<String, Arc<str>>,
    cache: Option<PathBuf>,
    log_lines_per_minute: u32,
    /// Components taken from the cache / compiled, since last asked.
    from_cache: AtomicUsize,
    compiled: AtomicUsize,
}

impl Loader {
    pub fn new(
        runtime: Runtime,
        settings: std::collections::BTreeMap<String, Arc<str>>,
        cache: Option<PathBuf>,
        log_lines_per_minute: u32,
    ) -> Self {
        if let Some(dir) = &cache {
            prepare_cache_dir(dir);
        }
        Self {
            runtime,
            settings,
            cache,
            log_lines_per_minute,
            from_cache: AtomicUsize::new(0),
            compiled: AtomicUsize::new(0),
        }
    }

    /// How many components came from the cache and how many were compiled
    /// since the last call.
    pub fn take_counts(&self) -> (usize, usize) {
        (
            self.from_cache.swap(0, Ordering::Relaxed),
            self.compiled.swap(0, Ordering::Relaxed),
        )
    }

    pub fn log_rate(&self) -> Arc<LogRate> {
        Arc::new(LogRate::new(self.log_lines_per_minute))
    }

    pub fn load(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<LoadedPlugin> {
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!("not a WebAssembly file");
        }
        let digest = Sha256::digest(bytes);
        let component = self.compile(bytes, &digest)?;
        check_interface_version(&self.runtime.engine, &component)?;
        let pre = self
            .runtime
            .prepare(&component)
            .map_err(|e| anyhow::anyhow!("cannot be linked against this host: {e:#}"))?;
        let file_name: Arc<str> = path
            .file_name()
            .map(|n| n.to_string_lossy().into())
            .unwrap_or_else(|| "plugin".into());
        let describing = Identity {
            name: file_name,
            settings: Arc::from("{}"),
            logs: self.log_rate(),
        };
        let manifest = self
            .runtime
            .call(&pre, &describing, |store, plugin| {
                plugin.pd2_plugin_guest().call_describe(store)
            })
            .map_err(|e| anyhow::anyhow!("describe() failed: {e}"))?;
        let build = hex::encode(digest)[..16].to_owned();
        self.accept(manifest, path, build, pre)
    }

    /// The compiled component: from the cache when this exact file was
    /// compiled before by an engine with the same configuration, else
    /// compiled now (and cached).
    fn compile(&self, bytes: &[u8], digest: &[u8]) -> anyhow::Result<Component> {
        let compile = || {
            self.runtime
                .compile(bytes)
                .map_err(|e| anyhow::anyhow!("not a loadable WebAssembly component: {e}"))
        };
        let Some(dir) = &self.cache else {
            self.compiled.fetch_add(1, Ordering::Relaxed);
            return compile();
        };
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.runtime
            .engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let key = format!("{}-{:016x}", hex::encode(digest), engine_hash.finish());
        let cached = dir.join(format!("{key}.cwasm"));
        if cached.is_file() {
            let started = Instant::now();
            // SAFETY: the cache holds only what this server serialized
            // (`plugins.cache_dir` must be writable by the server alone; the
            // README says so), keyed by the source's hash and the engine's
            // configuration; wasmtime checks the header and version.
            match unsafe { Component::deserialize_file(&self.runtime.engine, &cached) } {
                Ok(component) => {
                    self.from_cache.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(file = %cached.display(), elapsed = ?started.elapsed(), "compiled plugin taken from the cache");
                    return Ok(component);
                }
                Err(error) => {
                    tracing::warn!(file = %cached.display(), "ignoring an unusable compile cache entry: {error:#}");
                }
            }
        }
        let component = compile()?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        match component.serialize() {
            Ok(compiled) => {
                // Written whole under another name first: a reader never
                // sees half a file.
                let partial = dir.join(format!("{key}.{}.partial", std::process::id()));
                let written = std::fs::write(&partial, compiled)
                    .and_then(|()| std::fs::rename(&partial, &cached));
                if let Err(error) = written {
                    let _ = std::fs::remove_file(&partial);
                    tracing::warn!(dir = %dir.display(), %error, "cannot write the plugin compile cache");
                }
            }
            Err(error) => tracing::warn!("cannot serialize a compiled plugin: {error:#}"),
        }
        Ok(component)
    }

    fn accept(
        &self,
        m: runtime::Manifest,
        path: &Path,
        build: String,
        pre: PluginPre<CallState>,
    ) -> anyhow::Result<LoadedPlugin> {
        check_manifest(&m)?;
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
        let mut hooks = m.hooks.clone();
        hooks.dedup();
        let hook_names = hooks.iter().copied().map(hook_name).collect();
        let settings = self
            .settings
            .get(&m.name)
            .cloned()
            .unwrap_or_else(|| Arc::from("{}"));
        Ok(LoadedPlugin {
            identity: Identity {
                name: Arc::from(m.name.as_str()),
                settings,
                logs: self.log_rate(),
            },
            manifest: ManifestInfo {
                name: m.name,
                version: m.version,
                description: m.description,
                hooks: hook_names,
                matchers: MatchersInfo {
                    paths: m.matchers.paths,
                    mime_types: m.matchers.mime_types.clone(),
                },
                priority: m.priority,
            },
            file: path.to_path_buf(),
            build,
            hooks,
            paths: globs.build()?,
            mime_types: m.matchers.mime_types,
            pre,
        })
    }
}

/// Holds a manifest to the documented bounds; the error says which one.
fn check_manifest(m: &runtime::Manifest) -> anyhow::Result<()> {
    let shown = |s: &str| text::bounded(s, 80);
    let valid_name = !m.name.is_empty()
        && m.name.len() <= MAX_NAME
        && m.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    anyhow::ensure!(
        valid_name,
        "manifest name {:?} must be 1-{MAX_NAME} characters of a-z, 0-9, '-' or '_'",
        shown(&m.name)
    );
    for (field, value, max) in [
        ("version", &m.version, MAX_VERSION),
        ("description", &m.description, MAX_DESCRIPTION),
    ] {
        anyhow::ensure!(
            value.chars().count() <= max,
            "manifest {field} is {}; at most {max} characters",
            text::describe_len(value)
        );
    }
    anyhow::ensure!(!m.hooks.is_empty(), "manifest lists no hooks");
    let matchers = m.matchers.paths.len() + m.matchers.mime_types.len();
    anyhow::ensure!(
        matchers <= MAX_MATCHERS,
        "manifest declares {matchers} matchers; at most {MAX_MATCHERS}"
    );
    for pattern in m.matchers.paths.iter().chain(&m.matchers.mime_types) {
        anyhow::ensure!(
            pattern.chars().count() <= MAX_PATTERN,
            "matcher {:?} is {}; at most {MAX_PATTERN} characters",
            shown(pattern),
            text::describe_len(pattern)
        );
    }
    for pattern in &m.matchers.mime_types {
        let ok = pattern
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !a.contains('*'));
        anyhow::ensure!(ok, "invalid MIME pattern {:?}", shown(pattern));
    }
    anyhow::ensure!(
        PRIORITIES.contains(&m.priority),
        "manifest priority {} is outside {}..={}",
        m.priority,
        PRIORITIES.start(),
        PRIORITIES.end()
    );
    Ok(())
}

/// Creates the cache folder readable by the server's user alone: it holds
/// native code.
fn prepare_cache_dir(dir: &Path) {
    if let Err(error) = std::fs::create_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %error, "cannot create the plugin compile cache; plugins compile on every start");
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
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
    let host_major = interface_major();
    let accepted = format!("{INTERFACE_PACKAGE}@{host_major}.x");
    if versions.is_empty() {
        anyhow::bail!(
            "not a PD2 Ticket plugin: it does not use {accepted} (a plugin crate exports \
             itself with `pd2_plugin_sdk::export_plugin!(YourPlugin);`, has \
             `crate-type = [\"cdylib\"]`, and is built with `--target wasm32-wasip2`)"
        );
    }
    for version in versions {
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok());
        if major != Some(host_major) {
            anyhow::bail!(
                "built against {INTERFACE_PACKAGE}@{version}; this host accepts {accepted} \
                 (rebuild it with pd2-plugin-sdk {host_major}.x)"
            );
        }
    }
    Ok(())
}

/// A hook as `plugin check`, `GET /plugins` and the command line name it.
pub fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::ValidateFile => "validate-file",
        Hook::ValidateTicket => "validate-ticket",
        Hook::Render => "render",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_patterns() {
        assert!(mime_matches("image/*", "image/png"));
        assert!(mime_matches("text/markdown", "text/markdown"));
        assert!(!mime_matches("image/*", "text/plain"));
        assert!(!mime_matches("text/markdown", "text/x-markdown"));
    }

    fn manifest() -> runtime::Manifest {
        runtime::Manifest {
            name: "ok-name_1".into(),
            version: "1.0.0".into(),
            description: "fine".into(),
            hooks: vec![Hook::Render],
            matchers: runtime::Matchers {
                paths: vec!["*.txt".into()],
                mime_types: vec!["text/*".into()],
            },
            priority: 0,
        }
    }

    #[test]
    fn manifests_are_held_to_their_bounds() {
        assert!(check_manifest(&manifest()).is_ok());
        let refused = |change: fn(&mut runtime::Manifest)| {
            let mut m = manifest();
            change(&mut m);
            format!("{:#}", check_manifest(&m).expect_err("refused"))
        };
        assert!(refused(|m| m.name = "File-Policy".into()).contains("a-z, 0-9"));
        assert!(refused(|m| m.name = "x".repeat(65)).contains("1-64"));
        let long = refused(|m| m.description = "d".repeat(30 << 20));
        assert!(
            long.contains("description is 31457280 characters; at most 1000"),
            "{long}"
        );
        assert!(long.len() < 200, "the error does not echo it");
        assert!(refused(|m| m.matchers.paths = vec!["*".into(); 129]).contains("at most 128"));
        assert!(refused(|m| m.matchers.paths = vec!["a".repeat(201)]).contains("at most 200"));
        assert!(refused(|m| m.priority = i32::MAX).contains("outside -1000..=1000"));
        assert!(refused(|m| m.hooks.clear()).contains("no hooks"));
    }
}
