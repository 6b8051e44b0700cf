//! Which plugins serve: the files of the plugin directory, kept in sync
//! with it, and the one rule that turns files into named plugins.
//!
//! **One name, one plugin.** A name (compared case-insensitively) claimed by
//! more than one file is a conflict: none of the claimants serves, whatever
//! order the files were loaded in, and validation that one of them would
//! have done fails closed (see [`Registry::contested`]). The conflict clears
//! by itself when all but one file are gone. Claimants stay compiled, so
//! the survivor serves at once.
//!
//! That holds for the files found at start. Once the server runs, a new
//! file claiming the name of a plugin that serves is refused instead (an
//! admin copying a plugin in must not take a working one down with it):
//! the running plugin keeps serving, the new file is reported as a load
//! error, and it is examined again when a file of the directory goes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use super::{
    LoadedPlugin, Stats,
    load::Loader,
    runtime::{FileInfo, Hook},
};

/// What a file looked like when last examined: modification time, size.
type Stamp = (SystemTime, u64);

#[derive(Default)]
pub struct Registry {
    /// Every file that loaded, serving or contested.
    by_file: BTreeMap<PathBuf, Arc<LoadedPlugin>>,
    /// Serving: one plugin per name, highest priority first, then by name.
    active: Vec<Arc<LoadedPlugin>>,
    /// Names claimed by more than one file, with their claimants.
    conflicts: BTreeMap<String, Vec<Arc<LoadedPlugin>>>,
    /// Load errors by file, shown to admins.
    errors: BTreeMap<PathBuf, String>,
    seen: HashMap<PathBuf, Stamp>,
    /// Call statistics by plugin name; they survive reloads.
    stats: HashMap<String, Arc<Stats>>,
    /// The first sync is done: from now on a new file may not claim the
    /// name of a plugin that serves.
    started: bool,
    /// Files refused for a name another file serves.
    refused: BTreeSet<PathBuf>,
}

/// A name claimed by more than one file.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub name: String,
    pub files: Vec<PathBuf>,
}

impl Conflict {
    fn of(name: &str, claimants: &[Arc<LoadedPlugin>]) -> Self {
        Self {
            name: name.to_owned(),
            files: claimants.iter().map(|p| p.file.clone()).collect(),
        }
    }

    pub fn describe(&self) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        format!(
            "plugin name {:?} is claimed by {}; none of them runs until only one is left",
            self.name,
            files.join(" and ")
        )
    }
}

impl Registry {
    pub fn active(&self) -> &[Arc<LoadedPlugin>] {
        &self.active
    }

    pub fn errors(&self) -> &BTreeMap<PathBuf, String> {
        &self.errors
    }

    pub fn conflicts(&self) -> Vec<Conflict> {
        self.conflicts
            .iter()
            .map(|(name, claimants)| Conflict::of(name, claimants))
            .collect()
    }

    pub fn stats(&self, name: &str) -> Option<Arc<Stats>> {
        self.stats.get(name).cloned()
    }

    /// A conflict whose claimants include a `hook` implementation that
    /// wants this file (or, for `validate-ticket`, any upload): the caller
    /// must fail closed rather than skip a check that one of them owes.
    pub fn contested(&self, hook: Hook, info: Option<&FileInfo>) -> Option<Conflict> {
        self.conflicts
            .iter()
            .find(|(_, claimants)| {
                claimants
                    .iter()
                    .any(|p| p.has(hook) && info.is_none_or(|i| p.matches(i)))
            })
            .map(|(name, claimants)| Conflict::of(name, claimants))
    }

    fn is_claimed(&self, name: &str) -> bool {
        self.by_file
            .values()
            .any(|p| p.name().eq_ignore_ascii_case(name))
    }

    fn remove(&mut self, path: &Path) {
        self.seen.remove(path);
        self.errors.remove(path);
        // The name a refused file wanted may be free now: examine them
        // again.
        self.refused.remove(path);
        for refused in &self.refused {
            self.seen.remove(refused);
        }
        if let Some(p) = self.by_file.remove(path) {
            tracing::info!(plugin = p.name(), file = %path.display(), "plugin unloaded");
        }
    }

    fn apply(
        &mut self,
        path: PathBuf,
        stamp: Stamp,
        result: anyhow::Result<LoadedPlugin>,
        loader: &Loader,
    ) {
        self.seen.insert(path.clone(), stamp);
        self.refused.remove(&path);
        match result {
            Ok(plugin) if self.started && !self.by_file.contains_key(&path) => {
                match self.serving(plugin.name()) {
                    Some(other) => self.refuse(path, &plugin, &other),
                    None => self.accept(path, plugin, loader),
                }
            }
            Ok(plugin) => self.accept(path, plugin, loader),
            // An older working build of the file keeps serving.
            Err(error) => {
                let error = format!("{error:#}");
                tracing::error!(file = %path.display(), "plugin not loaded: {error}");
                self.errors.insert(path, error);
            }
        }
    }

    /// The file of the plugin serving under `name`, if one does.
    fn serving(&self, name: &str) -> Option<PathBuf> {
        self.active
            .iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .map(|p| p.file.clone())
    }

    fn refuse(&mut self, path: PathBuf, plugin: &LoadedPlugin, serving: &Path) {
        let error = format!(
            "plugin name {:?} is already served by {}; this file is not loaded while that one \
             runs (rename the plugin, or replace that file)",
            plugin.name(),
            serving
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        tracing::error!(file = %path.display(), "plugin not loaded: {error}");
        self.errors.insert(path.clone(), error);
        self.refused.insert(path);
    }

    fn accept(&mut self, path: PathBuf, plugin: LoadedPlugin, loader: &Loader) {
        let stats = self
            .stats
            .entry(plugin.name().to_owned())
            .or_insert_with(|| Arc::new(Stats::new(loader.log_rate())))
            .clone();
        let plugin = plugin.with_logs(stats.logs.clone());
        tracing::info!(
            plugin = plugin.name(),
            version = %super::text::bounded(&plugin.manifest.version, 64),
            build = %plugin.build,
            file = %path.display(),
            "plugin loaded"
        );
        self.errors.remove(&path);
        self.by_file.insert(path, Arc::new(plugin));
    }

    /// Recomputes who serves from the loaded files alone, so the outcome
    /// never depends on the order they were loaded in.
    fn settle(&mut self) {
        let mut by_name: BTreeMap<String, Vec<Arc<LoadedPlugin>>> = BTreeMap::new();
        for plugin in self.by_file.values() {
            by_name
                .entry(plugin.name().to_ascii_lowercase())
                .or_default()
                .push(plugin.clone());
        }
        let before: BTreeSet<String> = self.conflicts.keys().cloned().collect();
        self.active.clear();
        self.conflicts.clear();
        for (name, mut claimants) in by_name {
            if claimants.len() == 1 {
                self.active.extend(claimants.pop());
            } else {
                self.conflicts.insert(name, claimants);
            }
        }
        for conflict in self.conflicts() {
            if !before.contains(&conflict.name) {
                tracing::error!(plugin = %conflict.name, "plugin name conflict: {}", conflict.describe());
            }
        }
        for name in before {
            if !self.conflicts.contains_key(&name) {
                tracing::info!(plugin = %name, "plugin name conflict resolved");
            }
        }
        self.active.sort_by(|a, b| {
            b.manifest
                .priority
                .cmp(&a.manifest.priority)
                .then(a.name().cmp(b.name()))
        });
    }
}

/// Most files compiled at once; each compile is itself parallel.
pub const MAX_PARALLEL_LOADS: usize = 4;

/// Brings the registry in line with `dir`: new and changed `.wasm` files
/// are (re)loaded, removed ones unloaded. Files compile in parallel, and
/// each result takes effect as soon as it is ready, so one slow compile
/// never holds back another plugin's reload; plugins already loaded keep
/// serving throughout. A plugin whose name nothing claims yet waits for
/// the whole round, though: it might turn out to share its name with a
/// file still compiling, and must not serve even briefly in that case.
pub fn sync(dir: &Path, loader: &Loader, registry: &RwLock<Registry>) {
    let found = scan(dir);
    let (changed, removed): (Vec<PathBuf>, Vec<PathBuf>) = {
        let registry = read(registry);
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
    {
        let mut registry = write(registry);
        for path in &removed {
            registry.remove(path);
        }
        // A refused file examined again is not in `seen`: if it went
        // meanwhile, its report goes too.
        registry.errors.retain(|path, _| found.contains_key(path));
        registry.refused.retain(|path| found.contains_key(path));
        registry.settle();
    }
    let workers = MAX_PARALLEL_LOADS.min(changed.len());
    let pending = std::sync::atomic::AtomicUsize::new(changed.len());
    let queue = Mutex::new(changed);
    let held_back = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                // The guard goes with the closure: the queue is not held
                // while a file compiles.
                while let Some(path) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    let stamp = found[&path];
                    let result = std::fs::read(&path)
                        .map_err(anyhow::Error::from)
                        .and_then(|bytes| loader.load(&path, &bytes));
                    let left = pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) - 1;
                    let mut registry = write(registry);
                    let new_name = result
                        .as_ref()
                        .is_ok_and(|p| !registry.is_claimed(p.name()));
                    if new_name && left > 0 {
                        if let Ok(mut held) = held_back.lock() {
                            held.push((path, stamp, result));
                        }
                        continue;
                    }
                    registry.apply(path, stamp, result, loader);
                    registry.settle();
                }
            });
        }
    });
    let mut registry = write(registry);
    for (path, stamp, result) in held_back.into_inner().unwrap_or_default() {
        registry.apply(path, stamp, result, loader);
    }
    registry.settle();
    registry.started = true;
}

/// The `.wasm` files of `dir` with their stamps.
fn scan(dir: &Path) -> HashMap<PathBuf, Stamp> {
    let mut found = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
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
    found
}

pub fn read(registry: &RwLock<Registry>) -> std::sync::RwLockReadGuard<'_, Registry> {
    registry.read().unwrap_or_else(|p| p.into_inner())
}

fn write(registry: &RwLock<Registry>) -> std::sync::RwLockWriteGuard<'_, Registry> {
    registry.write().unwrap_or_else(|p| p.into_inner())
}
