//! The `tickets` collection. A ticket record is written only after all of its
//! bytes are safely in GridFS, so a record always points at complete files.

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{Document, doc},
    options::ReturnDocument,
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result, StoredFile};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketRecord {
    #[serde(rename = "_id")]
    pub id: String,
    /// Discord id of the author: a plain id, never a DBRef.
    pub author_id: String,
    /// In upload order.
    pub files: Vec<StoredFile>,
    pub is_public: bool,
    pub remark: String,
    /// Unix milliseconds.
    pub create_time: i64,
}

impl TicketRecord {
    pub fn file(&self, path: &str) -> Option<&StoredFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Which slice of a user's tickets to list, newest first.
#[derive(Debug, Clone, Copy)]
pub struct TicketPage {
    pub offset: u64,
    pub length: i64,
}

#[derive(Clone)]
pub struct TicketStore {
    tickets: Collection<TicketRecord>,
    gate: Gate,
}

impl TicketStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            tickets: db.collection("tickets"),
            gate,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        let index = IndexModel::builder()
            .keys(doc! { "author_id": 1, "create_time": -1 })
            .build();
        self.tickets.create_index(index).await?;
        // Deleting a ticket asks whether another holds the same content
        // (to keep or drop its cached previews).
        let by_content = IndexModel::builder()
            .keys(doc! { "files.sha256": 1 })
            .build();
        self.tickets.create_index(by_content).await?;
        Ok(())
    }

    /// Which of these contents (SHA-256) some ticket still holds.
    pub async fn holding(&self, sha256s: Vec<String>) -> Result<std::collections::HashSet<String>> {
        let wanted: std::collections::HashSet<String> = sha256s.iter().cloned().collect();
        let tickets = self.tickets.clone_with_type::<Document>();
        let filter = doc! { "files.sha256": { "$in": sha256s } };
        let docs: Vec<Document> = self
            .gate
            .run(async move {
                Ok(tickets
                    .find(filter)
                    .projection(doc! { "files.sha256": 1 })
                    .await?
                    .try_collect()
                    .await?)
            })
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_array("files").ok())
            .flatten()
            .filter_map(|f| f.as_document()?.get_str("sha256").ok())
            .filter(|h| wanted.contains(*h))
            .map(str::to_owned)
            .collect())
    }

    pub async fn insert(&self, ticket: &TicketRecord) -> Result<()> {
        let (tickets, ticket) = (self.tickets.clone(), ticket.clone());
        self.gate
            .run(async move {
                tickets.insert_one(ticket).await?;
                Ok(())
            })
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<TicketRecord>> {
        let (tickets, filter) = (self.tickets.clone(), doc! { "_id": id });
        self.gate
            .run(async move { Ok(tickets.find_one(filter).await?) })
            .await
    }

    pub async fn list(
        &self,
        author_id: &str,
        public_only: bool,
        page: TicketPage,
    ) -> Result<Vec<TicketRecord>> {
        let mut filter = doc! { "author_id": author_id };
        if public_only {
            filter.insert("is_public", true);
        }
        let tickets = self.tickets.clone();
        self.gate
            .run(async move {
                let cursor = tickets
                    .find(filter)
                    .sort(doc! { "create_time": -1, "_id": -1 })
                    .skip(page.offset)
                    .limit(page.length)
                    .await?;
                Ok(cursor.try_collect().await?)
            })
            .await
    }

    /// Applies the given changes if the ticket belongs to `author_id`;
    /// returns the updated record, or `None` when there is no such ticket.
    pub async fn update(
        &self,
        id: &str,
        author_id: &str,
        is_public: Option<bool>,
        remark: Option<&str>,
    ) -> Result<Option<TicketRecord>> {
        let mut set = Document::new();
        if let Some(is_public) = is_public {
            set.insert("is_public", is_public);
        }
        if let Some(remark) = remark {
            set.insert("remark", remark);
        }
        let filter = doc! { "_id": id, "author_id": author_id };
        let tickets = self.tickets.clone();
        self.gate
            .run(async move {
                if set.is_empty() {
                    return Ok(tickets.find_one(filter).await?);
                }
                Ok(tickets
                    .find_one_and_update(filter, doc! { "$set": set })
                    .return_document(ReturnDocument::After)
                    .await?)
            })
            .await
    }

    /// Removes the record if it belongs to `author_id` and returns it, so the
    /// caller can then remove its bytes.
    pub async fn delete(&self, id: &str, author_id: &str) -> Result<Option<TicketRecord>> {
        let (tickets, filter) = (
            self.tickets.clone(),
            doc! { "_id": id, "author_id": author_id },
        );
        self.gate
            .run(async move { Ok(tickets.find_one_and_delete(filter).await?) })
            .await
    }
}
