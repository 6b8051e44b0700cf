//! The read commands: `list`, `show`, `download`, `comments`.

use std::path::{Component, Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::{
    client::Client,
    error::{CliError, Result},
    output::Output,
    text::{TicketRef, html_to_text, printable, size, ticket_link, time},
};

pub async fn list(client: &Client, offset: u64, length: u64, out: &Output) -> Result<()> {
    let tickets: Vec<Value> = client
        .get_json(&format!("/ticket?offset={offset}&length={length}"))
        .await?;
    if out.json {
        out.line(&Value::Array(tickets));
        return Ok(());
    }
    if tickets.is_empty() {
        out.say(if offset == 0 {
            "No tickets yet: `pd2 upload FOLDER` makes one."
        } else {
            "No more tickets."
        });
        return Ok(());
    }
    for t in &tickets {
        let files = t["files"].as_array().map_or(0, Vec::len);
        out.say(&format!(
            "{}  {}  {:<7}  {:>3} files  {}",
            t["id"].as_str().unwrap_or("?"),
            time(t["create_time"].as_i64().unwrap_or(0)),
            if t["is_public"].as_bool() == Some(true) {
                "public"
            } else {
                "private"
            },
            files,
            printable(t["remark"].as_str().unwrap_or_default())
        ));
    }
    if tickets.len() as u64 == length {
        out.say(&format!(
            "(more with `pd2 list --offset {}`)",
            offset + length
        ));
    }
    Ok(())
}

fn version_query(version: Option<u32>) -> String {
    version.map(|v| format!("?version={v}")).unwrap_or_default()
}

pub async fn show(
    client: &Client,
    ticket: &TicketRef,
    version: Option<u32>,
    out: &Output,
) -> Result<()> {
    let t: Value = client
        .get_json(&format!("{}{}", ticket.path(), version_query(version)))
        .await?;
    let author = &t["author"]["display_data"];
    let link = ticket_link(
        &client.server,
        author["id"].as_str().unwrap_or(&ticket.user),
        &ticket.id,
    );
    if out.json {
        out.line(&json!({ "ticket": t, "link": link }));
        return Ok(());
    }
    let files: Vec<&str> = t["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut text = vec![
        format!("{}  {link}", ticket.id),
        format!(
            "by {} on {}, {}",
            printable(author["display_name"].as_str().unwrap_or("?")),
            time(t["create_time"].as_i64().unwrap_or(0)),
            if t["is_public"].as_bool() == Some(true) {
                "public"
            } else {
                "private"
            }
        ),
    ];
    if let (Some(v), Some(n)) = (t["version"].as_i64(), t["versions"].as_i64())
        && n > 1
    {
        // Each version's own note (`upload --to --remark`) is in the list.
        let versions: Vec<Value> = client
            .get_json(&format!("{}/versions", ticket.path()))
            .await
            .unwrap_or_default();
        let note = versions
            .iter()
            .find(|x| x["version"].as_i64() == Some(v))
            .and_then(|x| x["remark"].as_str())
            .filter(|r| !r.is_empty())
            .map(|r| format!(": {}", printable(r)))
            .unwrap_or_default();
        text.push(format!("version {v} of {n}{note}"));
    }
    let remark = t["remark"].as_str().unwrap_or_default();
    if !remark.is_empty() {
        text.push(format!("remark: {}", printable(remark)));
    }
    text.push(format!("{} files:", files.len()));
    text.extend(files.iter().map(|f| format!("  {}", printable(f))));
    out.say(&text.join("\n"));
    Ok(())
}

/// A path from the server made safe to write under the target folder:
/// relative, no `..`, nothing a file system would read otherwise.
fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains(['\\', ':']) || name.chars().any(char::is_control) {
        return None;
    }
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// `/ticket/U/ID/files/a%20b/c.txt`: each segment percent-encoded.
fn file_url(ticket: &TicketRef, name: &str, version: Option<u32>) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let encoded: Vec<String> = name
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!(
        "{}/files/{}{}",
        ticket.path(),
        encoded.join("/"),
        version_query(version)
    )
}

pub async fn download(
    client: &Client,
    ticket: &TicketRef,
    dir: Option<PathBuf>,
    version: Option<u32>,
    force: bool,
    out: &Output,
) -> Result<()> {
    let t: Value = client
        .get_json(&format!("{}{}", ticket.path(), version_query(version)))
        .await?;
    let names: Vec<String> = t["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    let dir = dir.unwrap_or_else(|| PathBuf::from(&ticket.id));
    // A file is read at most this far: the server's own limit per file,
    // or 64 MiB (a limit lowered after the upload, a server misbehaving).
    let meta: Value = client.get_json("/meta").await?;
    let cap = meta["limits"]["max_file_size"]
        .as_u64()
        .unwrap_or(0)
        .max(64 * 1024 * 1024);
    // Every name is checked before anything is written.
    let mut targets = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for name in &names {
        let relative = safe_relative(name)
            .filter(|r| seen.insert(r.clone()))
            .ok_or_else(|| {
                CliError::refused(format!(
                    "the ticket has a file named `{}`, which cannot be written safely (or twice); nothing was written",
                    printable(name)
                ))
            })?;
        // Nothing of the way there, the file included, may be a link out
        // of the folder.
        let mut at = dir.clone();
        for part in relative.components() {
            at.push(part);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(CliError::local(format!(
                    "{} is a symbolic link; nothing was written",
                    at.display()
                )));
            }
        }
        let target = at;
        if !force && target.exists() {
            return Err(CliError::local(format!(
                "{} exists; nothing was written (--force overwrites)",
                target.display()
            )));
        }
        targets.push((name, target));
    }
    let bar = out.progress(names.len() as u64, false);
    bar.set_message(format!("downloading to {}", dir.display()));
    let mut bytes = 0u64;
    for (name, target) in &targets {
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| CliError::local(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut response = client
            .send(client.request(Method::GET, &file_url(ticket, name, version)))
            .await?;
        // Written beside the target and renamed once whole: an interrupted
        // download never leaves a truncated file under the right name.
        let partial = target.with_file_name(format!(
            ".{}.pd2-partial",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("file")
        ));
        let written: Result<u64> = async {
            let _ = tokio::fs::remove_file(&partial).await;
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&partial)
                .await
                .map_err(|e| CliError::local(format!("cannot write {}: {e}", partial.display())))?;
            let mut n = 0u64;
            while let Some(chunk) = response.chunk().await.map_err(|e| client.unreachable(e))? {
                if n + chunk.len() as u64 > cap {
                    return Err(CliError::unavailable(format!(
                        "{} sent more than {} for {}: stopped",
                        client.server,
                        size(cap),
                        printable(name)
                    )));
                }
                file.write_all(&chunk).await.map_err(|e| {
                    CliError::local(format!("cannot write {}: {e}", partial.display()))
                })?;
                n += chunk.len() as u64;
            }
            file.flush()
                .await
                .map_err(|e| CliError::local(format!("cannot write {}: {e}", partial.display())))?;
            tokio::fs::rename(&partial, target)
                .await
                .map_err(|e| CliError::local(format!("cannot write {}: {e}", target.display())))?;
            Ok(n)
        }
        .await;
        match written {
            Ok(n) => bytes += n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                bar.finish_and_clear();
                return Err(e);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.result(
        &json!({ "dir": dir, "files": names, "bytes": bytes }),
        &format!(
            "Downloaded {} files ({}) to {}",
            names.len(),
            size(bytes),
            dir.display()
        ),
    );
    Ok(())
}

pub async fn comments(
    client: &Client,
    ticket: &TicketRef,
    version: Option<u32>,
    out: &Output,
) -> Result<()> {
    let threads: Vec<Value> = client
        .get_json(&format!(
            "{}/comments{}",
            ticket.path(),
            version_query(version)
        ))
        .await?;
    if out.json {
        out.line(&Value::Array(threads));
        return Ok(());
    }
    if threads.is_empty() {
        out.say("No comments yet.");
        return Ok(());
    }
    let mut text = Vec::new();
    for thread in &threads {
        let mut place = match thread["path"].as_str() {
            Some(path) => printable(path),
            None => "the ticket".to_owned(),
        };
        let lines = if thread["position"].is_object() {
            &thread["position"]
        } else {
            &thread["lines"]
        };
        if let (Some(a), Some(b)) = (lines["line_start"].as_i64(), lines["line_end"].as_i64()) {
            place.push_str(&if a == b {
                format!(":{a}")
            } else {
                format!(":{a}-{b}")
            });
        }
        let mut flags = vec![format!(
            "on version {}",
            thread["version"].as_i64().unwrap_or(0)
        )];
        if thread["outdated"].as_bool() == Some(true) {
            flags.push("outdated".to_owned());
        }
        if thread["resolved"].as_bool() == Some(true) {
            flags.push("resolved".to_owned());
        }
        let flags = format!(" ({})", flags.join(", "));
        text.push(format!("── {place}{flags}"));
        // A thread is its first comment, with the replies beside.
        let comments =
            std::iter::once(thread).chain(thread["replies"].as_array().into_iter().flatten());
        for c in comments {
            text.push(format!(
                "{} · {}",
                printable(c["author"]["display_name"].as_str().unwrap_or("?")),
                time(c["create_time"].as_i64().unwrap_or(0))
            ));
            for line in html_to_text(c["body_html"].as_str().unwrap_or_default()).lines() {
                text.push(format!("  {line}").trim_end().to_owned());
            }
        }
        text.push(String::new());
    }
    out.say(text.join("\n").trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_cannot_write_outside_the_folder() {
        assert_eq!(
            safe_relative("src/Main.java"),
            Some(PathBuf::from("src/Main.java"))
        );
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "C:/x",
            "a\\..\\x",
            "",
            "./",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_addresses_encode_each_segment() {
        let t = TicketRef {
            user: "@me".into(),
            id: "0123456789abcdef0123".into(),
        };
        assert_eq!(
            file_url(&t, "作業 1/a#b?.cpp", Some(2)),
            "/ticket/@me/0123456789abcdef0123/files/%E4%BD%9C%E6%A5%AD%201/a%23b%3F.cpp?version=2"
        );
    }
}
