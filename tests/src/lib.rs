//! Black-box test support: the real `pd2-ticket` binary over HTTP, a real
//! MongoDB-compatible server (SecantusDB) over TCP, and a fake Discord.
//!
//! Each test process shares one database server (started here unless
//! `TEST_MONGODB_URI` names one); each [`Server`] gets a database of its own,
//! so tests run in parallel without seeing each other's data.

pub mod discord;
pub mod images;
pub mod multipart;
pub mod pd2;
pub mod proxy;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use mongodb::bson::{Document, doc};

/// Root of the workspace (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The server binary of the same profile as this test, built if stale.
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Another build to run the suite against (an older one, to see a
        // test fail without the fix it pins).
        if let Some(path) = std::env::var_os("TEST_SERVER_BIN") {
            return PathBuf::from(path);
        }
        workspace_binary("pd2-ticket", "pd2-ticket")
    })
}

/// The `pd2` command line of the same profile as this test, built if stale.
pub fn cli_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_binary("pd2", "pd2"))
}

/// Whether `./test.sh` built everything the suite runs (the binaries, the
/// plugins and the wasm fixtures) before starting it.
fn prebuilt() -> bool {
    std::env::var_os("TEST_PREBUILT").is_some()
}

/// Builds `bin` of `package` in this test's profile (quick when fresh)
/// and gives its path.
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests live in target/<profile>/deps/, binaries in target/<profile>/.
    let mut profile_dir = exe.parent().expect("exe has a folder").to_path_buf();
    if profile_dir.ends_with("deps") {
        profile_dir.pop();
    }
    // `./test.sh` built it with every target of the workspace. Building it
    // alone (`-p`) resolves features without the test targets' (tokio's
    // `test-util`, from the server's dev-dependencies), a different build
    // of tokio and of everything above it: on a fresh machine that was
    // ~150 s of CPU while the first tests waited.
    let built = profile_dir.join(bin);
    if prebuilt() && built.is_file() {
        return built;
    }
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => "dev".to_owned(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-q",
            "-p",
            package,
            "--bin",
            bin,
            "--profile",
            &profile,
        ])
        .current_dir(workspace_root());
    clean_cargo_env(&mut command);
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "building {bin} failed");
    profile_dir.join(bin)
}

/// `cargo test` exports per-package variables (CARGO_PKG_*, …) that build
/// scripts watch; passing them to a nested cargo would make it and the next
/// `cargo test` invalidate each other's builds every time.
pub fn clean_cargo_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let keep = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_JOBS"].contains(&key.as_ref());
        if (key.starts_with("CARGO_") && !keep) || key == "OUT_DIR" || key == "RUST_TEST_THREADS" {
            command.env_remove(key.as_ref());
        }
    }
}

/// The target dir of every plugin build of the suite (the first-party
/// plugins, the misbehaving fixtures, the SDK example, natively and for
/// wasm): one dir, so the dependencies they share (serde, the SDK, and the
/// host side of wit-bindgen's macros, wasmparser among them) are built once
/// per profile rather than once per workspace. `CARGO_TARGET_DIR` wins
/// when set (a shared CI cache).
pub fn plugin_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("plugins/target"))
}

/// Builds the plugins of a workspace with `plugins/build.sh` (once per
/// process) and returns the folder holding the `.wasm` files.
fn build_plugins(workspace: &str, dist: &str) -> PathBuf {
    let root = workspace_root();
    // `./test.sh` builds both sets before the suite: building again here
    // would only wait for the plugins' target dir, which its side job
    // (the plugins' native tests) holds for the first minute of a cold run.
    if prebuilt() {
        return root.join(dist);
    }
    let mut command = Command::new("bash");
    command
        .arg(root.join("plugins/build.sh"))
        .arg(root.join(workspace))
        .arg(root.join(dist))
        .env("CARGO_TARGET_DIR", plugin_target_dir())
        .current_dir(&root);
    clean_cargo_env(&mut command);
    let status = command.status().expect("run plugins/build.sh");
    assert!(
        status.success(),
        "building the plugins of {workspace} failed"
    );
    root.join(dist)
}

/// The first-party plugins, built (`plugins/dist`).
pub fn first_party_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_plugins("plugins", FIRST_PARTY_DIST))
}

/// Where `plugins/build.sh` puts the first-party plugins.
const FIRST_PARTY_DIST: &str = "plugins/dist";

/// The misbehaving test plugins, built (`tests/fixtures/dist`).
pub fn fixture_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_plugins("tests/fixtures", "tests/fixtures/dist"))
}

/// The compile cache the suite's servers share (`target/test-plugin-cache`).
pub fn shared_compile_cache() -> PathBuf {
    workspace_root().join("target/test-plugin-cache")
}

/// Has the first-party plugins compiled into the shared compile cache once,
/// by one server, before the first server that loads them starts: the
/// suite's first tests start together, and each server would otherwise
/// compile all of them at once, on the same cores (~50 s of CPU cold).
/// It uses the caller's database when it names one (the bench: no second
/// database started for it).
async fn warm_compile_cache(db_uri: Option<String>) {
    static WARM: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    WARM.get_or_init(|| async {
        let mut options =
            ServerOptions::default().env("PD2_PLUGINS__DIR", first_party_plugins().display());
        options.db_uri = db_uri;
        // Started, it has loaded them (`wait_ready`); dropped, it stops.
        drop(Box::pin(Server::start_unwarmed(options)).await);
    })
    .await;
}

/// A fresh plugin directory holding copies of the given `.wasm` files.
pub fn plugin_dir(files: &[&Path]) -> PathBuf {
    let dir = temp_dir("plugins");
    for file in files {
        std::fs::copy(file, dir.join(file.file_name().expect("file name"))).expect("copy plugin");
    }
    dir
}

/// The `secantusd-py` launcher: `SECANTUSD`, the project venv, or `PATH`.
pub fn secantusd() -> PathBuf {
    if let Ok(path) = std::env::var("SECANTUSD") {
        return path.into();
    }
    let venv = workspace_root().join(".venv/bin/secantusd-py");
    if venv.exists() {
        return venv;
    }
    "secantusd-py".into()
}

/// A SecantusDB process owned by the caller, killed on drop.
pub struct DbServer {
    child: Child,
    pub uri: String,
    pub port: u16,
    pub storage: PathBuf,
    /// Storage this value made (`start`), removed on drop: a bench run
    /// writes gigabytes, and a disk that fills takes the machine with it.
    owned: bool,
}

impl DbServer {
    /// Starts a database server on a free port with fresh storage, and waits
    /// until it accepts connections.
    pub fn start() -> Self {
        // Port 0: the kernel picks a port nobody holds, and the server's log
        // says which. Picking a "free" port here and passing it on would race
        // with every other test doing the same.
        let mut db = Self::start_at(0, temp_dir("db"));
        db.owned = true;
        db
    }

    /// Starts (or restarts) a server on the given port (0: any free one) and
    /// storage, and waits until it accepts connections.
    pub fn start_at(port: u16, storage: PathBuf) -> Self {
        let log_path = storage.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("db log file");
        let mut command = Command::new(secantusd());
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--storage-path",
            ])
            .arg(&storage)
            // INFO for the one "listening on" line; it logs little else.
            .args(["--log-level", "INFO"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        kill_with_parent(&mut command);
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run ./test.sh, or pip install SecantusDB)",
                secantusd().display()
            )
        });
        // Only our own process's log line proves that *it* got the port:
        // a connect could reach whoever else holds it.
        let start = Instant::now();
        let port = loop {
            if let Some(port) = listening_port(&mut child, &log_path, "listening on") {
                break port;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "database server not listening after 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            uri: format!("mongodb://127.0.0.1:{port}"),
            port,
            storage,
            owned: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Shuts the server down as an operator would (SIGTERM, so it flushes
    /// its storage), killing it if it takes more than 20 s.
    pub fn stop(mut self) -> (u16, PathBuf) {
        // The caller keeps the storage (to start again on it).
        self.owned = false;
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.storage.clone())
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.storage);
            let _ = std::fs::remove_file(self.storage.with_extension("log"));
        }
    }
}

/// The database server shared by every test of this process.
pub fn shared_db_uri() -> &'static str {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        if let Ok(uri) = std::env::var("TEST_MONGODB_URI") {
            return uri;
        }
        // Started on a thread that lives as long as the process, because the
        // child is tied to the lifetime of the thread that spawned it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let db = DbServer::start();
            tx.send(db.uri.clone()).expect("send uri");
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("database server started")
    })
}

/// Makes the child die with the thread that spawned it, so a test process
/// that crashes or is killed leaves no database server behind.
fn kill_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A new folder for one test's files (a server's working folder and log, a
/// student's project, a plugin folder), under `$TMPDIR/pd2-test-<pid>-<n>`:
/// every folder of a test process in one place. They stay after the
/// process ends, for a look at a failed run's server logs; the next test
/// process removes the folders of processes that are gone.
pub fn temp_dir(tag: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        use std::os::unix::fs::DirBuilderExt;
        remove_dead_runs_folders();
        // A new folder of ours alone (a random part, created, not taken
        // over: `/tmp` may be shared with other users).
        let root = std::env::temp_dir().join(format!(
            "pd2-test-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .expect("test folder");
        root
    });
    let dir = root.join(format!("{tag}-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Removes `$TMPDIR/pd2-test-<pid>-<n>` of every process no longer running
/// (on this machine: a `/tmp` shared between containers would need a
/// `TMPDIR` of each's own).
fn remove_dead_runs_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pd2-test-"))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, random)| u64::from_str_radix(random, 16).is_ok())
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The port `child` listens on: the first socket address on the first line
/// of its `log` that contains `marker` (plain or JSON logs alike); `None`
/// while there is no such line yet. Panics, with the log, if the child
/// exited instead.
fn listening_port(child: &mut Child, log: &Path, marker: &str) -> Option<u16> {
    if let Ok(Some(status)) = child.try_wait() {
        panic!(
            "{} exited ({status}) before listening; log:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(marker))?;
    line.split(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .find_map(|word| word.parse::<std::net::SocketAddr>().ok())
        .map(|addr| addr.port())
}

/// Polls `check` until it holds, failing with `what` after `limit`.
pub async fn eventually<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    check: impl Fn() -> F,
) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server for the bench and the soak: they drive one user from up to
/// 32 connections at once, which `limits.uploads_per_user` (4) refuses.
pub fn bench_options() -> ServerOptions {
    ServerOptions::default().env("PD2_LIMITS__UPLOADS_PER_USER", 1000)
}

/// How a test server is configured: environment overrides on top of a
/// fresh database and free port.
#[derive(Clone, Default)]
pub struct ServerOptions {
    pub env: Vec<(String, String)>,
    pub db_uri: Option<String>,
    pub database: Option<String>,
}

impl ServerOptions {
    /// What an operator runs: the repository's `config.toml` with the
    /// first-party plugins.
    pub fn shipped() -> Self {
        Self::default()
            .env("PD2_CONFIG", workspace_root().join("config.toml").display())
            .env("PD2_PLUGINS__DIR", first_party_plugins().display())
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }
    pub fn secret(self, secret: &str) -> Self {
        self.env("PD2_AUTH__JWT_SECRET", secret)
    }
    pub fn admins(self, ids: &[&str]) -> Self {
        self.env(
            "PD2_DISCORD__ADMINS",
            format!(
                "[{}]",
                ids.iter()
                    .map(|i| format!("\"{i}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        )
    }
    pub fn discord(self, base: &str) -> Self {
        self.env("PD2_DISCORD__API_BASE", base)
            .env("PD2_DISCORD__CLIENT_ID", "client-1")
            .env("PD2_DISCORD__CLIENT_SECRET", "secret-1")
            .env(
                "PD2_DISCORD__REDIRECT_URI",
                "http://localhost:3000/callback",
            )
            .env("PD2_DISCORD__TIMEOUT_MS", 1000)
    }
    /// Shares a database with another server (multi-instance tests).
    pub fn database(mut self, uri: &str, name: &str) -> Self {
        self.db_uri = Some(uri.to_owned());
        self.database = Some(name.to_owned());
        self
    }
}

/// The value a server given `env` sees for `key`: the last one set.
fn env_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A running `pd2-ticket serve`, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    pub port: u16,
    pub db_uri: String,
    pub database: String,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    pub http: reqwest::Client,
    pub start_times: StartTimes,
}

/// When a started server first answered, counted from its spawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartTimes {
    /// `/ping` answered.
    pub ping: Duration,
    /// `/health` stopped saying the plugins are `starting`.
    pub plugins: Duration,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        // Compared by path, not through `first_party_plugins()`, which
        // would build the plugins for servers that load none.
        if env_value(&options.env, "PD2_PLUGINS__DIR")
            .is_some_and(|dir| Path::new(dir) == workspace_root().join(FIRST_PARTY_DIST))
            && env_value(&options.env, "PD2_PLUGINS__CACHE_DIR").is_none()
        {
            warm_compile_cache(options.db_uri.clone()).await;
        }
        Self::start_unwarmed(options).await
    }

    async fn start_unwarmed(options: ServerOptions) -> Self {
        let db_uri = options
            .db_uri
            .clone()
            .unwrap_or_else(|| shared_db_uri().to_owned());
        let database = options
            .database
            .clone()
            .unwrap_or_else(|| format!("test-{:016x}", rand::random::<u64>()));
        let workdir = temp_dir("server");
        let mut env = vec![
            ("PD2_MONGODB__URI".to_owned(), db_uri.clone()),
            ("PD2_MONGODB__DATABASE".to_owned(), database.clone()),
            // Any free port; the log's "listening" line names it (see
            // `DbServer::start` for why not pick one here).
            ("PD2_SERVER__PORT".to_owned(), "0".to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
            // Compiled plugins shared by every server of the suite: only the
            // first to load a build compiles it.
            (
                "PD2_PLUGINS__CACHE_DIR".to_owned(),
                shared_compile_cache().display().to_string(),
            ),
        ];
        env.extend(options.env.iter().cloned());
        // Whatever level a test chooses, the "listening" line must be logged:
        // it is how the harness learns the port.
        let level = env_value(&env, "RUST_LOG").unwrap_or_default().to_owned();
        env.push((
            "RUST_LOG".to_owned(),
            // `app` is where older builds (TEST_SERVER_BIN) log it.
            format!("{level},pd2_ticket::server=info,pd2_ticket::app=info"),
        ));
        let log = workdir.join("server.log");
        let log_file = std::fs::File::create(&log).expect("server log");
        let mut command = Command::new(server_binary());
        command
            .arg("serve")
            // No config.toml in the working directory: defaults + env only.
            .current_dir(&workdir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file);
        let spawned = Instant::now();
        let mut child = command.spawn().expect("start pd2-ticket");
        let port = Self::wait_listening(&mut child, &log).await;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            db_uri,
            database,
            log,
            env,
            workdir,
            start_times: StartTimes::default(),
            http: http_client()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        };
        server.wait_ready(spawned).await;
        server
    }

    async fn wait_listening(child: &mut Child, log: &Path) -> u16 {
        let start = Instant::now();
        loop {
            if let Some(port) = listening_port(child, log, "listening") {
                return port;
            }
            // Generous for a debug build on a loaded machine.
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "server not listening after 120 s; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for `/ping`, then for the plugins present at start to load
    /// (`/health` stops saying `starting`): tests expect them in place.
    /// Records when each happened, counted from `spawned`.
    async fn wait_ready(&mut self, spawned: Instant) {
        let limit = Duration::from_secs(120);
        // Generous: without a compile cache the plugins compile now,
        // which takes long with a debug build on a loaded machine.
        let fail = |what: &str, server: &Self| -> ! {
            panic!("{what} after {limit:?}; log:\n{}", server.log_text())
        };
        loop {
            if let Ok(r) = self.http.get(self.url("/ping")).send().await
                && r.status() == 200
            {
                self.start_times.ping = spawned.elapsed();
                break;
            }
            if spawned.elapsed() > limit {
                fail("no answer to /ping", self);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        loop {
            if let Ok(r) = self.http.get(self.url("/health")).send().await
                && let Ok(health) = r.json::<serde_json::Value>().await
                && health["plugins"]["status"] != "starting"
            {
                self.start_times.plugins = spawned.elapsed();
                return;
            }
            if spawned.elapsed() > limit {
                fail("plugins still starting", self);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `pd2-ticket token` against this server's configuration.
    pub fn token(&self, user_id: &str) -> String {
        self.token_named(user_id, None)
    }

    pub fn token_named(&self, user_id: &str, username: Option<&str>) -> String {
        let mut args = vec!["token", "--user-id", user_id];
        if let Some(name) = username {
            args.extend(["--username", name]);
        }
        let out = self.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "token failed: {stderr}");
        // A run that worked has nothing to complain about (it once logged
        // a database outage as its client shut down).
        assert!(
            !stderr.contains("ERROR") && !stderr.contains("panicked"),
            "token logged an error: {stderr}"
        );
        String::from_utf8(out.stdout)
            .expect("utf-8 token")
            .trim()
            .to_owned()
    }

    /// Runs the binary with this server's environment and working directory.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(server_binary())
            .args(args)
            .current_dir(&self.workdir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run pd2-ticket")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.child.wait().expect("wait for server")
    }

    /// Kills the process outright (SIGKILL), as a crash or an OOM kill
    /// would: nothing of it gets to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// The exit status, once the process has exited; `None` while it runs
    /// after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Prometheus text of this server, read with an admin `token`.
    pub async fn metrics(&self, token: &str) -> String {
        let response = self.get("/metrics", token).send().await.expect("metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("metrics text")
    }

    /// A direct driver connection to this server's database, for checking
    /// what is (not) stored.
    pub async fn mongo(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.db_uri)
            .await
            .expect("mongo client")
            .database(&self.database)
    }

    pub async fn count(&self, collection: &str, filter: Document) -> u64 {
        self.mongo()
            .await
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .expect("count documents")
    }

    /// GridFS files and chunks stored, and ticket records.
    pub async fn stored(&self) -> Stored {
        Stored {
            tickets: self.count("tickets", doc! {}).await,
            files: self.count("files.files", doc! {}).await,
            chunks: self.count("files.chunks", doc! {}).await,
        }
    }

    /// Waits until nothing is stored (cleanup after a disconnect runs in the
    /// background), returning what is left after `limit`.
    pub async fn wait_until_empty(&self, limit: Duration) -> Stored {
        let start = Instant::now();
        loop {
            let stored = self.stored().await;
            if stored == Stored::default() || start.elapsed() > limit {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts that nothing at all is left within `limit`: no tickets, files
    /// or chunks, and no upload journal entry (removed last, after the bytes).
    pub async fn assert_nothing_left(&self, limit: Duration) {
        assert_eq!(self.wait_until_empty(limit).await, Stored::default());
        eventually("journal entry left", limit, || async {
            self.count("uploads", doc! {}).await == 0
        })
        .await;
    }

    /// `GET path` without a token.
    pub async fn get_anonymous(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(token)
    }

    pub fn post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(token)
    }

    pub fn put(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.put(self.url(path)).bearer_auth(token)
    }

    pub fn delete(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(token)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one sample (`name{labels}`, labels in the order the
/// exporter writes them: alphabetical) in Prometheus text; 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("numeric sample"))
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Stored {
    pub tickets: u64,
    pub files: u64,
    pub chunks: u64,
}

/// Uploads `files` as a ticket; returns the response.
pub async fn upload(
    server: &Server,
    token: &str,
    files: &[(&str, &[u8])],
    data: Option<&str>,
) -> reqwest::Response {
    post_form(server, "/ticket", token, files, data)
        .await
        .expect("upload request")
}

/// Posts `files` (and the `data` field) as an upload form to `path`: a
/// new ticket, or a version. An error when no answer came (the server
/// died).
pub async fn post_form(
    server: &Server,
    path: &str,
    token: &str,
    files: &[(&str, &[u8])],
    data: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string()),
        );
    }
    if let Some(data) = data {
        form = form.text("data", data.to_owned());
    }
    server.post(path, token).multipart(form).send().await
}

/// The ticket's zip through `GET …/download`, opened.
pub async fn download_zip(
    server: &Server,
    token: &str,
    id: &str,
) -> zip::ZipArchive<std::io::Cursor<Vec<u8>>> {
    let bytes = server
        .get(&format!("/ticket/@me/{id}/download"), token)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("zip bytes");
    zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip")
}

/// Uploads and returns the created ticket's JSON (asserting 201).
pub async fn create_ticket(
    server: &Server,
    token: &str,
    files: &[(&str, &[u8])],
    data: Option<&str>,
) -> serde_json::Value {
    let response = upload(server, token, files, data).await;
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("json body");
    assert_eq!(status, 201, "upload failed: {body}");
    body
}

/// `(status, body as JSON)` of a response.
pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
    (status, body)
}

/// Asserts `{"detail": detail}` with `status`.
pub async fn assert_error(response: reqwest::Response, status: u16, detail: &str) {
    let (got, body) = json(response).await;
    assert_eq!(
        (got, body["detail"].as_str()),
        (status, Some(detail)),
        "body: {body}"
    );
}

/// A line of `/proc/{pid}/status` in KiB (`VmRSS`, `VmHWM`, …); 0 when
/// there is none.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The largest file of a project (see [`project_files`]) whose name ends
/// with `suffix`.
pub fn largest<'a>(files: &'a [(String, Vec<u8>)], suffix: &str) -> &'a (String, Vec<u8>) {
    files
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .max_by_key(|(_, bytes)| bytes.len())
        .unwrap_or_else(|| panic!("no {suffix} file in the project"))
}

/// Every file of a project under `tests/fixtures/projects/NAME`, named
/// `NAME/...` as a browser names the files of a chosen folder, in a stable
/// order.
pub fn project_files(name: &str) -> Vec<(String, Vec<u8>)> {
    let base = workspace_root().join("tests/fixtures/projects");
    let mut out = Vec::new();
    let mut stack = vec![base.join(name)];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("fixture dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(&base)
                    .expect("under the fixtures")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((name, std::fs::read(&path).expect("fixture file")));
            }
        }
    }
    out.sort();
    out
}

/// An HTTP client builder: every client of the tests and the bench comes
/// from here, so the TLS provider (`ring`: the workspace builds reqwest
/// without aws-lc-rs) is installed first.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A token as the server signs them (HS256 with `secret`), for user `id`
/// (named `u{id}`), expiring `expires_in` seconds from now (negative:
/// already expired); issued ten seconds before `min(now, exp)`.
pub fn signed_token(secret: &str, id: &str, expires_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let exp = now + expires_in;
    let claims = serde_json::json!({
        "id": id, "username": format!("u{id}"), "global_name": null, "avatar": null,
        "is_admin": false, "display_name": format!("u{id}"),
        "display_avatar": "https://cdn.discordapp.com/embed/avatars/0.png",
        "exp": exp, "iat": now.min(exp) - 10,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a token")
}
