//! Search across a ticket's text files, as a TA looks for where something
//! is used: case-insensitive, line by line, text in legacy encodings
//! decoded first (see `text`). Bounded whatever the ticket holds: files
//! over [`MAX_FILE_BYTES`] are not read, reading stops at
//! [`MAX_TOTAL_BYTES`] and after [`TIME_BUDGET`], at most [`MAX_MATCHES`]
//! matches, each excerpt at most [`EXCERPT_CHARS`] characters. What was not
//! searched is said, with why.

use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use super::{Context, files, text, tickets::TicketError};
use crate::{auth::Requester, store::StoreError};

pub const MAX_QUERY_CHARS: usize = 200;
pub const MAX_MATCHES: usize = 200;
pub const MAX_FILE_BYTES: u64 = 2 << 20;
pub const MAX_TOTAL_BYTES: u64 = 32 << 20;
pub const TIME_BUDGET: Duration = Duration::from_secs(2);
pub const EXCERPT_CHARS: usize = 160;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the query must be 1 to {MAX_QUERY_CHARS} characters")]
    BadQuery,
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize, ToSchema)]
#[schema(as = SearchMatch)]
pub struct Match {
    pub path: String,
    /// 1-based line number
    pub line: usize,
    /// The line around the match, at most 160 characters (`…` where cut)
    pub excerpt: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SkippedFile)]
pub struct Skipped {
    pub path: String,
    /// `not text`, `binary`, `too large` (over 2 MiB), `out of time` (the
    /// search stops after 2 s) or `over the search's read budget` (32 MiB)
    pub reason: &'static str,
}

/// What a search found, as `GET …/search` answers it.
#[derive(Serialize, ToSchema)]
#[schema(as = SearchResult, example = json!({"query": "scanner", "matches": [{"path": "src/Main.java", "line": 12, "excerpt": "Scanner in = new Scanner(System.in);"}], "searched": 41, "skipped": [{"path": "docs/shot.png", "reason": "not text"}], "truncated": false}))]
pub struct Found {
    /// The query, trimmed
    pub query: String,
    /// In the ticket's file order, then by line; at most 200
    pub matches: Vec<Match>,
    /// How many files were searched
    pub searched: usize,
    /// Files not searched, and why
    pub skipped: Vec<Skipped>,
    /// More than 200 matches: only the first are listed
    pub truncated: bool,
}

pub async fn search(
    ctx: &Context,
    me: &Requester,
    user_id: &str,
    ticket_id: &str,
    version: Option<i64>,
    query: &str,
) -> Result<Found, SearchError> {
    let query = query.trim();
    if query.is_empty() || query.chars().count() > MAX_QUERY_CHARS {
        return Err(SearchError::BadQuery);
    }
    let ticket = super::tickets::read_at(ctx, me, user_id, ticket_id, version).await?;
    let needle = query.to_lowercase();
    let started = Instant::now();
    let mut found = Found {
        query: query.to_owned(),
        matches: Vec::new(),
        searched: 0,
        skipped: Vec::new(),
        truncated: false,
    };
    let mut read = 0u64;
    for file in &ticket.files {
        let size = file.size.max(0) as u64;
        let skip = if !text::is_textual(&file.content_type) && !looks_textual(&file.path) {
            Some("not text")
        } else if size > MAX_FILE_BYTES {
            Some("too large")
        } else if started.elapsed() >= TIME_BUDGET {
            Some("out of time")
        } else if read + size > MAX_TOTAL_BYTES {
            Some("over the search's read budget")
        } else {
            None
        };
        if let Some(reason) = skip {
            found.skipped.push(Skipped {
                path: file.path.clone(),
                reason,
            });
            continue;
        }
        read += size;
        let bytes = files::read_all(ctx, file).await?;
        let (needle, room) = (needle.clone(), MAX_MATCHES + 1 - found.matches.len());
        // Matching is CPU work: off the reactor.
        let hits = tokio::task::spawn_blocking(move || match text::decode(&bytes) {
            Some(decoded) => Some(lines_matching(&decoded.text, &needle, room)),
            None => None,
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("a search task failed: {e}")))?;
        let Some(hits) = hits else {
            found.skipped.push(Skipped {
                path: file.path.clone(),
                reason: "binary",
            });
            continue;
        };
        found.searched += 1;
        found
            .matches
            .extend(hits.into_iter().map(|(line, excerpt)| Match {
                path: file.path.clone(),
                line,
                excerpt,
            }));
        if found.matches.len() > MAX_MATCHES {
            found.matches.truncate(MAX_MATCHES);
            found.truncated = true;
            break;
        }
    }
    Ok(found)
}

/// Files without a text type that are usually text anyway (a `Makefile`,
/// `.gitignore`): the decoder tells binary apart when it reads them.
fn looks_textual(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !name.contains('.') || name.starts_with('.')
}

/// Up to `room` lines holding `needle` (lowercase): line number and a
/// bounded excerpt around the first hit.
fn lines_matching(text: &str, needle: &str, room: usize) -> Vec<(usize, String)> {
    let mut hits = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if hits.len() >= room {
            break;
        }
        let lower = line.to_lowercase();
        if let Some(at) = lower.find(needle) {
            hits.push((index + 1, excerpt(line, lower[..at].chars().count())));
        }
    }
    hits
}

/// The line around the character at `hit`, at most [`EXCERPT_CHARS`]
/// characters, trimmed, with `…` where it was cut.
fn excerpt(line: &str, hit: usize) -> String {
    let chars: Vec<char> = line.chars().collect();
    let start = hit.saturating_sub(EXCERPT_CHARS / 4);
    let end = (start + EXCERPT_CHARS).min(chars.len());
    let start = end.saturating_sub(EXCERPT_CHARS).min(start);
    let mut out: String = chars[start..end].iter().collect();
    out = out.trim().to_owned();
    if start > 0 {
        out.insert(0, '…');
    }
    if end < chars.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_case_insensitively_with_bounded_excerpts() {
        let text = "int main() {\n    Scanner in = new Scanner(System.in);\n}\nSCANNER\n";
        let hits = lines_matching(text, "scanner", 10);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(hits[0].1, "Scanner in = new Scanner(System.in);");
        assert_eq!(lines_matching(text, "scanner", 1).len(), 1);
        let long = format!("{}needle{}", "a".repeat(500), "b".repeat(500));
        let cut = excerpt(&long, 500);
        assert!(cut.starts_with('…') && cut.ends_with('…') && cut.contains("needle"));
        assert!(cut.chars().count() <= EXCERPT_CHARS + 2);
        // Characters, not bytes: no panic in the middle of one.
        let chinese = format!("{}計算{}", "中".repeat(300), "文".repeat(300));
        assert!(excerpt(&chinese, 300).contains("計算"));
    }
}
