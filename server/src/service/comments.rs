//! Review comments: threads on a ticket, a file, or lines of a file at a
//! version, under the ticket's visibility (who can read the ticket can
//! comment; nobody else learns that comments exist: 404). A thread written
//! on one version is shown on another at the lines its lines moved to when
//! they did not change (through the diff), else as outdated with the lines
//! it was written on. Bounded: bodies of 10,000 characters, 1,000
//! comments a ticket, a rate per user. Each comment tells the people it
//! concerns (see `notify`).

use std::{collections::HashMap, time::Duration};

use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Context, diff, files, markdown, notify,
    tickets::{self, TicketError},
};
use crate::{
    auth::{DisplayData, Requester},
    store::{CommentRecord, StoreError, TicketRecord, UserProfile},
};

/// Characters a body may have.
pub const MAX_BODY_CHARS: usize = 10_000;
/// Comments one ticket keeps at most.
pub const MAX_COMMENTS: u64 = 1_000;
/// Files (with versions) whose threads one listing carries to the version
/// asked for: each is a diff of two files of up to 2 MiB.
pub const CARRY_BUDGET: usize = 32;
/// Comments one user may write a minute (each instance counts its own).
pub const PER_MINUTE: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum CommentError {
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error("comment not found")]
    NotFound,
    #[error("not yours to change")]
    PermissionDenied,
    /// What is wrong with the request, said to the client.
    #[error("{0}")]
    Invalid(String),
    #[error("the ticket has {0} comments")]
    TooMany(u64),
    /// Seconds until the next comment is accepted.
    #[error("too many comments")]
    RateLimited(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `POST …/comments`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewComment {
    /// Markdown, 1 to 10,000 characters.
    pub body: String,
    /// A reply: the id of the thread's first comment (then nothing below
    /// is read: a reply sits in its thread).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The file (absent: the whole ticket).
    #[serde(default)]
    pub path: Option<String>,
    /// The version it is written on (absent: the newest).
    #[serde(default)]
    pub version: Option<i64>,
    /// The lines (absent: the whole file); `line_end` defaults to
    /// `line_start`.
    #[serde(default)]
    pub line_start: Option<i64>,
    #[serde(default)]
    pub line_end: Option<i64>,
}

/// One comment as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommentView {
    pub id: String,
    pub author: DisplayData,
    /// As written (Markdown): only in your own comments (to edit them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Rendered and sanitised: no raw HTML, no images (a link instead),
    /// links `rel="noopener noreferrer nofollow"`.
    pub body_html: String,
    /// Unix milliseconds.
    pub create_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_time: Option<i64>,
}

/// Lines of a file.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Lines {
    pub line_start: i64,
    pub line_end: i64,
}

/// A thread, as seen at one version of the ticket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Thread {
    #[serde(flatten)]
    pub comment: CommentView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The version it was written on.
    pub version: i64,
    /// The lines it was written on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Lines>,
    /// Where it shows at the version asked for: its lines there when they
    /// did not change; absent when it is outdated (or not on lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Lines>,
    /// Its lines (or file) changed since, or its file is gone.
    pub outdated: bool,
    /// Not placed at this version: a listing works out the places of at
    /// most [`CARRY_BUDGET`] files' threads (each a diff); the rest are
    /// shown where they were written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unplaced: bool,
    pub resolved: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    pub replies: Vec<CommentView>,
}

/// Writes a comment: a new thread, or a reply. Returns the thread as at
/// the comment's version.
pub async fn post(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    new: NewComment,
) -> Result<Thread, CommentError> {
    let ticket = tickets::read(ctx, me, path_user, ticket_id).await?;
    // Counted before any work: refused attempts cost their turn too.
    RATE.take(&me.id).map_err(CommentError::RateLimited)?;
    let body = checked_body(&new.body)?;
    if ctx.store.comments.count(&ticket.id).await? >= MAX_COMMENTS {
        return Err(CommentError::TooMany(MAX_COMMENTS));
    }
    let mut record = CommentRecord {
        id: ObjectId::new(),
        ticket_id: ticket.id.clone(),
        author_id: me.id.clone(),
        reply_to: None,
        path: None,
        version: ticket.newest_version(),
        line_start: None,
        line_end: None,
        body,
        create_time: super::now_millis(),
        edit_time: None,
        resolved: false,
        resolved_by: None,
    };
    let root = match &new.reply_to {
        Some(id) => {
            let root = root_of(ctx, &ticket, id).await?;
            record.reply_to = Some(root.id);
            record.version = root.version;
            Some(root)
        }
        None => {
            anchor(ctx, &ticket, &new, &mut record).await?;
            None
        }
    };
    ctx.store.comments.insert(&record).await?;
    let version = record.version;
    notify::commented(ctx, &ticket, &record, root.as_ref()).await;
    let thread_id = root.map_or(record.id, |r| r.id);
    list_at(ctx, me, &ticket, version, Some(thread_id))
        .await?
        .pop()
        .ok_or(CommentError::NotFound)
}

/// The threads of a ticket, as at `version` (absent: the newest).
pub async fn list(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    version: Option<i64>,
) -> Result<Vec<Thread>, CommentError> {
    let ticket = tickets::read(ctx, me, path_user, ticket_id).await?;
    let version = version.unwrap_or(ticket.newest_version());
    if ticket.files_at(version).is_none() {
        return Err(TicketError::VersionNotFound.into());
    }
    list_at(ctx, me, &ticket, version, None).await
}

/// Changes a comment's body: its author only.
pub async fn edit(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    comment_id: &str,
    body: &str,
) -> Result<CommentView, CommentError> {
    let (_, mut comment) = find(ctx, me, path_user, ticket_id, comment_id).await?;
    if comment.author_id != me.id {
        return Err(CommentError::PermissionDenied);
    }
    let body = checked_body(body)?;
    let time = super::now_millis();
    if !ctx.store.comments.edit(comment.id, &body, time).await? {
        return Err(CommentError::NotFound);
    }
    comment.body = body;
    comment.edit_time = Some(time);
    let authors = authors(ctx, std::slice::from_ref(&comment)).await?;
    Ok(view(me, &comment, &authors))
}

/// Removes a comment (a first comment with its thread): its author, or
/// the ticket's.
pub async fn delete(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    comment_id: &str,
) -> Result<(), CommentError> {
    let (ticket, comment) = find(ctx, me, path_user, ticket_id, comment_id).await?;
    if comment.author_id != me.id && ticket.author_id != me.id {
        return Err(CommentError::PermissionDenied);
    }
    ctx.store.comments.delete(comment.id).await?;
    Ok(())
}

/// Resolves or reopens a thread: its first comment's author, or the
/// ticket's.
pub async fn resolve(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    comment_id: &str,
    resolved: bool,
) -> Result<(), CommentError> {
    let (ticket, comment) = find(ctx, me, path_user, ticket_id, comment_id).await?;
    if comment.reply_to.is_some() {
        return Err(CommentError::Invalid(
            "Only a thread's first comment is resolved".into(),
        ));
    }
    if comment.author_id != me.id && ticket.author_id != me.id {
        return Err(CommentError::PermissionDenied);
    }
    if !ctx
        .store
        .comments
        .resolve(comment.id, resolved, &me.id)
        .await?
    {
        return Err(CommentError::NotFound);
    }
    Ok(())
}

fn checked_body(body: &str) -> Result<String, CommentError> {
    let body = body.trim_end();
    let chars = body.chars().count();
    if body.trim().is_empty() || chars > MAX_BODY_CHARS {
        return Err(CommentError::Invalid(format!(
            "A comment is 1 to {MAX_BODY_CHARS} characters ({chars} given)"
        )));
    }
    Ok(body.to_owned())
}

/// Checks and sets where a new thread is anchored.
async fn anchor(
    ctx: &Context,
    ticket: &TicketRecord,
    new: &NewComment,
    record: &mut CommentRecord,
) -> Result<(), CommentError> {
    let version = new.version.unwrap_or(ticket.newest_version());
    let files = ticket
        .files_at(version)
        .ok_or(TicketError::VersionNotFound)?;
    record.version = version;
    let Some(path) = &new.path else {
        if new.line_start.is_some() || new.line_end.is_some() {
            return Err(CommentError::Invalid("Lines need a `path`".into()));
        }
        return Ok(());
    };
    let file = files
        .iter()
        .find(|f| &f.path == path)
        .ok_or(files::FileError::NotFound)?;
    record.path = Some(path.clone());
    let Some(start) = new.line_start else {
        if new.line_end.is_some() {
            return Err(CommentError::Invalid(
                "`line_end` needs `line_start`".into(),
            ));
        }
        return Ok(());
    };
    let end = new.line_end.unwrap_or(start);
    if start < 1 || end < start {
        return Err(CommentError::Invalid(format!(
            "Lines {start}-{end} are not a range of lines"
        )));
    }
    match diff::lines_of(ctx, file).await? {
        Some(count) if end as usize <= count => {}
        Some(count) => {
            return Err(CommentError::Invalid(format!(
                "The file has {count} lines; line {end} is past its end"
            )));
        }
        None => {
            return Err(CommentError::Invalid(
                "Lines of a binary or very large file cannot be commented on; comment on the file"
                    .into(),
            ));
        }
    }
    record.line_start = Some(start);
    record.line_end = Some(end);
    Ok(())
}

/// The first comment of the thread `id` names, in this ticket.
async fn root_of(
    ctx: &Context,
    ticket: &TicketRecord,
    id: &str,
) -> Result<CommentRecord, CommentError> {
    let comment = comment_of(ctx, ticket, id).await?;
    if comment.reply_to.is_some() {
        return Err(CommentError::Invalid(
            "`reply_to` names a thread's first comment".into(),
        ));
    }
    Ok(comment)
}

/// A comment of a ticket the requester can read.
async fn find(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    comment_id: &str,
) -> Result<(TicketRecord, CommentRecord), CommentError> {
    let ticket = tickets::read(ctx, me, path_user, ticket_id).await?;
    let comment = comment_of(ctx, &ticket, comment_id).await?;
    Ok((ticket, comment))
}

/// The comment `id` of `ticket` (an id of another ticket's is not found).
async fn comment_of(
    ctx: &Context,
    ticket: &TicketRecord,
    id: &str,
) -> Result<CommentRecord, CommentError> {
    let id = ObjectId::parse_str(id).map_err(|_| CommentError::NotFound)?;
    ctx.store
        .comments
        .get(&ticket.id, id)
        .await?
        .ok_or(CommentError::NotFound)
}

/// Every thread of `ticket` (or only the thread `only`) with its
/// replies, placed at `version`.
async fn list_at(
    ctx: &Context,
    me: &Requester,
    ticket: &TicketRecord,
    version: i64,
    only: Option<ObjectId>,
) -> Result<Vec<Thread>, CommentError> {
    let mut all = ctx.store.comments.of_ticket(&ticket.id).await?;
    if let Some(only) = only {
        all.retain(|c| c.id == only || c.reply_to == Some(only));
    }
    let authors = authors(ctx, &all).await?;
    let mut replies: HashMap<ObjectId, Vec<CommentView>> = HashMap::new();
    for c in all.iter().filter(|c| c.reply_to.is_some()) {
        if let Some(root) = c.reply_to {
            replies.entry(root).or_default().push(view(me, c, &authors));
        }
    }
    let roots: Vec<&CommentRecord> = all.iter().filter(|c| c.reply_to.is_none()).collect();
    let positions = place(ctx, ticket, &roots, version).await?;
    Ok(roots
        .into_iter()
        .zip(positions)
        .map(|(root, (position, outdated, unplaced))| Thread {
            comment: view(me, root, &authors),
            path: root.path.clone(),
            version: root.version,
            lines: root.line_start.zip(root.line_end).map(|(s, e)| Lines {
                line_start: s,
                line_end: e,
            }),
            position,
            outdated,
            unplaced,
            resolved: root.resolved,
            resolved_by: root.resolved_by.clone(),
            replies: replies.remove(&root.id).unwrap_or_default(),
        })
        .collect())
}

/// Where each root shows at `version`, and whether it is outdated. Line
/// threads of one file and version are carried together (one diff).
async fn place(
    ctx: &Context,
    ticket: &TicketRecord,
    roots: &[&CommentRecord],
    version: i64,
) -> Result<Vec<(Option<Lines>, bool, bool)>, CommentError> {
    let mut out = vec![(None, false, false); roots.len()];
    let there = ticket.files_at(version).unwrap_or(&[]);
    let mut groups: HashMap<(String, i64), Vec<usize>> = HashMap::new();
    for (i, root) in roots.iter().enumerate() {
        let Some(path) = &root.path else { continue };
        let now = there.iter().find(|f| &f.path == path);
        let then = ticket
            .files_at(root.version)
            .and_then(|f| f.iter().find(|f| &f.path == path));
        match (root.line_start.zip(root.line_end), now, then) {
            (_, None, _) | (_, _, None) => out[i] = (None, true, false),
            (None, Some(a), Some(b)) => out[i] = (None, a.sha256 != b.sha256, false),
            (Some(_), Some(_), Some(_)) => groups
                .entry((path.clone(), root.version))
                .or_default()
                .push(i),
        }
    }
    // Each group is a diff of two files of up to 2 MiB: a listing carries
    // at most this many; the rest show where they were written, said so.
    let mut budget = CARRY_BUDGET;
    for ((path, from_version), members) in groups {
        if budget == 0 {
            for &i in &members {
                out[i] = (None, false, true);
            }
            continue;
        }
        budget -= 1;
        let (Some(from), Some(to)) = (
            ticket
                .files_at(from_version)
                .and_then(|f| f.iter().find(|f| f.path == path)),
            there.iter().find(|f| f.path == path),
        ) else {
            continue;
        };
        let ranges: Vec<(i64, i64)> = members
            .iter()
            .filter_map(|&i| roots[i].line_start.zip(roots[i].line_end))
            .collect();
        let carried = diff::carry(ctx, from, to, ranges).await?;
        for (&i, moved) in members.iter().zip(carried) {
            out[i] = match moved {
                Some((s, e)) => (
                    Some(Lines {
                        line_start: s,
                        line_end: e,
                    }),
                    false,
                    false,
                ),
                None => (None, true, false),
            };
        }
    }
    Ok(out)
}

/// The display data of every comment's author (one query).
async fn authors(
    ctx: &Context,
    comments: &[CommentRecord],
) -> Result<HashMap<String, DisplayData>, CommentError> {
    let mut ids: Vec<String> = comments.iter().map(|c| c.author_id.clone()).collect();
    ids.sort();
    ids.dedup();
    Ok(ctx
        .store
        .users
        .profiles(ids)
        .await?
        .into_iter()
        .map(|p| (p.id.clone(), DisplayData::new(&p, ctx.is_admin(&p.id))))
        .collect())
}

/// A comment as shown to `me`: its Markdown source only to its author
/// (for editing; everyone else reads the rendered HTML).
fn view(me: &Requester, c: &CommentRecord, authors: &HashMap<String, DisplayData>) -> CommentView {
    let author = authors
        .get(&c.author_id)
        .cloned()
        .unwrap_or_else(|| DisplayData::new(&UserProfile::unknown(&c.author_id), false));
    CommentView {
        id: c.id.to_hex(),
        author,
        body: (c.author_id == me.id).then(|| c.body.clone()),
        body_html: markdown::render(&c.body),
        create_time: c.create_time,
        edit_time: c.edit_time,
    }
}

/// Comments per user per minute, in this instance.
static RATE: std::sync::LazyLock<super::rate::RateLimit> =
    std::sync::LazyLock::new(|| super::rate::RateLimit::new(PER_MINUTE, Duration::from_secs(60)));
