//! `pd2 upload`: a folder (or files) becomes a ticket, or a new version of
//! one. What a student would not mean to send is left out (`.gitignore`,
//! hidden files, build outputs); the server's limits and the course's
//! policy are checked before a byte is sent; the bytes stream from disk
//! with a progress bar; the ticket's link is printed last.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use reqwest::{
    Body, Method,
    multipart::{Form, Part},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    client::Client,
    error::{CliError, Result},
    output::Output,
    text::{self, TicketRef, size, ticket_link},
};

/// Left out unless `--no-ignore`: what compilers, package managers and
/// editors write beside the sources (each a glob of the `.gitignore`
/// kind). Hidden files and folders (`.git`, `.vscode`, `.DS_Store`) are
/// left out too.
pub const BUILD_OUTPUTS: &[&str] = &[
    "target/",
    "build/",
    "cmake-build-*/",
    "out/",
    "bin/",
    "obj/",
    "dist/",
    "node_modules/",
    "__pycache__/",
    "venv/",
    "*.o",
    "*.obj",
    "*.class",
    "*.pyc",
    "*.exe",
    "*.dll",
    "*.so",
    "*.dylib",
    "*.a",
    "*.lib",
    "a.out",
];

pub struct UploadArgs {
    pub paths: Vec<PathBuf>,
    pub public: bool,
    pub remark: Option<String>,
    pub to: Option<TicketRef>,
    pub no_ignore: bool,
    pub exclude: Vec<String>,
}

/// A file about to be sent.
#[derive(Debug, Clone)]
pub struct Planned {
    pub local: PathBuf,
    /// Its name in the ticket (`/`-separated).
    pub name: String,
    pub size: u64,
}

#[derive(Deserialize)]
struct Limits {
    max_file_size: u64,
    max_ticket_size: u64,
    max_files: usize,
}

#[derive(Deserialize)]
struct Meta {
    limits: Limits,
}

pub async fn upload(client: &Client, args: UploadArgs, out: &Output) -> Result<()> {
    let (files, skipped) = collect(&args.paths, args.no_ignore, &args.exclude)?;
    if files.is_empty() {
        return Err(CliError::refused(format!(
            "nothing to upload: no files in {}{}",
            shown_paths(&args.paths),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} left out; --dry-run lists them, --no-ignore includes them)",
                    skipped.len()
                )
            }
        )));
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    check(client, &files).await?;
    if !skipped.is_empty() {
        out.note(&format!(
            "{} files left out (.gitignore, hidden, build outputs, --exclude; --dry-run lists them, --no-ignore includes them)",
            skipped.len()
        ));
    }
    send(client, &args, files, total, out).await
}

/// `--dry-run`: what would be sent and what is left out; with a server
/// (`checked`: signed in), whether it would take it.
pub async fn dry_run(args: &UploadArgs, client: Option<&Client>, out: &Output) -> Result<()> {
    let (files, skipped) = collect(&args.paths, args.no_ignore, &args.exclude)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let verdict = match client {
        Some(client) if !files.is_empty() => Some(check(client, &files).await),
        _ => None,
    };
    let list: Vec<Value> = files
        .iter()
        .map(|f| json!({ "path": f.name, "size": f.size }))
        .collect();
    let mut text: Vec<String> = files
        .iter()
        .map(|f| format!("{:>10}  {}", size(f.size), f.name))
        .collect();
    text.extend(skipped.iter().map(|name| format!("  left out  {name}")));
    text.push(format!(
        "{} files, {} to send; {} left out (.gitignore, hidden, build outputs, --exclude)",
        files.len(),
        size(total),
        skipped.len()
    ));
    let checked = match &verdict {
        Some(Ok(())) => "accepted",
        Some(Err(_)) => "refused",
        None => "not checked",
    };
    text.push(
        match checked {
            "accepted" => "The server's limits and the course's policy would accept it (nothing was sent).",
            "refused" => "The server would refuse it (below); nothing was sent.",
            _ => "Not checked against the server's limits and policy (not signed in); nothing was sent.",
        }
        .to_owned(),
    );
    out.result(
        &json!({ "files": list, "left_out": skipped, "check": checked }),
        &text.join("\n"),
    );
    match verdict {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

fn shown_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files the paths name, and how many were left out. A folder's
/// files are named under the folder's own name (`lab1/src/Main.java`), as
/// when a folder is dropped into the web app (`pd2 upload` in `~/lab1`
/// gives the same names); a file by its name.
pub fn collect(
    paths: &[PathBuf],
    no_ignore: bool,
    exclude: &[String],
) -> Result<(Vec<Planned>, Vec<String>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| CliError::local(format!("cannot read {}: {e}", path.display())))?;
        if meta.is_file() {
            let name = file_name(path)?;
            files.push(Planned {
                local: path.clone(),
                name,
                size: meta.len(),
            });
            continue;
        }
        let absolute = std::fs::canonicalize(path)
            .map_err(|e| CliError::local(format!("cannot read {}: {e}", path.display())))?;
        let prefix = format!("{}/", file_name(&absolute)?);
        let (found, left_out) = walk(path, no_ignore, exclude)?;
        skipped.extend(left_out.into_iter().map(|name| format!("{prefix}{name}")));
        files.extend(found.into_iter().map(|f| Planned {
            name: format!("{prefix}{}", f.name),
            ..f
        }));
    }
    Ok((files, skipped))
}

fn file_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .ok_or_else(|| CliError::local(format!("{} has no name", path.display())))?;
    name.to_str().map(str::to_owned).ok_or_else(|| {
        CliError::refused(format!(
            "{}: the name is not UTF-8; rename it",
            path.display()
        ))
    })
}

/// A folder's files (sorted by path) with their names relative to it,
/// and how many files were left out.
fn walk(root: &Path, no_ignore: bool, exclude: &[String]) -> Result<(Vec<Planned>, Vec<String>)> {
    let mut overrides = ignore::overrides::OverrideBuilder::new(root);
    let mut globs: Vec<String> = exclude.to_vec();
    if no_ignore {
        globs.push(".git/".into());
    } else {
        globs.extend(BUILD_OUTPUTS.iter().map(|g| (*g).to_owned()));
    }
    for glob in &globs {
        // In an override, `!glob` leaves out what matches.
        overrides
            .add(&format!("!{glob}"))
            .map_err(|e| CliError::local(format!("bad pattern `{glob}`: {e}")))?;
    }
    let overrides = overrides
        .build()
        .map_err(|e| CliError::local(format!("bad patterns: {e}")))?;
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(!no_ignore)
        // A project's .gitignore counts in any folder, git or not.
        .require_git(false)
        .add_custom_ignore_filename(".pd2ignore")
        .overrides(overrides)
        .follow_links(false)
        .sort_by_file_path(|a, b| a.cmp(b))
        .build();
    let mut found = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| CliError::local(format!("cannot read the folder: {e}")))?;
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).map_err(|_| {
            CliError::local(format!("{} is outside the folder", entry.path().display()))
        })?;
        let name: Vec<&str> = relative
            .components()
            .map(|c| {
                c.as_os_str().to_str().ok_or_else(|| {
                    CliError::refused(format!(
                        "{}: the name is not UTF-8; rename it",
                        entry.path().display()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let size = entry
            .metadata()
            .map_err(|e| CliError::local(format!("cannot read {}: {e}", entry.path().display())))?
            .len();
        found.push(Planned {
            local: entry.path().to_path_buf(),
            name: name.join("/"),
            size,
        });
    }
    // What the filters left out: a walk without them, less what was found
    // (inside `.git` is never counted).
    let kept: std::collections::HashSet<&Path> = found.iter().map(|f| f.local.as_path()).collect();
    let left_out: Vec<String> = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_path(|a, b| a.cmp(b))
        .build()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()) && !kept.contains(e.path()))
        .filter_map(|e| {
            e.path()
                .strip_prefix(root)
                .ok()
                .map(|r| r.to_string_lossy().replace('\\', "/"))
        })
        .collect();
    Ok((found, left_out))
}

/// The server's limits and the course's policy, before anything is sent:
/// every problem listed at once.
async fn check(client: &Client, files: &[Planned]) -> Result<()> {
    let meta: Meta = client.get_json("/meta").await?;
    let limits = meta.limits;
    let mut problems = Vec::new();
    if files.len() > limits.max_files {
        problems.push(format!(
            "{} files: the server accepts at most {} a ticket (leave some out with --exclude or a .gitignore)",
            files.len(),
            limits.max_files
        ));
    }
    for f in files.iter().filter(|f| f.size > limits.max_file_size) {
        problems.push(format!(
            "{}: {} is over the limit of {} a file",
            f.name,
            size(f.size),
            size(limits.max_file_size)
        ));
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    if total > limits.max_ticket_size {
        problems.push(format!(
            "{} in all is over the limit of {} a ticket",
            size(total),
            size(limits.max_ticket_size)
        ));
    }
    // The server's own check too, whatever the limits said: every problem
    // at once, so one round of edits fixes them all. Its size and count
    // findings are the ones above, said with the sizes.
    let planned: Vec<Value> = files
        .iter()
        .map(|f| json!({ "path": f.name, "size": f.size }))
        .collect();
    let response = client
        .request(Method::POST, "/ticket/check")
        .json(&json!({ "files": planned }))
        .send()
        .await
        .map_err(|e| client.unreachable(e))?;
    // A list too long for the check (413) is checked by the upload itself.
    if response.status() != reqwest::StatusCode::PAYLOAD_TOO_LARGE {
        if !response.status().is_success() {
            return Err(client.refusal(response).await);
        }
        let answer: Value = client.json(response).await?;
        const SAID_ABOVE: [&str; 3] =
            ["File is too large", "Too many files", "Ticket is too large"];
        for r in answer["rejections"]
            .as_array()
            .into_iter()
            .flatten()
            .take(200)
        {
            let message = r["message"].as_str().unwrap_or_default();
            if r["plugin"] == "pd2-ticket" && SAID_ABOVE.iter().any(|m| message.starts_with(m)) {
                continue;
            }
            problems.push(text::rejection(r));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let count = if problems.len() == 1 {
        "1 problem".to_owned()
    } else {
        format!("{} problems", problems.len())
    };
    Err(CliError::refused(format!(
        "nothing was sent: the server would refuse this upload ({count}, below; leave files out with --exclude GLOB or a .gitignore, --dry-run lists what is sent)\n  {}",
        problems.join("\n  ")
    )))
}

async fn send(
    client: &Client,
    args: &UploadArgs,
    files: Vec<Planned>,
    total: u64,
    out: &Output,
) -> Result<()> {
    let bar = out.progress(total, true);
    bar.set_message(format!("uploading {} files", files.len()));
    let data = json!({
        "is_public": args.public,
        "remark": args.remark.clone().unwrap_or_default(),
    });
    let mut form = Form::new().text("data", data.to_string());
    for f in files {
        // Read whole before anything is sent (at most the server's ticket
        // limit, checked above): what goes is what was checked, and a file
        // a build is still writing stops the upload instead of arriving
        // cut or padded.
        let bytes = tokio::fs::read(&f.local)
            .await
            .map_err(|e| CliError::local(format!("cannot read {}: {e}", f.local.display())))?;
        if bytes.len() as u64 != f.size {
            bar.finish_and_clear();
            return Err(CliError::local(format!(
                "{} changed while the upload was prepared ({} bytes, then {}): nothing was sent; run `pd2 upload` again once it is written",
                f.name,
                f.size,
                bytes.len()
            )));
        }
        let bytes = bytes::Bytes::from(bytes);
        let chunks: Vec<std::io::Result<bytes::Bytes>> = (0..bytes.len())
            .step_by(64 * 1024)
            .map(|at| Ok(bytes.slice(at..(at + 64 * 1024).min(bytes.len()))))
            .collect();
        let progress = bar.clone();
        let stream = futures_util::stream::iter(chunks).inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                progress.inc(bytes.len() as u64);
                // All sent: what is left is the server's (validation by the
                // course's plugins, storage), said so the bar at 100 % does
                // not look stuck.
                if progress
                    .length()
                    .is_some_and(|total| progress.position() >= total)
                {
                    progress.set_message("sent; the server is checking and storing");
                }
            }
        });
        let part = Part::stream_with_length(Body::wrap_stream(stream), f.size)
            .file_name(f.name)
            .mime_str("application/octet-stream")
            .map_err(|e| CliError::local(e.to_string()))?;
        form = form.part("files", part);
    }
    let path = match &args.to {
        Some(ticket) => format!("{}/versions", ticket.path()),
        None => "/ticket".to_owned(),
    };
    let result = client
        .send(client.request(Method::POST, &path).multipart(form))
        .await;
    bar.finish_and_clear();
    let ticket: Value = client.json(result?).await?;
    let id = ticket["id"].as_str().unwrap_or_default();
    let author = ticket["author"]["display_data"]["id"]
        .as_str()
        .unwrap_or("@me");
    let link = ticket_link(&client.server, author, id);
    let count = ticket["files"].as_array().map_or(0, Vec::len);
    // The link last, on a line of its own: what the student copies.
    let text = match &args.to {
        Some(_) => format!(
            "Uploaded version {} ({count} files, {}); the link stays the same:\n{link}",
            ticket["version"].as_i64().unwrap_or(0),
            size(total)
        ),
        None => format!(
            "Uploaded {count} files ({}) as a {} ticket; send your TA its link:\n{link}",
            size(total),
            if args.public { "public" } else { "private" }
        ),
    };
    out.result(&json!({ "ticket": ticket, "link": link }), &text);
    Ok(())
}
