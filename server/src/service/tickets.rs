//! Tickets as the API offers them: list, read, change, delete, each under
//! the rules of [`super::access`], failing with a [`TicketError`].

use crate::{
    auth::{DisplayData, Requester},
    service::Context,
    store::{StoreError, TicketPage, TicketRecord, UserProfile, Visibility},
    ticket::is_ticket_id,
};

use super::access::{self, Access};

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    /// No such ticket, or one the requester may not know of.
    #[error("ticket not found")]
    NotFound,
    /// Visible, but only its author may change it.
    #[error("permission denied")]
    PermissionDenied,
    #[error("user not found")]
    UserNotFound,
    /// The ticket has no such version.
    #[error("version not found")]
    VersionNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A ticket with its author's display data.
pub struct AuthoredTicket {
    pub ticket: TicketRecord,
    pub author: DisplayData,
}

/// A page of a user's tickets (`@me` is the requester), newest first.
pub async fn list(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    page: TicketPage,
) -> Result<Vec<TicketRecord>, TicketError> {
    let author_id = me.resolve(path_user);
    let visibility = if access::lists_only_public(me, author_id) {
        Visibility::PublicOnly
    } else {
        Visibility::All
    };
    match ctx.store.tickets.list(author_id, visibility, page).await? {
        Some(tickets) => Ok(tickets),
        // The caller exists by their token (see `users`).
        None if author_id == me.id => Ok(Vec::new()),
        None => Err(TicketError::UserNotFound),
    }
}

/// A ticket the requester may read.
pub async fn read(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
) -> Result<TicketRecord, TicketError> {
    let ticket = find(ctx, ticket_id).await?;
    match access::can_read(&ticket, me, path_user) {
        Access::Granted => Ok(ticket),
        Access::Hidden | Access::Denied => Err(TicketError::NotFound),
    }
}

/// [`read`], as it was at `version` (absent: the newest).
pub async fn read_at(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    version: Option<i64>,
) -> Result<TicketRecord, TicketError> {
    let ticket = read(ctx, me, path_user, ticket_id).await?;
    match version {
        None => Ok(ticket),
        Some(version) => ticket
            .at_version(version)
            .ok_or(TicketError::VersionNotFound),
    }
}

/// [`read_at`], with the author.
pub async fn read_authored(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    version: Option<i64>,
) -> Result<AuthoredTicket, TicketError> {
    let ticket = read_at(ctx, me, path_user, ticket_id, version).await?;
    authored(ctx, ticket).await
}

/// Changes visibility and/or remark (absent: unchanged).
pub async fn update(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
    is_public: Option<bool>,
    remark: Option<&str>,
) -> Result<AuthoredTicket, TicketError> {
    let mut ticket = own(ctx, me, path_user, ticket_id).await?;
    let changed = ctx
        .store
        .tickets
        .update(ticket_id, &me.id, is_public, remark)
        .await?;
    if !changed {
        // Deleted between the check and the update.
        return Err(TicketError::NotFound);
    }
    // Only these two fields change, so the record read by the check,
    // with them applied, is the record now.
    if let Some(is_public) = is_public {
        ticket.is_public = is_public;
    }
    if let Some(remark) = remark {
        ticket.remark = remark.to_owned();
    }
    authored(ctx, ticket).await
}

/// Removes the record, then its bytes and (unless another ticket holds the
/// same content) its cached previews.
pub async fn delete(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
) -> Result<(), TicketError> {
    // A version that lands between the read and the delete makes the
    // delete miss: read again (its files are to go too). Bounded, as a
    // student cannot add versions faster than a few a second.
    let mut attempts = 0;
    let deleted = loop {
        let read = own(ctx, me, path_user, ticket_id).await?;
        if ctx.store.delete_ticket(&ctx.janitor, &read).await? {
            break read;
        }
        attempts += 1;
        if attempts >= 8 {
            return Err(StoreError::Corrupt(
                "the ticket kept changing while it was deleted".into(),
            )
            .into());
        }
    };
    super::previews::forget(ctx, &deleted).await;
    // Its comments and notifications go with it.
    if let Err(error) = ctx.store.comments.delete_ticket(ticket_id).await {
        tracing::warn!(%error, %ticket_id, "could not remove a deleted ticket's comments");
    }
    if let Err(error) = ctx.store.notifications.delete_ticket(ticket_id).await {
        tracing::warn!(%error, %ticket_id, "could not remove a deleted ticket's notifications");
    }
    tracing::info!(%ticket_id, user_id = %me.id, "ticket deleted");
    Ok(())
}

/// A user's display data (`@me` is the requester, known from the token
/// even without a record).
pub async fn user(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
) -> Result<DisplayData, TicketError> {
    let user_id = me.resolve(path_user);
    let profile = match ctx.store.users.get(user_id).await? {
        Some(user) => user.profile,
        None if user_id == me.id => me.profile.clone(),
        None => return Err(TicketError::UserNotFound),
    };
    Ok(DisplayData::new(&profile, ctx.is_admin(&profile.id)))
}

async fn own(
    ctx: &Context,
    me: &Requester,
    path_user: &str,
    ticket_id: &str,
) -> Result<TicketRecord, TicketError> {
    let ticket = find(ctx, ticket_id).await?;
    match access::can_change(&ticket, me, path_user) {
        Access::Granted => Ok(ticket),
        Access::Denied => Err(TicketError::PermissionDenied),
        Access::Hidden => Err(TicketError::NotFound),
    }
}

/// Looks a ticket up by id; a malformed id never reaches the database.
async fn find(ctx: &Context, ticket_id: &str) -> Result<TicketRecord, TicketError> {
    if !is_ticket_id(ticket_id) {
        return Err(TicketError::NotFound);
    }
    ctx.store
        .tickets
        .get(ticket_id)
        .await?
        .ok_or(TicketError::NotFound)
}

/// A ticket whose author record is gone still shows the author's id
/// rather than failing.
async fn authored(ctx: &Context, ticket: TicketRecord) -> Result<AuthoredTicket, TicketError> {
    let profile = match ctx.store.users.get(&ticket.author_id).await? {
        Some(user) => user.profile,
        None => UserProfile::unknown(&ticket.author_id),
    };
    let author = DisplayData::new(&profile, ctx.is_admin(&ticket.author_id));
    Ok(AuthoredTicket { ticket, author })
}
