//! Configuration: parsed once at start into typed structs.
//!
//! Sources, later ones winning: built-in defaults, the TOML file
//! (`./config.toml` or `--config PATH`), then `PD2_*` environment variables
//! with `__` for nesting (`PD2_MONGODB__URI`). Unknown keys are errors so a
//! typo never silently falls back to a default.

use std::{collections::BTreeMap, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub discord: DiscordConfig,
    pub mongodb: MongoConfig,
    pub limits: LimitsConfig,
    pub plugins: PluginsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub cors_origins: Vec<String>,
    /// `plain` (human readable) or `json` (one object per line).
    pub log_format: LogFormat,
    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// before the process exits anyway.
    pub shutdown_grace_secs: u64,
    /// A client must send a complete request head within this many seconds
    /// of connecting, or of the first byte of a later request on the same
    /// connection (slow-header clients are cut off).
    pub header_read_timeout_secs: u64,
    /// An idle kept-alive connection is closed after this many seconds.
    pub keep_alive_secs: u64,
    /// Open client connections at most; beyond it the server stops
    /// accepting until one closes (clients wait in the listen queue).
    pub max_connections: usize,
    /// The address people reach the server (and its web app) at, such as
    /// `https://tickets.example.edu`: the links in Discord messages and the
    /// address `pd2 login` shows. Empty: a device is shown the address it
    /// used itself, and messages link to `discord.redirect_uri`.
    pub public_url: String,
    /// Behind a reverse proxy: the header it puts the client's address in
    /// (`X-Real-IP`), read for per-client limits and shown when a terminal
    /// asks to sign in. Empty: the connection's own address. Set it only
    /// behind a proxy that overwrites the header (a client could send it).
    pub client_ip_header: String,
}

impl ServerConfig {
    /// `public_url` without its trailing `/`; `None` when unset.
    pub fn public_base(&self) -> Option<&str> {
        Some(self.public_url.trim_end_matches('/')).filter(|b| !b.is_empty())
    }
    pub fn header_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.header_read_timeout_secs.max(1))
    }
    pub fn keep_alive(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.keep_alive_secs.max(1))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            cors_origins: Vec::new(),
            log_format: LogFormat::Plain,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 10,
            keep_alive_secs: 30,
            max_connections: 4096,
            public_url: String::new(),
            client_ip_header: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Empty: generated once and stored in MongoDB, shared by every instance.
    pub jwt_secret: String,
    /// How long after it expired a token may still be refreshed: a token
    /// left on a shared machine must not live forever.
    pub refresh_window_days: u64,
    /// A device's token (`pd2 login`) is valid this long, and renewed for
    /// as long again by `PUT /oauth` while its device stays signed in.
    pub device_token_days: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            refresh_window_days: 14,
            device_token_days: 30,
        }
    }
}

impl AuthConfig {
    /// The refresh window in seconds.
    pub fn refresh_window_secs(&self) -> i64 {
        i64::try_from(self.refresh_window_days.saturating_mul(86_400)).unwrap_or(i64::MAX)
    }

    /// A device token's lifetime in seconds (one day to a year).
    pub fn device_token_secs(&self) -> i64 {
        self.device_token_days.clamp(1, 365) as i64 * 86_400
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// Discord user ids with admin rights, checked at request time.
    pub admins: Vec<String>,
    pub api_base: String,
    /// Discord's sign-in page, where the web app sends the browser.
    pub authorize_url: String,
    /// Budget for each call to Discord (token exchange, user lookup).
    pub timeout_ms: u64,
    /// A bot's token: with it, new comments and versions are also sent as
    /// Discord direct messages (empty: notifications in the app only).
    pub bot_token: String,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: String::new(),
            redirect_uri: String::new(),
            admins: Vec::new(),
            api_base: "https://discord.com/api/v10".into(),
            authorize_url: "https://discord.com/oauth2/authorize".into(),
            timeout_ms: 10_000,
            bot_token: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoConfig {
    pub uri: String,
    pub database: String,
    /// Longest a request waits for one database operation (a free
    /// connection, a usable server and the answer together) before it
    /// answers 503. Once the health check has confirmed an outage, requests
    /// fail at once instead.
    pub timeout_ms: u64,
    /// Connections per instance, and database operations running at once.
    pub max_pool_size: u32,
}

impl MongoConfig {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.max(1))
    }
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            uri: "mongodb://127.0.0.1:27017".into(),
            database: "pd2-ticket".into(),
            timeout_ms: 2_000,
            max_pool_size: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_file_size: u64,
    pub max_ticket_size: u64,
    pub max_files: usize,
    /// Seconds an upload may go without receiving a byte before it is cut
    /// off with 408. It also paces the upload journal (see `janitor`).
    pub upload_idle_secs: u64,
    /// Bytes all uploads in flight may hold together; each holds one share
    /// (see `service::upload_memory`) and waits for it past this.
    pub upload_memory: u64,
    /// Uploads one user may have in flight or waiting for a share at once.
    pub uploads_per_user: usize,
}

impl LimitsConfig {
    pub fn upload_idle(&self) -> Duration {
        Duration::from_secs(self.upload_idle_secs)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_file_size: 1024 * 1024,
            max_ticket_size: 50 * 1024 * 1024,
            max_files: 200,
            upload_idle_secs: 60,
            upload_memory: 256 * 1024 * 1024,
            uploads_per_user: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    pub dir: String,
    /// Bytes of memory one call may use.
    pub memory_limit: u64,
    pub timeout_ms: u64,
    pub max_output: u64,
    /// Bytes all concurrent calls together may use (each reserves its
    /// limits before it starts); a quarter is kept for validators.
    pub memory_budget: u64,
    /// Time for validating one whole upload, all validators together.
    pub upload_timeout_ms: u64,
    /// Cold previews one requester may have rendering at once.
    pub previews_per_user: u32,
    /// How long a failed render is not tried again.
    pub failed_render_cache_secs: u64,
    /// Longest rejection message a validator may return, in characters.
    pub max_message_chars: u32,
    /// Rejections listed in one `422`; the rest are counted.
    pub max_messages: u32,
    pub log_lines_per_call: u32,
    pub log_lines_per_minute: u32,
    /// Compiled plugins, kept across restarts; empty turns the cache off.
    /// Holds native code: only the server's user may write there.
    pub cache_dir: String,
    /// Bytes of rendered previews kept in the database; the oldest go first.
    pub preview_cache_max_bytes: u64,
    /// Previews of a build no longer loaded are kept this many days (for a
    /// rollback), then removed.
    pub preview_cache_days: u64,
    /// `[plugins.settings.<name>]`: handed verbatim to the plugin of that name.
    pub settings: BTreeMap<String, toml::Table>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: "plugins/dist".into(),
            memory_limit: 64 * 1024 * 1024,
            timeout_ms: 2_000,
            max_output: 8 * 1024 * 1024,
            memory_budget: 1024 * 1024 * 1024,
            upload_timeout_ms: 10_000,
            previews_per_user: 4,
            failed_render_cache_secs: 30,
            max_message_chars: 500,
            max_messages: 20,
            log_lines_per_call: 100,
            log_lines_per_minute: 600,
            cache_dir: "plugin-cache".into(),
            preview_cache_max_bytes: 1024 * 1024 * 1024,
            preview_cache_days: 7,
            settings: BTreeMap::new(),
        }
    }
}

/// Environment variables with this prefix override the file.
const ENV_PREFIX: &str = "PD2_";

impl Config {
    /// Loads and validates the configuration. The error names the offending
    /// key and where its value came from.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if path.exists() {
            figment = figment.merge(Toml::file_exact(path));
        } else if path != Path::new(DEFAULT_PATH) {
            // An explicitly named file that is missing is a mistake, not a default.
            anyhow::bail!("config file {} does not exist", path.display());
        }
        // PD2_CONFIG names the file itself; it is not a key. PD2_SERVER
        // and PD2_TOKEN are the `pd2` command line's (a student's shell may
        // run both); neither could ever be a key here (`server` is a table).
        let env = Env::prefixed(ENV_PREFIX)
            .split("__")
            .ignore(&["config", "server", "token"]);
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| anyhow::anyhow!(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let p = &self.plugins;
        let checks: [(&str, bool); 15] = [
            ("limits.max_file_size", self.limits.max_file_size > 0),
            ("limits.max_ticket_size", self.limits.max_ticket_size > 0),
            ("limits.max_files", self.limits.max_files > 0),
            ("limits.upload_idle_secs", self.limits.upload_idle_secs > 0),
            ("limits.uploads_per_user", self.limits.uploads_per_user > 0),
            ("mongodb.database", !self.mongodb.database.is_empty()),
            ("mongodb.timeout_ms", self.mongodb.timeout_ms > 0),
            ("plugins.memory_limit", p.memory_limit > 0),
            ("plugins.timeout_ms", p.timeout_ms > 0),
            ("plugins.max_output", p.max_output > 0),
            ("plugins.upload_timeout_ms", p.upload_timeout_ms > 0),
            ("plugins.previews_per_user", p.previews_per_user > 0),
            ("plugins.max_message_chars", p.max_message_chars > 0),
            ("plugins.max_messages", p.max_messages > 0),
            ("plugins.memory_budget", p.memory_budget > 0),
        ];
        for (key, ok) in checks {
            anyhow::ensure!(
                ok,
                "invalid configuration: `{key}` must be non-zero / non-empty"
            );
        }
        // One validator and one renderer must fit, or nothing ever runs.
        let validator = p.memory_limit;
        let renderer = p.memory_limit.saturating_add(p.max_output);
        anyhow::ensure!(
            p.memory_budget / 4 >= validator && p.memory_budget - p.memory_budget / 4 >= renderer,
            "invalid configuration: `plugins.memory_budget` ({}) must hold one validator call \
             (a quarter of it >= plugins.memory_limit) and one renderer call (the rest >= \
             plugins.memory_limit + plugins.max_output)",
            p.memory_budget
        );
        if !p.cache_dir.is_empty() {
            // The cache holds native code: whoever may drop plugins must not
            // be able to write it.
            let cache =
                std::path::absolute(&p.cache_dir).unwrap_or_else(|_| p.cache_dir.clone().into());
            let dir = std::path::absolute(&p.dir).unwrap_or_else(|_| p.dir.clone().into());
            anyhow::ensure!(
                !cache.starts_with(&dir),
                "invalid configuration: `plugins.cache_dir` must not be inside `plugins.dir`: \
                 it holds compiled native code, which whoever drops plugins must not be able to write"
            );
        }
        Ok(())
    }
}

pub const DEFAULT_PATH: &str = "config.toml";

/// figment reports one error per problem; show all of them, each with its key.
fn describe(error: figment::Error) -> String {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("invalid configuration: {}{source}", e.kind)
            } else {
                format!("invalid configuration at `{key}`: {}{source}", e.kind)
            }
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> anyhow::Result<Config> {
        let dir = std::env::temp_dir().join(format!("pd2-config-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("c.toml");
        std::fs::write(&path, toml)?;
        Config::load(&path)
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str("[server]\nprot = 1\n").unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        assert!(err.contains("server"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = load_str("[limits]\nmax_file_size = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_file_size"), "{err}");
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        let err = load_str("[limits]\nupload_idle_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`limits.upload_idle_secs` must be non-zero"),
            "{err}"
        );
    }

    #[test]
    fn defaults_fill_missing_keys() {
        let c = load_str("[server]\nport = 9000\n").unwrap();
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.limits.max_file_size, 1024 * 1024);
        assert_eq!(c.discord.api_base, "https://discord.com/api/v10");
    }

    #[test]
    fn plugin_settings_are_free_form() {
        let c = load_str("[plugins.settings.file-policy]\nmax_files = 3\nallowed = [\"java\"]\n")
            .unwrap();
        assert_eq!(
            c.plugins.settings["file-policy"]["max_files"].as_integer(),
            Some(3)
        );
    }
}
