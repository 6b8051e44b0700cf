//! `pd2-ticket plugin check|render|validate`: try a plugin on local files,
//! without MongoDB or a running server.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    config::Config,
    plugins::{
        FileInfo, FileSource, Hook, LoadedPlugin, MemorySource, PluginHost, TicketFiles, Verdict,
        bounded_text,
    },
    ticket::content_type_for,
};

/// The "ticket" of a local render: the files under the folder the input's
/// ticket path is relative to, so `plugin render docs/README.md` inlines
/// `docs/shot.png` the way the server would.
struct LocalTicket {
    root: PathBuf,
}

/// Larger files are not opened for a local render (the server's are
/// bounded by the upload limits).
const MAX_LOCAL_FILE: u64 = 64 * 1024 * 1024;

impl TicketFiles for LocalTicket {
    fn open(&self, path: &str) -> Option<(FileInfo, Arc<dyn FileSource>)> {
        if !crate::ticket::is_legal_path(path) {
            return None;
        }
        let file = self.root.join(path);
        if std::fs::metadata(&file).ok()?.len() > MAX_LOCAL_FILE {
            return None;
        }
        let bytes = std::fs::read(file).ok()?;
        let info = FileInfo {
            path: path.to_owned(),
            content_type: content_type_for(path),
            size: bytes.len() as u64,
        };
        Some((info, Arc::new(MemorySource(bytes))))
    }
}

/// Loads the plugin, or explains why it cannot be used.
fn load(
    config: &Config,
    file: &Path,
    settings: Option<&str>,
) -> anyhow::Result<(Arc<PluginHost>, LoadedPlugin)> {
    // No compile cache for one-off runs: nothing is written where the
    // command happens to run.
    let mut plugins = config.plugins.clone();
    plugins.cache_dir.clear();
    let host = PluginHost::new(&plugins, crate::service::previews::policy::check_type)?;
    let plugin = host
        .load_file(file)
        .map_err(|e| anyhow::anyhow!("{} cannot be used: {e:#}", file.display()))?;
    let plugin = match settings {
        None => LoadedPlugin::clone(&plugin),
        Some(arg) => plugin.with_settings(settings_json(arg)?),
    };
    Ok((host, plugin))
}

/// `--settings` names a TOML file or is inline TOML (`'max_files = 3'`).
fn settings_json(arg: &str) -> anyhow::Result<String> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) => arg.to_owned(),
    };
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--settings is not a TOML table: {e}"))?;
    Ok(serde_json::to_string(&table)?)
}

/// A local file as the plugin sees it, and the folder its ticket path is
/// relative to (where `open-file` looks for the rest of the "ticket").
///
/// With `--ticket DIR`, DIR is the ticket: the input must be inside it, and
/// its ticket path is its path below DIR (`plugin render x.wasm
/// ~/hw/docs/README.md --ticket ~/hw` renders `docs/README.md`, whose
/// `../src/Main.java` is `~/hw/src/Main.java`). Without it, a relative
/// input path is the ticket path and the current folder the ticket; any
/// other input (absolute, or with `..`) is named by its file name alone,
/// in a ticket that is its folder.
fn input(
    path: &Path,
    ticket: Option<&Path>,
) -> anyhow::Result<(FileInfo, Arc<MemorySource>, PathBuf)> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let (name, root) = match ticket {
        Some(dir) => {
            let full = |p: &Path| {
                std::fs::canonicalize(p)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
            };
            let (file, root) = (full(path)?, full(dir)?);
            let inside = file.strip_prefix(&root).map_err(|_| {
                anyhow::anyhow!(
                    "{} is not inside --ticket {}",
                    path.display(),
                    dir.display()
                )
            })?;
            let name = inside
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            anyhow::ensure!(
                crate::ticket::is_legal_path(&name),
                "{name:?} is not a path a ticket may hold"
            );
            (name, root)
        }
        None => {
            // Plugins see ticket paths: relative, `/`-separated.
            let given = path.to_string_lossy().replace('\\', "/");
            let given = given.trim_start_matches("./");
            if crate::ticket::is_legal_path(given) {
                (given.to_owned(), PathBuf::from("."))
            } else {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| given.to_owned());
                let root = path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (name, root)
            }
        }
    };
    let info = FileInfo {
        content_type: content_type_for(&name),
        path: name,
        size: bytes.len() as u64,
    };
    Ok((info, Arc::new(MemorySource(bytes)), root))
}

/// Prints the plugin's manifest; warns (and fails) when a plugin of the
/// same name already serves from `dir` (default: `plugins.dir`), since the
/// server would refuse the new file while that one runs.
pub fn check(config: &Config, file: &Path, dir: Option<&Path>) -> anyhow::Result<()> {
    let (host, plugin) = load(config, file, None)?;
    let dir = dir.map_or_else(|| PathBuf::from(&config.plugins.dir), Path::to_path_buf);
    let taken = name_taken(&host, &plugin, file, &dir);
    let m = &plugin.manifest;
    println!("name:        {}", m.name);
    println!("version:     {}", m.version);
    println!("description: {}", m.description);
    println!("hooks:       {}", m.hooks.join(", "));
    println!("paths:       {}", m.matchers.paths.join(" "));
    println!("mime types:  {}", m.matchers.mime_types.join(" "));
    println!("priority:    {}", m.priority);
    println!("build:       {}", plugin.build);
    if let Some(other) = taken {
        anyhow::bail!(
            "the name {:?} is taken: {} in {} is a plugin of that name. Added beside it, \
             this file would be refused while that one runs (and, were both there at \
             start, neither would run). Rename the plugin, or replace that file.",
            plugin.name(),
            other.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Another file of `dir` (not `file` itself) that loads as a plugin of the
/// same name, compared as the server compares names.
fn name_taken(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    file: &Path,
    dir: &Path,
) -> Option<PathBuf> {
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && !same(p, file))
        .collect();
    files.sort();
    files.into_iter().find(|other| {
        host.load_file(other)
            .is_ok_and(|p| p.name().eq_ignore_ascii_case(plugin.name()))
    })
}

/// Writes the preview to stdout and its content type to stderr.
pub fn render(
    config: &Config,
    file: &Path,
    input_path: &Path,
    ticket: Option<&Path>,
    settings: Option<&str>,
) -> anyhow::Result<()> {
    let (host, plugin) = load(config, file, settings)?;
    anyhow::ensure!(
        plugin.has(Hook::Render),
        "{} does not render previews",
        plugin.name()
    );
    let (info, source, root) = input(input_path, ticket)?;
    let ticket: Arc<dyn TicketFiles> = Arc::new(LocalTicket { root });
    if !plugin.matches(&info) {
        eprintln!(
            "note: {} does not match {} (rendering anyway)",
            plugin.name(),
            info.path
        );
    }
    match host.render_blocking(&plugin, info, source, Some(ticket)) {
        Ok(Some(preview)) => {
            eprintln!("{}", preview.content_type);
            use std::io::Write;
            std::io::stdout().write_all(&preview.body)?;
            Ok(())
        }
        Ok(None) => anyhow::bail!(
            "{} declined to render {}",
            plugin.name(),
            input_path.display()
        ),
        Err(e) => anyhow::bail!("{} failed: {e}", plugin.name()),
    }
}

/// Runs the file hook on each matching input, then the ticket hook on all;
/// exits non-zero when anything is rejected.
pub fn validate(
    config: &Config,
    file: &Path,
    inputs: &[std::path::PathBuf],
    ticket: Option<&Path>,
    settings: Option<&str>,
) -> anyhow::Result<()> {
    let (host, plugin) = load(config, file, settings)?;
    let mut infos = Vec::new();
    let mut rejected = 0;
    for path in inputs {
        let (info, source, _) = input(path, ticket)?;
        infos.push(info.clone());
        if !plugin.has(Hook::ValidateFile) || !plugin.matches(&info) {
            continue;
        }
        match host.validate_file_blocking(&plugin, info.clone(), source) {
            Ok(Verdict::Accept) => println!("accept  {}", info.path),
            Ok(Verdict::Reject(message)) => {
                rejected += 1;
                println!("reject  {}: {}", info.path, bounded_text(&message, 2000));
            }
            Err(e) => anyhow::bail!("{} failed on {}: {e}", plugin.name(), info.path),
        }
    }
    if plugin.has(Hook::ValidateTicket) {
        match host.validate_ticket_blocking(&plugin, infos) {
            Ok(Verdict::Accept) => println!("accept  (ticket)"),
            Ok(Verdict::Reject(message)) => {
                rejected += 1;
                println!("reject  (ticket): {}", bounded_text(&message, 2000));
            }
            Err(e) => anyhow::bail!("{} failed on the ticket: {e}", plugin.name()),
        }
    }
    anyhow::ensure!(rejected == 0, "{rejected} rejection(s)");
    Ok(())
}

/// A hook `plugin bench` can time, as named on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchHook {
    Render,
    ValidateFile,
    ValidateTicket,
}

impl From<BenchHook> for Hook {
    fn from(hook: BenchHook) -> Self {
        match hook {
            BenchHook::Render => Hook::Render,
            BenchHook::ValidateFile => Hook::ValidateFile,
            BenchHook::ValidateTicket => Hook::ValidateTicket,
        }
    }
}

/// Calls one hook of the plugin on `input` repeatedly, each call on a
/// fresh instance, and prints the latency distribution. The hook is
/// `chosen`, or the plugin's `render`, else `validate-file`, else
/// `validate-ticket` (an earlier version took `validate-ticket` first, and
/// "benched" a plugin whose renderer panics at 23 µs). Every call must
/// succeed: a failing hook fails the benchmark.
pub fn bench(
    config: &Config,
    file: &Path,
    input_path: &Path,
    ticket: Option<&Path>,
    iterations: usize,
    chosen: Option<BenchHook>,
) -> anyhow::Result<()> {
    let (host, plugin) = load(config, file, None)?;
    let (info, source, root) = input(input_path, ticket)?;
    let ticket: Arc<dyn TicketFiles> = Arc::new(LocalTicket { root });
    let hook = match chosen.map(Hook::from) {
        Some(hook) if plugin.has(hook) => hook,
        Some(hook) => anyhow::bail!(
            "{} does not implement {} (it implements: {})",
            plugin.name(),
            crate::plugins::hook_name(hook),
            plugin.manifest.hooks.join(", ")
        ),
        None => [Hook::Render, Hook::ValidateFile, Hook::ValidateTicket]
            .into_iter()
            .find(|h| plugin.has(*h))
            .ok_or_else(|| anyhow::anyhow!("{} implements no hook", plugin.name()))?,
    };
    let call = {
        let (host, plugin) = (host.clone(), plugin.clone());
        move || match hook {
            Hook::ValidateTicket => host
                .validate_ticket_blocking(&plugin, vec![info.clone()])
                .is_ok(),
            Hook::ValidateFile => host
                .validate_file_blocking(&plugin, info.clone(), source.clone())
                .is_ok(),
            Hook::Render => host
                .render_blocking(&plugin, info.clone(), source.clone(), Some(ticket.clone()))
                .is_ok(),
        }
    };
    let iterations = iterations.max(1);
    let mut direct = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = std::time::Instant::now();
        let ok = call();
        direct.push(started.elapsed());
        anyhow::ensure!(ok, "{} failed during the benchmark", plugin.name());
    }
    // The same calls the way the server makes them: from an async task,
    // each on tokio's blocking pool. The difference is the price of the
    // synchronous host inside an async server.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let call = std::sync::Arc::new(call);
    let pooled: Vec<std::time::Duration> = runtime.block_on(async {
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let call = call.clone();
            let started = std::time::Instant::now();
            let _ = tokio::task::spawn_blocking(move || call()).await;
            times.push(started.elapsed());
        }
        times
    });
    for (how, mut times) in [("direct", direct), ("via the blocking pool", pooled)] {
        times.sort();
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "{} {} ({how}): {} calls, median {:.1} µs, p99 {:.1} µs",
            plugin.name(),
            crate::plugins::hook_name(hook),
            times.len(),
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6
        );
    }
    Ok(())
}
