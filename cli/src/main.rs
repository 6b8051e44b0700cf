//! `pd2`: PD2 Ticket from the terminal (SPEC §8, docs/cli.md).

mod client;
mod commands;
mod credentials;
mod error;
mod login;
mod output;
mod text;
mod upload;

use std::{path::PathBuf, process::ExitCode};

use base64::Engine;
use clap::{Parser, Subcommand};
use reqwest::Method;

use client::Client;
use error::{CliError, Result};
use output::Output;
use text::TicketRef;

/// Share code with your TAs from the terminal: sign in with a code, upload
/// a folder as a ticket, read and download tickets.
#[derive(Parser)]
#[command(
    name = "pd2",
    version,
    about,
    after_help = "Exit codes: 0 done, 1 a local problem, 2 wrong usage, 3 not signed in or sign-in refused, 4 refused by the server (or by the check before sending), 5 server unreachable or unavailable.\nPD2_SERVER and PD2_TOKEN in the environment stand in for `pd2 login`."
)]
struct Cli {
    /// Print JSON on standard output (one document per result), for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// The server (`https://tickets.example.edu`); default: the one you
    /// signed in to, or PD2_SERVER.
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in: shows a code to approve in a browser, on any computer.
    Login,
    /// Sign this terminal out (its token stops working on the server too).
    Logout,
    /// Upload a folder (or files) as a new ticket, or as a new version of one.
    Upload {
        /// Folders or files (default: the current folder). A folder's files
        /// are named under its name (`lab1/src/Main.java`), as in the web app.
        paths: Vec<PathBuf>,
        /// Anyone signed in may read the ticket (default: you, TAs and admins).
        #[arg(long)]
        public: bool,
        /// A note for the readers.
        #[arg(long, value_name = "TEXT")]
        remark: Option<String>,
        /// Add the files as a new version of this ticket (id, USER/ID or link).
        #[arg(long, value_name = "TICKET")]
        to: Option<String>,
        /// Leave out files matching this glob too (repeatable: `--exclude '*.csv'`).
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// Include what is left out by default: .gitignore'd, hidden, build outputs.
        #[arg(long)]
        no_ignore: bool,
        /// List what would be sent, and send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Your tickets, newest first.
    List {
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// How many (at most 100).
        #[arg(long, default_value_t = 20)]
        length: u64,
    },
    /// A ticket's details and files.
    Show {
        /// Its id (yours), USER/ID, or its link.
        ticket: String,
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
    /// Download a ticket's files into a folder.
    Download {
        ticket: String,
        /// The folder (default: ./TICKET_ID).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
    /// The review comments on a ticket.
    Comments {
        ticket: String,
        /// Place the threads on this version (default: the newest).
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
}

fn main() -> ExitCode {
    text::init_local_offset();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pd2: error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let out = Output { json: cli.json };
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line says what failed; details (each refused file) may
            // follow it, indented.
            eprintln!("pd2: error: {}", output::terminal_safe(&e.message));
            e.exit_code()
        }
    }
}

async fn run(cli: Cli, out: &Output) -> Result<()> {
    match cli.command {
        Command::Login => {
            let server = cli
                .server
                .or_else(|| std::env::var("PD2_SERVER").ok().filter(|s| !s.is_empty()))
                .or(credentials::load().ok().flatten().map(|c| c.server))
                .or_else(credentials::last_server)
                .ok_or_else(|| {
                    CliError::local(
                        "which server? `pd2 login --server https://…` (the address of the web app)",
                    )
                })?;
            login::login(&server, out).await
        }
        Command::Logout => login::logout(out).await,
        Command::Upload {
            paths,
            public,
            remark,
            to,
            exclude,
            no_ignore,
            dry_run,
        } => {
            let to = to.as_deref().map(TicketRef::parse).transpose()?;
            let paths = if paths.is_empty() {
                vec![PathBuf::from(".")]
            } else {
                paths
            };
            let args = upload::UploadArgs {
                paths,
                public,
                remark,
                to,
                no_ignore,
                exclude,
            };
            if dry_run {
                // Listing needs no server; signed in, it is checked too.
                let client = session(cli.server).await.ok();
                return upload::dry_run(&args, client.as_ref(), out).await;
            }
            let client = session(cli.server).await?;
            upload::upload(&client, args, out).await
        }
        Command::List { offset, length } => {
            let client = session(cli.server).await?;
            commands::list(&client, offset, length.clamp(1, 100), out).await
        }
        Command::Show { ticket, version } => {
            let ticket = TicketRef::parse(&ticket)?;
            let client = session(cli.server).await?;
            commands::show(&client, &ticket, version, out).await
        }
        Command::Download {
            ticket,
            output,
            version,
            force,
        } => {
            let ticket = TicketRef::parse(&ticket)?;
            let client = session(cli.server).await?;
            commands::download(&client, &ticket, output, version, force, out).await
        }
        Command::Comments { ticket, version } => {
            let ticket = TicketRef::parse(&ticket)?;
            let client = session(cli.server).await?;
            commands::comments(&client, &ticket, version, out).await
        }
    }
}

/// A token renewed when it has less than this left.
const RENEW_BELOW_SECS: i64 = 7 * 24 * 60 * 60;

/// The signed-in client: PD2_TOKEN/PD2_SERVER, or the stored sign-in (its
/// token renewed when it is about to expire).
async fn session(server_flag: Option<String>) -> Result<Client> {
    let env_server = std::env::var("PD2_SERVER").ok().filter(|s| !s.is_empty());
    if let Some(token) = std::env::var("PD2_TOKEN").ok().filter(|t| !t.is_empty()) {
        let server = server_flag.or(env_server).ok_or_else(|| {
            CliError::local(
                "PD2_TOKEN is set without a server: set PD2_SERVER too (or pass --server)",
            )
        })?;
        return Client::new(&server, Some(token));
    }
    let Some(mut stored) = credentials::load()? else {
        return Err(CliError::auth(match credentials::last_server() {
            Some(server) => format!("not signed in: run `pd2 login` (to {server}; or --server another)"),
            None => "not signed in: run `pd2 login --server https://…` (or set PD2_SERVER and PD2_TOKEN)"
                .to_owned(),
        }));
    };
    if let Some(server) = server_flag.or(env_server)
        && client::normalise_server(&server)? != stored.server
    {
        return Err(CliError::auth(format!(
            "signed in to {}, not {server}: run `pd2 login --server {server}`",
            stored.server
        )));
    }
    let client = Client::new(&stored.server, Some(stored.token.clone()))?;
    if seconds_left(&stored.token).is_some_and(|left| left < RENEW_BELOW_SECS) {
        // Renewed while the device stays signed in; failing that, the old
        // token is tried (and its refusal says to sign in again).
        if let Ok(response) = client.send(client.request(Method::PUT, "/oauth")).await
            && let Ok(reply) = client.json::<serde_json::Value>(response).await
            && let Some(token) = reply["access_token"].as_str()
        {
            stored.token = token.to_owned();
            credentials::save(&stored)?;
            return Client::new(&stored.server, Some(stored.token));
        }
    }
    Ok(client)
}

/// Seconds until the token expires, read from its payload (not verified:
/// the server does that; this only decides when to renew).
fn seconds_left(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims["exp"].as_i64()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(exp - now)
}
