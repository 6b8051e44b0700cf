//! Who is told of what. A comment tells the ticket's author, a reply the
//! thread's people (and the ticket's author), a new version everyone who
//! commented on the ticket; never the one who did it. A notification names
//! the ticket, the file and who acted, never the comment's text, so it
//! carries nothing the ticket's visibility would not show. They are listed
//! only while the ticket is readable by the user, and read when listed.
//!
//! With `discord.bot_token` set, each is also a Discord direct message
//! (through `discord.api_base`), at most one per user and ticket every
//! [`DM_QUIET_SECS`] whatever the number of instances, with the same
//! content: who, which ticket, a link.

use std::collections::BTreeSet;

use mongodb::bson::oid::ObjectId;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Context, access};
use crate::{
    auth::Requester,
    store::{CommentRecord, MAX_LISTED, NotificationRecord, StoreError, TicketRecord},
};

/// Seconds between two direct messages to one user about one ticket.
pub const DM_QUIET_SECS: i64 = 300;
/// Notifications kept per user (the oldest go).
const KEEP: usize = 200;

/// One notification as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notification {
    pub id: String,
    /// `comment`, `reply` or `version`.
    pub kind: String,
    pub ticket_id: String,
    /// The ticket's author (for its address).
    pub user_id: String,
    /// Who acted: their display name.
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Unix milliseconds.
    pub create_time: i64,
    /// Already seen (listed before).
    pub read: bool,
}

/// `GET /notifications`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notifications {
    /// Unread before this list marked them read.
    pub unread: usize,
    /// Newest first, at most 50.
    pub items: Vec<Notification>,
}

/// A comment was written on `ticket` (a reply to `root` if given).
pub async fn commented(
    ctx: &Context,
    ticket: &TicketRecord,
    comment: &CommentRecord,
    root: Option<&CommentRecord>,
) {
    let mut to: BTreeSet<(String, &'static str)> = BTreeSet::new();
    to.insert((ticket.author_id.clone(), "comment"));
    if let Some(root) = root {
        let thread = match ctx.store.comments.of_ticket(&ticket.id).await {
            Ok(all) => all,
            Err(error) => {
                tracing::warn!(%error, "could not read a thread to notify its people");
                Vec::new()
            }
        };
        let people = std::iter::once(root.author_id.clone()).chain(
            thread
                .iter()
                .filter(|c| c.reply_to == Some(root.id))
                .map(|c| c.author_id.clone()),
        );
        for person in people {
            if person != ticket.author_id {
                to.insert((person, "reply"));
            }
        }
        if ticket.author_id != comment.author_id && root.author_id == ticket.author_id {
            to.remove(&(ticket.author_id.clone(), "comment"));
            to.insert((ticket.author_id.clone(), "reply"));
        }
    }
    let records = to
        .into_iter()
        .filter(|(user, _)| *user != comment.author_id)
        .map(|(user, kind)| NotificationRecord {
            id: ObjectId::new(),
            user_id: user,
            kind: kind.to_owned(),
            ticket_id: ticket.id.clone(),
            ticket_author: ticket.author_id.clone(),
            actor_id: comment.author_id.clone(),
            comment_id: Some(root.map_or(comment.id, |r| r.id)),
            path: root.map_or(comment.path.clone(), |r| r.path.clone()),
            version: Some(comment.version),
            create_time: comment.create_time,
            read: false,
        })
        .collect();
    deliver(ctx, ticket, records).await;
}

/// `ticket` has a new version: everyone who commented on it is told.
pub async fn new_version(ctx: &Context, ticket: &TicketRecord) {
    let commenters: BTreeSet<String> = match ctx.store.comments.of_ticket(&ticket.id).await {
        Ok(all) => all.into_iter().map(|c| c.author_id).collect(),
        Err(error) => {
            tracing::warn!(%error, "could not read the commenters to notify");
            return;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records = commenters
        .into_iter()
        .filter(|user| *user != ticket.author_id)
        .map(|user| NotificationRecord {
            id: ObjectId::new(),
            user_id: user,
            kind: "version".into(),
            ticket_id: ticket.id.clone(),
            ticket_author: ticket.author_id.clone(),
            actor_id: ticket.author_id.clone(),
            comment_id: None,
            path: None,
            version: Some(ticket.newest_version()),
            create_time: now,
            read: false,
        })
        .collect();
    deliver(ctx, ticket, records).await;
}

/// Whether `user_id` can read `ticket` now (a commenter of a ticket made
/// private since is told nothing).
fn may_read(ctx: &Context, ticket: &TicketRecord, user_id: &str) -> bool {
    let who = Requester {
        device_session: None,
        id: user_id.to_owned(),
        is_admin: ctx.is_admin(user_id),
        profile: crate::store::UserProfile::unknown(user_id),
    };
    matches!(
        access::can_read(ticket, &who, &ticket.author_id),
        access::Access::Granted
    )
}

/// Stores the notifications and sends the direct messages (on their own
/// task: Discord's pace is not the request's).
async fn deliver(ctx: &Context, ticket: &TicketRecord, mut records: Vec<NotificationRecord>) {
    records.retain(|r| may_read(ctx, ticket, &r.user_id));
    if records.is_empty() {
        return;
    }
    let users: Vec<String> = records.iter().map(|r| r.user_id.clone()).collect();
    if let Err(error) = ctx.store.notifications.insert(records.clone()).await {
        tracing::warn!(%error, "could not store notifications");
        return;
    }
    for user in &users {
        if let Err(error) = ctx.store.notifications.trim(user, KEEP).await {
            tracing::warn!(%error, "could not trim notifications");
        }
    }
    if !ctx.discord.can_message() {
        return;
    }
    // Every record of one delivery has the same actor.
    let actor = display_name(ctx, &records[0].actor_id)
        .await
        .unwrap_or_else(|_| records[0].actor_id.clone());
    let messages: Vec<(NotificationRecord, String)> = records
        .into_iter()
        .map(|record| {
            let what = match record.kind.as_str() {
                "reply" => "replied in a thread on",
                "version" => "uploaded a new version of",
                _ => "commented on",
            };
            // Who, which ticket, where: never the comment's text. The name
            // is the user's own: its Markdown is escaped, so it cannot
            // pose as a link in the bot's message.
            let content = format!(
                "{} {what} ticket {} — {}",
                escape_markdown(&actor),
                record.ticket_id,
                ticket_link(ctx, &record)
            );
            (record, content)
        })
        .collect();
    let (discord, notifications) = (ctx.discord.clone(), ctx.store.notifications.clone());
    // One task, one message at a time: a slow Discord holds one task, not
    // one per recipient.
    tokio::spawn(async move {
        for (record, content) in messages {
            match notifications
                .claim_dm(&record.user_id, &record.ticket_id, DM_QUIET_SECS)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    tracing::warn!(%error, "could not claim a direct message");
                    continue;
                }
            }
            if let Err(error) = discord.direct_message(&record.user_id, &content).await {
                tracing::warn!(%error, user_id = record.user_id, "Discord direct message failed");
                // Not sent: the next one may go at once.
                let _ = notifications
                    .release_dm(&record.user_id, &record.ticket_id)
                    .await;
            }
        }
    });
}

/// `text` with Discord's Markdown characters escaped.
fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\*_~`|>[]()#-<@:".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The app's address of the ticket: under `server.public_url`, or else
/// `discord.redirect_uri` (the app's own address when the web app is the
/// one signing in); a relative one when neither is set.
fn ticket_link(ctx: &Context, record: &NotificationRecord) -> String {
    let base = ctx
        .config
        .server
        .public_base()
        .unwrap_or_else(|| ctx.config.discord.redirect_uri.trim_end_matches('/'));
    format!("{base}/#/t/{}/{}", record.ticket_author, record.ticket_id)
}

/// The requester's notifications on tickets they can still read, newest
/// first; those listed are read from now on.
pub async fn list(ctx: &Context, me: &Requester) -> Result<Notifications, StoreError> {
    let all = readable(ctx, me, false).await?;
    let unread = all.iter().filter(|r| !r.read).count();
    let mut names: std::collections::HashMap<String, String> = Default::default();
    let mut items = Vec::new();
    for r in all.into_iter().take(MAX_LISTED as usize) {
        if !names.contains_key(&r.actor_id) {
            names.insert(r.actor_id.clone(), display_name(ctx, &r.actor_id).await?);
        }
        items.push(r);
    }
    let fresh: Vec<ObjectId> = items.iter().filter(|r| !r.read).map(|r| r.id).collect();
    ctx.store.notifications.mark_read(fresh).await?;
    Ok(Notifications {
        unread,
        items: items
            .into_iter()
            .map(|r| Notification {
                id: r.id.to_hex(),
                actor: names.get(&r.actor_id).cloned().unwrap_or_default(),
                kind: r.kind,
                ticket_id: r.ticket_id,
                user_id: r.ticket_author,
                path: r.path,
                version: r.version,
                create_time: r.create_time,
                read: r.read,
            })
            .collect(),
    })
}

/// How many unread notifications the requester has (the app's badge):
/// counting does not mark them read.
pub async fn unread(ctx: &Context, me: &Requester) -> Result<usize, StoreError> {
    Ok(readable(ctx, me, true).await?.len())
}

/// The requester's notifications (only the unread ones with
/// `only_unread`) on tickets they can still read, newest first.
async fn readable(
    ctx: &Context,
    me: &Requester,
    only_unread: bool,
) -> Result<Vec<NotificationRecord>, StoreError> {
    let mut readable = Readable::default();
    let mut out = Vec::new();
    for record in ctx.store.notifications.of_user(&me.id).await? {
        if (only_unread && record.read) || !readable.check(ctx, me, &record.ticket_id).await? {
            continue;
        }
        out.push(record);
    }
    Ok(out)
}

/// A user's name as shown: their display name, else their username, else
/// (no record) their id.
async fn display_name(ctx: &Context, user_id: &str) -> Result<String, StoreError> {
    Ok(match ctx.store.users.get(user_id).await? {
        Some(user) => user.profile.global_name.unwrap_or(user.profile.username),
        None => user_id.to_owned(),
    })
}

/// Whether the requester can read a ticket, each ticket looked up once.
#[derive(Default)]
struct Readable(std::collections::HashMap<String, bool>);

impl Readable {
    async fn check(
        &mut self,
        ctx: &Context,
        me: &Requester,
        ticket_id: &str,
    ) -> Result<bool, StoreError> {
        if let Some(known) = self.0.get(ticket_id) {
            return Ok(*known);
        }
        let readable = match ctx.store.tickets.get(ticket_id).await? {
            Some(ticket) => matches!(
                access::can_read(&ticket, me, &ticket.author_id),
                access::Access::Granted
            ),
            None => false,
        };
        self.0.insert(ticket_id.to_owned(), readable);
        Ok(readable)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_cannot_pose_as_a_link_or_a_mention() {
        assert_eq!(
            super::escape_markdown("[PD2 staff](https://x.co) @everyone"),
            r"\[PD2 staff\]\(https\://x.co\) \@everyone"
        );
    }
}
