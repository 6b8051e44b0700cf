//! The `comments` collection: review comments on tickets. A thread is its
//! first comment (the *root*: where it is anchored, whether it is
//! resolved) and the replies that name it. Comments are read by ticket
//! (indexed); a ticket holds at most `MAX_COMMENTS`, so a ticket's
//! comments are read whole.

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{doc, oid::ObjectId},
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result};

const COMMENTS: &str = "comments";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommentRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub ticket_id: String,
    pub author_id: String,
    /// The root of the thread this replies to; `None` for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ObjectId>,
    /// Where a root is anchored: a file (absent: the whole ticket)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// …of this version…
    pub version: i64,
    /// …and these lines (absent: the whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_end: Option<i64>,
    /// Markdown, as written.
    pub body: String,
    /// Unix milliseconds.
    pub create_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_time: Option<i64>,
    /// Roots only.
    #[serde(default)]
    pub resolved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
}

#[derive(Clone)]
pub struct CommentStore {
    comments: Collection<CommentRecord>,
    gate: Gate,
}

impl CommentStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            comments: db.collection(COMMENTS),
            gate,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        let by_ticket = IndexModel::builder().keys(doc! { "ticket_id": 1 }).build();
        self.comments.create_index(by_ticket).await?;
        Ok(())
    }

    /// Every comment of a ticket, oldest first.
    pub async fn of_ticket(&self, ticket_id: &str) -> Result<Vec<CommentRecord>> {
        let (comments, filter) = (self.comments.clone(), doc! { "ticket_id": ticket_id });
        let mut all: Vec<CommentRecord> = self
            .gate
            .run(async move { Ok(comments.find(filter).await?.try_collect().await?) })
            .await?;
        all.sort_by_key(|c| (c.create_time, c.id));
        Ok(all)
    }

    pub async fn count(&self, ticket_id: &str) -> Result<u64> {
        let (comments, filter) = (self.comments.clone(), doc! { "ticket_id": ticket_id });
        self.gate
            .run(async move { Ok(comments.count_documents(filter).await?) })
            .await
    }

    pub async fn get(&self, ticket_id: &str, id: ObjectId) -> Result<Option<CommentRecord>> {
        let (comments, filter) = (
            self.comments.clone(),
            doc! { "_id": id, "ticket_id": ticket_id },
        );
        self.gate
            .run(async move { Ok(comments.find_one(filter).await?) })
            .await
    }

    pub async fn insert(&self, comment: &CommentRecord) -> Result<()> {
        let (comments, comment) = (self.comments.clone(), comment.clone());
        self.gate
            .run(async move {
                comments.insert_one(comment).await?;
                Ok(())
            })
            .await
    }

    /// A new body; whether the comment was there.
    pub async fn edit(&self, id: ObjectId, body: &str, time: i64) -> Result<bool> {
        let (comments, filter, update) = (
            self.comments.clone(),
            doc! { "_id": id },
            doc! { "$set": { "body": body, "edit_time": time } },
        );
        self.gate
            .run(async move { Ok(comments.update_one(filter, update).await?.matched_count == 1) })
            .await
    }

    /// Resolves or reopens a thread; whether its root was there.
    pub async fn resolve(&self, id: ObjectId, resolved: bool, by: &str) -> Result<bool> {
        let set = if resolved {
            doc! { "$set": { "resolved": true, "resolved_by": by } }
        } else {
            doc! { "$set": { "resolved": false }, "$unset": { "resolved_by": "" } }
        };
        let (comments, filter) = (
            self.comments.clone(),
            doc! { "_id": id, "reply_to": { "$exists": false } },
        );
        self.gate
            .run(async move { Ok(comments.update_one(filter, set).await?.matched_count == 1) })
            .await
    }

    /// Removes a comment, and with a root its replies.
    pub async fn delete(&self, id: ObjectId) -> Result<()> {
        let (comments, filter) = (
            self.comments.clone(),
            doc! { "$or": [ { "_id": id }, { "reply_to": id } ] },
        );
        self.gate
            .run(async move {
                comments.delete_many(filter).await?;
                Ok(())
            })
            .await
    }

    /// Removes every comment of a deleted ticket.
    pub async fn delete_ticket(&self, ticket_id: &str) -> Result<()> {
        let (comments, filter) = (self.comments.clone(), doc! { "ticket_id": ticket_id });
        self.gate
            .run(async move {
                comments.delete_many(filter).await?;
                Ok(())
            })
            .await
    }
}
