//! What changed between two sets of files: two versions of a ticket, or
//! two tickets (`compare`). A listing says, for each path, whether it was
//! added, removed, modified (with lines added and removed), renamed (the
//! same bytes under another path) or unchanged; a file's diff is unified
//! text, as `diff -u` and `git diff` write it.
//!
//! Both are bounded, since a student can upload a 50 MB log twice with one
//! line changed: a side over [`MAX_DIFF_BYTES`] or [`MAX_DIFF_LINES`], or
//! binary, is "changed" without lines; a listing stops counting lines after
//! [`LISTING_BYTES`] read or [`LISTING_TIME`]; one diff's algorithm gets
//! [`DIFF_TIME`] and then settles for a correct but coarser diff (`similar`
//! gives up looking for the smallest). None of it is ever an error.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use serde::Serialize;
use similar::{Algorithm, ChangeTag, TextDiff};
use utoipa::ToSchema;

use super::{Context, text};
use crate::store::{ByteRange, StoreError, StoredFile};

/// A side larger than this is not diffed line by line.
pub const MAX_DIFF_BYTES: i64 = 2 * 1024 * 1024;
/// Nor one with more lines than this.
pub const MAX_DIFF_LINES: usize = 50_000;
/// Bytes a listing reads to count lines, all files together.
const LISTING_BYTES: i64 = 32 * 1024 * 1024;
/// Time a listing spends counting lines.
const LISTING_TIME: Duration = Duration::from_secs(3);
/// Time one diff's algorithm may take before it settles.
const DIFF_TIME: Duration = Duration::from_secs(2);
/// Context lines of a file's diff at most (`?context=`).
pub const MAX_CONTEXT: usize = 100_000;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Added,
    Removed,
    Modified,
    /// The same bytes under another path (`old_path`).
    Renamed,
    Unchanged,
}

/// One path of a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileChange {
    pub path: String,
    pub status: Status,
    /// For `renamed`: the path it had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// Lines added and removed; absent when not counted (see `note`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletions: Option<u64>,
    /// Why lines were not counted: `binary`, `too large`, `over the
    /// listing's budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    /// Bytes after (before, for `removed`).
    pub size: i64,
}

/// A listing with its totals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Listing {
    pub files: Vec<FileChange>,
    pub added: usize,
    pub removed: usize,
    pub modified: usize,
    pub renamed: usize,
    pub unchanged: usize,
    /// Lines, over the files counted.
    pub additions: u64,
    pub deletions: u64,
}

/// What a file's diff could be.
#[derive(Debug)]
pub enum FileDiff {
    /// Unified text (empty when the two are the same).
    Text(String),
    /// Not diffed line by line, and why (`binary`, `too large`).
    Changed(&'static str),
}

/// Lists what changed from `old` to `new`, in the new files' order, then
/// the removed ones, with lines counted within the listing's budget.
pub async fn listing(
    ctx: &Context,
    old: &[StoredFile],
    new: &[StoredFile],
) -> Result<Listing, StoreError> {
    let mut budget = Budget {
        bytes: LISTING_BYTES,
        until: Instant::now() + LISTING_TIME,
    };
    let mut files = Vec::new();
    for (mut change, before, after) in classify(old, new) {
        if matches!(
            change.status,
            Status::Added | Status::Removed | Status::Modified
        ) {
            count(ctx, &mut budget, before, after, &mut change).await?;
        }
        files.push(change);
    }
    let of = |s: Status| files.iter().filter(|f| f.status == s).count();
    Ok(Listing {
        added: of(Status::Added),
        removed: of(Status::Removed),
        modified: of(Status::Modified),
        renamed: of(Status::Renamed),
        unchanged: of(Status::Unchanged),
        additions: files.iter().filter_map(|f| f.additions).sum(),
        deletions: files.iter().filter_map(|f| f.deletions).sum(),
        files,
    })
}

/// How many paths changed from `old` to `new` (by content: no bytes read).
pub fn changed_paths(old: &[StoredFile], new: &[StoredFile]) -> usize {
    classify(old, new)
        .iter()
        .filter(|(c, _, _)| c.status != Status::Unchanged)
        .count()
}

type Classified<'a> = (FileChange, Option<&'a StoredFile>, Option<&'a StoredFile>);

/// Each path's status, with the files before and after, by path and
/// content alone.
fn classify<'a>(old: &'a [StoredFile], new: &'a [StoredFile]) -> Vec<Classified<'a>> {
    let old_by_path: HashMap<&str, &StoredFile> =
        old.iter().map(|f| (f.path.as_str(), f)).collect();
    let new_paths: HashSet<&str> = new.iter().map(|f| f.path.as_str()).collect();
    // Removed paths by content, for renames (each used once, in order).
    let mut removed_by_hash: HashMap<&str, Vec<&StoredFile>> = HashMap::new();
    for f in old
        .iter()
        .rev()
        .filter(|f| !new_paths.contains(f.path.as_str()))
    {
        removed_by_hash
            .entry(f.sha256.as_str())
            .or_default()
            .push(f);
    }
    let mut renamed_from = HashSet::new();
    let mut out = Vec::with_capacity(new.len());
    for file in new {
        let entry = match old_by_path.get(file.path.as_str()) {
            Some(before) if before.sha256 == file.sha256 => {
                (change(file, Status::Unchanged), Some(*before), Some(file))
            }
            Some(before) => (change(file, Status::Modified), Some(*before), Some(file)),
            None => match removed_by_hash
                .get_mut(file.sha256.as_str())
                .and_then(Vec::pop)
            {
                Some(before) => {
                    renamed_from.insert(before.path.as_str());
                    let mut c = change(file, Status::Renamed);
                    c.old_path = Some(before.path.clone());
                    (c, Some(before), Some(file))
                }
                None => (change(file, Status::Added), None, Some(file)),
            },
        };
        out.push(entry);
    }
    for file in old {
        if !new_paths.contains(file.path.as_str()) && !renamed_from.contains(file.path.as_str()) {
            out.push((change(file, Status::Removed), Some(file), None));
        }
    }
    out
}

/// The diff of one path from `old` to `new` (either may be absent: added,
/// removed), with `context` lines around each change.
pub async fn file_diff(
    ctx: &Context,
    path: &str,
    old: Option<&StoredFile>,
    new: Option<&StoredFile>,
    context: usize,
) -> Result<FileDiff, StoreError> {
    if let (Some(a), Some(b)) = (old, new)
        && a.sha256 == b.sha256
    {
        return Ok(FileDiff::Text(String::new()));
    }
    let (before, after) = match (read_text(ctx, old).await?, read_text(ctx, new).await?) {
        (Side::Text(a), Side::Text(b)) => (a, b),
        (Side::NotText(why), _) | (_, Side::NotText(why)) => return Ok(FileDiff::Changed(why)),
    };
    let (a, b) = (
        old.map_or("/dev/null".to_owned(), |_| format!("a/{path}")),
        new.map_or("/dev/null".to_owned(), |_| format!("b/{path}")),
    );
    let text = off_the_runtime(move || {
        let diff = TextDiff::configure()
            .algorithm(Algorithm::Myers)
            .timeout(DIFF_TIME)
            .diff_lines(&before, &after);
        if diff
            .ops()
            .iter()
            .all(|op| op.tag() == similar::DiffTag::Equal)
        {
            return String::new();
        }
        diff.unified_diff()
            .context_radius(context.min(MAX_CONTEXT))
            .missing_newline_hint(true)
            .header(&a, &b)
            .to_string()
    })
    .await?;
    Ok(FileDiff::Text(text))
}

/// Diffing at most this many at once: the rest wait their turn.
static DIFFS_AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs CPU-bound work (decoding, diffing: up to [`DIFF_TIME`] each) on
/// the blocking pool, a few at a time, never on the threads that answer
/// requests: a burst of diffs of large files must not stall `/health`.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    let _permit = DIFFS_AT_ONCE
        .acquire()
        .await
        .map_err(|_| StoreError::Corrupt("the diff queue closed".into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Corrupt(format!("a diff failed: {e}")))
}

fn change(file: &StoredFile, status: Status) -> FileChange {
    FileChange {
        path: file.path.clone(),
        status,
        old_path: None,
        additions: None,
        deletions: None,
        note: None,
        size: file.size,
    }
}

struct Budget {
    bytes: i64,
    until: Instant,
}

/// Counts the lines added and removed into `change`, within the budget.
async fn count(
    ctx: &Context,
    budget: &mut Budget,
    old: Option<&StoredFile>,
    new: Option<&StoredFile>,
    change: &mut FileChange,
) -> Result<(), StoreError> {
    let cost = old.map_or(0, |f| f.size) + new.map_or(0, |f| f.size);
    if Instant::now() >= budget.until || cost > budget.bytes {
        change.note = Some("over the listing's budget");
        return Ok(());
    }
    budget.bytes -= cost;
    let (before, after) = match (read_text(ctx, old).await?, read_text(ctx, new).await?) {
        (Side::Text(a), Side::Text(b)) => (a, b),
        (Side::NotText(why), _) | (_, Side::NotText(why)) => {
            change.note = Some(why);
            return Ok(());
        }
    };
    let left = budget.until.saturating_duration_since(Instant::now());
    let (added, removed) = off_the_runtime(move || {
        let diff = TextDiff::configure()
            .algorithm(Algorithm::Myers)
            .timeout(left.min(DIFF_TIME))
            .diff_lines(&before, &after);
        let (mut added, mut removed) = (0, 0);
        for change in diff.iter_all_changes() {
            match change.tag() {
                ChangeTag::Insert => added += 1,
                ChangeTag::Delete => removed += 1,
                ChangeTag::Equal => {}
            }
        }
        (added, removed)
    })
    .await?;
    change.additions = Some(added);
    change.deletions = Some(removed);
    Ok(())
}

enum Side {
    Text(String),
    NotText(&'static str),
}

/// A side's text (empty for an absent side), decoded as previews decode
/// it, or why it is not diffed.
async fn read_text(ctx: &Context, file: Option<&StoredFile>) -> Result<Side, StoreError> {
    let Some(file) = file else {
        return Ok(Side::Text(String::new()));
    };
    if file.size > MAX_DIFF_BYTES {
        return Ok(Side::NotText("too large"));
    }
    let range = ByteRange {
        start: 0,
        end: file.size.max(0) as u64,
    };
    let bytes = ctx.store.files.read_into_one(file, range).await?;
    off_the_runtime(move || {
        let Some(decoded) = text::decode(&bytes) else {
            return Side::NotText("binary");
        };
        if decoded.text.lines().count() > MAX_DIFF_LINES {
            return Side::NotText("too large");
        }
        Side::Text(decoded.text.into_owned())
    })
    .await
}

/// How many lines a file has, if it is text within the diff bounds.
pub async fn lines_of(ctx: &Context, file: &StoredFile) -> Result<Option<usize>, StoreError> {
    Ok(match read_text(ctx, Some(file)).await? {
        Side::Text(text) => Some(text.lines().count()),
        Side::NotText(_) => None,
    })
}

/// Where line ranges of `from` are in `to`: a range is carried when every
/// one of its lines is unchanged between the two (found through their
/// diff), and lands where those lines are now; otherwise `None` (the
/// lines changed, or the file is not text within the bounds).
pub async fn carry(
    ctx: &Context,
    from: &StoredFile,
    to: &StoredFile,
    ranges: Vec<(i64, i64)>,
) -> Result<Vec<Option<(i64, i64)>>, StoreError> {
    if from.sha256 == to.sha256 {
        return Ok(ranges.into_iter().map(Some).collect());
    }
    let (before, after) = match (
        read_text(ctx, Some(from)).await?,
        read_text(ctx, Some(to)).await?,
    ) {
        (Side::Text(a), Side::Text(b)) => (a, b),
        _ => return Ok(vec![None; ranges.len()]),
    };
    off_the_runtime(move || {
        let diff = TextDiff::configure()
            .algorithm(Algorithm::Myers)
            .timeout(DIFF_TIME)
            .diff_lines(&before, &after);
        // Old line (0-based) → new line, for unchanged lines.
        let mut moved = HashMap::new();
        for op in diff.ops() {
            if let similar::DiffOp::Equal {
                old_index,
                new_index,
                len,
            } = *op
            {
                for i in 0..len {
                    moved.insert(old_index + i, new_index + i);
                }
            }
        }
        ranges
            .into_iter()
            .map(|(start, end)| {
                let first = *moved.get(&(usize::try_from(start - 1).ok()?))?;
                for line in start..=end {
                    let new = *moved.get(&usize::try_from(line - 1).ok()?)?;
                    if new != first + (line - start) as usize {
                        return None;
                    }
                }
                Some((first as i64 + 1, first as i64 + 1 + (end - start)))
            })
            .collect()
    })
    .await
}
