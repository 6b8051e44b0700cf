//! `pd2-ticket`: the PD2 Ticket server and its operator tools.

// Layers, top to bottom: `server` (composition root) → `api` (HTTP:
// routes, the one error mapping) → `service` (what the server does:
// access, tickets, uploads, validation, previews; `service::Context`, the
// parts built once at start, which every service and handler is given as
// `ctx`) → `auth` → `store` (with the janitor), `plugins` → `config`,
// `telemetry`, `ticket`.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod auth;
mod config;
mod http;
mod plugin_cli;
mod plugins;
/// The SDK's HTML escaping, the renderers' own, compiled from the SDK's
/// source: the server does not depend on the SDK (see `build.rs`).
#[path = "../../plugin-sdk/src/html.rs"]
#[allow(dead_code)]
mod sdk_html;
mod server;
mod service;
mod store;
mod telemetry;
mod ticket;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{auth::DisplayData, config::Config, service::Context};

#[derive(Parser)]
#[command(
    name = "pd2-ticket",
    version,
    about = "Share code between students and teaching assistants"
)]
struct Cli {
    /// Configuration file (default: ./config.toml).
    #[arg(long, global = true, env = "PD2_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
    /// Print a signed JWT for a user (created if missing), for scripts,
    /// API consumers and demos without Discord. Only the token goes to stdout.
    Token {
        /// Discord user id.
        #[arg(long)]
        user_id: String,
        /// Username for a user that does not exist yet.
        #[arg(long)]
        username: Option<String>,
        /// How long the token is valid, in days.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Try a plugin on local files (no database needed).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a plugin and print its manifest; fails with the reason it
    /// cannot be used, or when a plugin of its name already serves from
    /// DIR (default: `plugins.dir`).
    Check {
        file: PathBuf,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Render INPUT: the preview goes to stdout, its content type to stderr.
    Render {
        file: PathBuf,
        input: PathBuf,
        /// The folder that is the ticket: INPUT's ticket path is its path
        /// below it, and `open_file` reads the other files there (default:
        /// a relative INPUT is its own ticket path in the current folder).
        #[arg(long, value_name = "DIR")]
        ticket: Option<PathBuf>,
        /// Settings as a TOML file or inline TOML (default: the config's
        /// `[plugins.settings.<name>]`).
        #[arg(long)]
        settings: Option<String>,
    },
    /// Time one hook on INPUT: a fresh instance per call (instantiate, call,
    /// drop), as the server runs it. Prints median and p99.
    Bench {
        file: PathBuf,
        input: PathBuf,
        /// The folder that is the ticket (see `render --ticket`).
        #[arg(long, value_name = "DIR")]
        ticket: Option<PathBuf>,
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
        /// The hook to time; by default the plugin's `render`, else
        /// `validate-file`, else `validate-ticket`.
        #[arg(long, value_enum)]
        hook: Option<plugin_cli::BenchHook>,
    },
    /// Validate INPUT files as one upload; exits 1 on any rejection.
    Validate {
        file: PathBuf,
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The folder that is the ticket (see `render --ticket`).
        #[arg(long, value_name = "DIR")]
        ticket: Option<PathBuf>,
        #[arg(long)]
        settings: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pd2-ticket: {error:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(config.server.log_format);
    if let Command::Plugin { command } = &cli.command {
        let result = match command {
            PluginCommand::Check { file, dir } => plugin_cli::check(&config, file, dir.as_deref()),
            PluginCommand::Render {
                file,
                input,
                ticket,
                settings,
            } => plugin_cli::render(&config, file, input, ticket.as_deref(), settings.as_deref()),
            PluginCommand::Bench {
                file,
                input,
                ticket,
                iterations,
                hook,
            } => plugin_cli::bench(&config, file, input, ticket.as_deref(), *iterations, *hook),
            PluginCommand::Validate {
                file,
                inputs,
                ticket,
                settings,
            } => plugin_cli::validate(
                &config,
                file,
                inputs,
                ticket.as_deref(),
                settings.as_deref(),
            ),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("pd2-ticket: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("pd2-ticket: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => server::serve(Context::new(config).await?).await,
            Command::Token {
                user_id,
                username,
                days,
            } => print_token(config, &user_id, username.as_deref(), days).await,
            Command::Plugin { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pd2-ticket: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn print_token(
    config: Config,
    user_id: &str,
    username: Option<&str>,
    days: u32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !user_id.is_empty() && user_id != "@me",
        "--user-id must be a Discord user id"
    );
    let ctx = Context::new(config).await?;
    let signed = async {
        let user = ctx.store.users.ensure(user_id, username).await?;
        let display = DisplayData::new(&user.profile, ctx.is_admin(user_id));
        ctx.tokens
            .issue(display, i64::from(days) * 24 * 60 * 60)
            .await
            .map_err(|e| anyhow::anyhow!("cannot sign the token: {e}"))
    }
    .await;
    ctx.store.shutdown().await;
    println!("{}", signed?);
    Ok(())
}

/// The layering described at the top of this file (and in CONTRIBUTING.md's
/// Layout section), checked on the sources: a module may only use modules
/// of a lower layer, so there are no cycles between them.
#[cfg(test)]
mod layers {
    use std::{collections::BTreeSet, path::Path};

    /// Top-level modules by layer, highest first.
    const LAYERS: &[&[&str]] = &[
        &["main"],
        &["server", "plugin_cli"],
        &["api"],
        &["http"],
        &["service"],
        &["auth"],
        &["store", "plugins"],
        &["telemetry"],
        &["config", "ticket", "sdk_html"],
    ];

    fn rank(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// The top-level modules a source file names through `crate::`.
    fn uses(source: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let code: String = source
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                // Names at the first level of a `use crate::{...}` list.
                let (mut depth, mut name, mut expecting) = (0, String::new(), true);
                for c in list.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            if !name.is_empty() {
                                found.insert(std::mem::take(&mut name));
                            }
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => expecting = true,
                        c if expecting && (c.is_ascii_alphanumeric() || c == '_') => name.push(c),
                        _ if expecting && !name.is_empty() => {
                            found.insert(std::mem::take(&mut name));
                            expecting = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
        found
    }

    fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                visit(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }

    #[test]
    fn modules_only_use_lower_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        visit(&src, &mut files);
        let mut wrong = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).expect("under src");
            let top = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|s| s.trim_end_matches(".rs").to_owned())
                .expect("a module");
            let Some(mine) = rank(&top) else {
                wrong.push(format!("{top}: not in LAYERS"));
                continue;
            };
            // The top may use anything (and this test names `crate::`).
            if mine == 0 {
                continue;
            }
            let source = std::fs::read_to_string(file).expect("source");
            // Below the HTTP layers nothing knows HTTP's types: the
            // service, the store and the plugin host serve the CLI and the
            // bench as they are.
            if rank("http").is_some_and(|http| mine > http)
                && (source.contains("warp::") || source.contains("use warp"))
            {
                wrong.push(format!("{} uses warp", relative.display()));
            }
            for used in uses(&source) {
                if used == top {
                    continue;
                }
                match rank(&used) {
                    Some(theirs) if theirs > mine => {}
                    _ => wrong.push(format!("{} uses crate::{used}", relative.display())),
                }
            }
        }
        assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
        // The checker itself sees `use crate::{...}` lists.
        assert_eq!(
            uses("use crate::{a::b, c::{d, e}, f};"),
            ["a", "c", "f"].iter().map(|s| s.to_string()).collect()
        );
    }
}
