//! A ticket's versions and what changed between them, or between two
//! tickets, under the same rules as reading a ticket: who can read a
//! ticket can read its versions and diffs. A new version is an upload
//! (`upload::ingest` with `Destination::NewVersion`); only the ticket's
//! author may add one.

use serde::Serialize;
use utoipa::ToSchema;

use super::{
    Context,
    diff::{self, FileDiff, Listing},
    files::FileError,
    tickets::{self, TicketError},
};
use crate::{
    auth::Requester,
    store::{StoreError, StoredFile, TicketRecord},
};

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One version in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: i64,
    /// Unix milliseconds.
    pub create_time: i64,
    /// The note given with this version's upload (the first version's is
    /// the ticket's remark when it was created).
    pub remark: String,
    /// How many files it has.
    pub files: usize,
    /// How many paths differ from the version before (added, removed,
    /// modified or renamed); all of its files for the first.
    pub changed: usize,
}

/// One side of a diff.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffSide {
    pub user_id: String,
    pub ticket_id: String,
    /// 0: nothing (the side before a ticket's first version).
    pub version: i64,
}

/// What changed from one side to the other.
#[derive(Debug, Serialize, ToSchema)]
pub struct Compared {
    pub from: DiffSide,
    pub to: DiffSide,
    #[serde(flatten)]
    pub listing: Listing,
}

/// A ticket the requester may add a version to: its author's.
pub async fn writable(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
) -> Result<TicketRecord, TicketError> {
    let ticket = tickets::read(ctx, me, path_user, ticket_id).await?;
    if ticket.author_id != me.id {
        return Err(TicketError::PermissionDenied);
    }
    Ok(ticket)
}

/// Every version, oldest first.
pub async fn list(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
) -> Result<Vec<VersionSummary>, TicketError> {
    let ticket = tickets::read(ctx, me, path_user, ticket_id).await?;
    let mut before: &[StoredFile] = &[];
    let mut out = Vec::new();
    for (version, files) in ticket.version_list() {
        out.push(VersionSummary {
            version: version.version,
            create_time: version.create_time,
            remark: version.remark,
            files: files.len(),
            changed: diff::changed_paths(before, files),
        });
        before = files;
    }
    Ok(out)
}

/// A ticket's files at a version, for a diff: `None` is the newest, 0 is
/// nothing.
struct Side {
    ticket: TicketRecord,
    version: i64,
}

impl Side {
    fn files(&self) -> &[StoredFile] {
        if self.version == 0 {
            return &[];
        }
        self.ticket.files_at(self.version).unwrap_or(&[])
    }

    fn describe(&self) -> DiffSide {
        DiffSide {
            user_id: self.ticket.author_id.clone(),
            ticket_id: self.ticket.id.clone(),
            version: self.version,
        }
    }

    /// The file at `encoded` (a URL path), if this side has it.
    fn file(&self, encoded: &str) -> Result<Option<&StoredFile>, FileError> {
        let path = super::files::decode_path(encoded)?;
        Ok(self.files().iter().find(|f| f.path == path))
    }
}

/// The two sides of a diff between versions of one ticket: `to` absent is
/// the newest, `from` absent the version before `to` (nothing before the
/// first).
async fn versions(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(Side, Side), TicketError> {
    let ticket = tickets::read(ctx, me, path_user, ticket_id).await?;
    let newest = ticket.newest_version();
    let to = to.unwrap_or(newest);
    let from = from.unwrap_or(to - 1);
    // `from` is 0 (nothing) only as the default before the first.
    if !(1..=newest).contains(&to) || from > newest {
        return Err(TicketError::VersionNotFound);
    }
    Ok((
        Side {
            ticket: ticket.clone(),
            version: from.max(0),
        },
        Side {
            ticket,
            version: to,
        },
    ))
}

/// One side of a comparison between tickets: a ticket the requester can
/// read, at a version (absent: the newest).
async fn ticket_side(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    version: Option<i64>,
) -> Result<Side, TicketError> {
    let ticket = tickets::read(ctx, me, path_user, ticket_id).await?;
    let version = version.unwrap_or(ticket.newest_version());
    if ticket.files_at(version).is_none() {
        return Err(TicketError::VersionNotFound);
    }
    Ok(Side { ticket, version })
}

/// Where a diff's two sides come from.
pub enum Between<'a> {
    /// Versions of one ticket.
    Versions {
        user_id: &'a str,
        ticket_id: &'a str,
        from: Option<i64>,
        to: Option<i64>,
    },
    /// Two tickets, each at a version (absent: its newest).
    Tickets {
        from: (&'a str, &'a str, Option<i64>),
        to: (&'a str, &'a str, Option<i64>),
    },
}

async fn sides(
    ctx: &Context,
    me: &Requester,
    between: Between<'_>,
) -> Result<(Side, Side), TicketError> {
    match between {
        Between::Versions {
            user_id,
            ticket_id,
            from,
            to,
        } => versions(ctx, me, user_id, ticket_id, from, to).await,
        Between::Tickets { from, to } => Ok((
            ticket_side(ctx, me, from.0, from.1, from.2).await?,
            ticket_side(ctx, me, to.0, to.1, to.2).await?,
        )),
    }
}

/// What changed, path by path.
pub async fn listing(
    ctx: &Context,
    me: &Requester,
    between: Between<'_>,
) -> Result<Compared, DiffError> {
    let (from, to) = sides(ctx, me, between).await?;
    let listing = diff::listing(ctx, from.files(), to.files()).await?;
    Ok(Compared {
        from: from.describe(),
        to: to.describe(),
        listing,
    })
}

/// One path's diff; 404 when neither side has it.
pub async fn file(
    ctx: &Context,
    me: &Requester,
    between: Between<'_>,
    encoded_path: &str,
    context: usize,
) -> Result<(String, FileDiff), DiffError> {
    let (from, to) = sides(ctx, me, between).await?;
    let (before, after) = (from.file(encoded_path)?, to.file(encoded_path)?);
    let Some(path) = before.or(after).map(|f| f.path.clone()) else {
        return Err(FileError::NotFound.into());
    };
    let diff = diff::file_diff(ctx, &path, before, after, context).await?;
    Ok((path, diff))
}
