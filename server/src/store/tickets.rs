//! The `tickets` collection. A ticket record is written only after all of its
//! bytes are safely in GridFS, so a record always points at complete files.

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{Document, doc},
};
use serde::{Deserialize, Serialize};

use super::{Gate, Numbering, Result, SeqRange, StoredFile, UserProfile, WriteBatch};

const TICKETS: &str = "tickets";

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
    /// The author's running number of the ticket: lists are read by
    /// ranges of it (see [`TicketStore::list`]). Absent only on tickets
    /// from before numbering, until [`TicketStore::number_legacy`] ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
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

/// Which of an author's tickets a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    All,
    PublicOnly,
}

#[derive(Clone)]
pub struct TicketStore {
    tickets: Collection<TicketRecord>,
    gate: Gate,
    numbering: Numbering,
}

impl TicketStore {
    pub fn new(db: &Database, gate: Gate, numbering: Numbering) -> Self {
        Self {
            tickets: db.collection(TICKETS),
            gate,
            numbering,
        }
    }

    /// The author's next ticket number, and the author as recorded (see
    /// `numbering`).
    pub async fn next_number(&self, author: &UserProfile) -> Result<(UserProfile, i64)> {
        self.numbering.next(author).await
    }

    pub(super) fn numbering(&self) -> &Numbering {
        &self.numbering
    }

    /// A login through this process (see [`Numbering::saw`]).
    pub fn saw_login(&self, profile: &UserProfile) {
        self.numbering.saw(profile);
    }

    /// Gives the tickets of earlier versions their numbers (see
    /// [`Numbering::number_legacy`]).
    pub async fn number_legacy(&self) -> Result<()> {
        self.numbering.number_legacy(self).await
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        // Lists go by number; the index by time that earlier versions
        // listed with would only cost every insert.
        super::drop_index(&self.tickets, "author_id_1_create_time_-1").await?;
        let by_number = IndexModel::builder()
            .keys(doc! { "author_id": 1, "seq": -1 })
            .build();
        self.tickets.create_index(by_number).await?;
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
        let projection = doc! { "files.sha256": 1 };
        let docs = super::find_projected(&self.gate, tickets, filter, projection).await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_array("files").ok())
            .flatten()
            .filter_map(|f| f.as_document()?.get_str("sha256").ok())
            .filter(|h| wanted.contains(*h))
            .map(str::to_owned)
            .collect())
    }

    /// Adds the ticket's insert to `batch`, after the bytes it points at.
    pub fn insert_in(&self, batch: &mut WriteBatch, ticket: &TicketRecord) -> Result<()> {
        let document = mongodb::bson::to_document(ticket).map_err(mongodb::error::Error::from)?;
        batch.insert(TICKETS, document);
        Ok(())
    }

    /// Which of these tickets are recorded.
    pub async fn recorded(&self, ids: Vec<String>) -> Result<std::collections::HashSet<String>> {
        let tickets = self.tickets.clone_with_type();
        super::existing_ids(&self.gate, tickets, ids).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<TicketRecord>> {
        let (tickets, filter) = (self.tickets.clone(), doc! { "_id": id });
        self.gate
            .run(async move { Ok(tickets.find_one(filter).await?) })
            .await
    }

    /// A page of an author's tickets, newest first; `None` if the author
    /// has no user record. It reads ranges of ticket numbers (see
    /// `numbering`), newest first, each only as wide as the tickets still
    /// missing (doubling over gaps left by deleted or hidden tickets), so
    /// the database reads about `offset + length` tickets however many the
    /// author has. A sorted find with `limit` would be the same on a real
    /// MongoDB, but SecantusDB fetches and sorts every match before
    /// applying the limit (~150 ms at 2,000 tickets). Until the tickets of
    /// earlier versions are numbered, that sorted find is what runs.
    pub async fn list(
        &self,
        author_id: &str,
        visibility: Visibility,
        page: TicketPage,
    ) -> Result<Option<Vec<TicketRecord>>> {
        let Some(numbers) = self.numbering.range(author_id).await? else {
            return Ok(None);
        };
        let mut filter = doc! { "author_id": author_id };
        if visibility == Visibility::PublicOnly {
            filter.insert("is_public", true);
        }
        match numbers {
            Some(numbers) => self.numbered_page(filter, page, numbers).await,
            None => self.sorted_page(filter, page).await,
        }
        .map(Some)
    }

    async fn numbered_page(
        &self,
        filter: Document,
        page: TicketPage,
        numbers: SeqRange,
    ) -> Result<Vec<TicketRecord>> {
        let wanted = page.offset.saturating_add(page.length.max(0) as u64);
        let mut found: Vec<TicketRecord> = Vec::new();
        let mut high = numbers.newest;
        let mut width = (wanted as i64).max(1);
        while (found.len() as u64) < wanted && high >= numbers.lowest {
            let low = high.saturating_sub(width).max(numbers.lowest - 1);
            let mut range = filter.clone();
            range.insert("seq", doc! { "$gt": low, "$lte": high });
            let tickets = self.tickets.clone();
            let batch: Vec<TicketRecord> = self
                .gate
                .run(async move {
                    let cursor = tickets.find(range).sort(doc! { "seq": -1 }).await?;
                    Ok(cursor.try_collect().await?)
                })
                .await?;
            found.extend(batch);
            high = low;
            // The range had gaps (deleted or hidden tickets): look twice
            // as far back.
            width = width.saturating_mul(2);
        }
        Ok(found
            .into_iter()
            .skip(page.offset as usize)
            .take(page.length.max(0) as usize)
            .collect())
    }

    async fn sorted_page(&self, filter: Document, page: TicketPage) -> Result<Vec<TicketRecord>> {
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

    /// Tickets from before numbering, by author, newest first: their ids.
    pub(super) async fn unnumbered(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let tickets = self.tickets.clone_with_type::<Document>();
        let docs: Vec<Document> = self
            .gate
            .run_within(self.gate.abandon_limit(), async move {
                Ok(tickets
                    .find(doc! { "seq": { "$exists": false } })
                    .projection(doc! { "_id": 1, "author_id": 1, "create_time": 1 })
                    .await?
                    .try_collect()
                    .await?)
            })
            .await?;
        let mut by_author: std::collections::HashMap<String, Vec<(i64, String)>> =
            Default::default();
        for d in &docs {
            if let (Ok(id), Ok(author)) = (d.get_str("_id"), d.get_str("author_id")) {
                let time = d.get_i64("create_time").unwrap_or(0);
                by_author
                    .entry(author.to_owned())
                    .or_default()
                    .push((time, id.to_owned()));
            }
        }
        Ok(by_author
            .into_iter()
            .map(|(author, mut tickets)| {
                tickets.sort_by(|a, b| b.cmp(a));
                (author, tickets.into_iter().map(|(_, id)| id).collect())
            })
            .collect())
    }

    /// Gives a ticket from before numbering its number.
    pub(super) async fn set_number(&self, id: &str, seq: i64) -> Result<()> {
        let (tickets, filter) = (
            self.tickets.clone(),
            doc! { "_id": id, "seq": { "$exists": false } },
        );
        self.gate
            .run(async move {
                tickets
                    .update_one(filter, doc! { "$set": { "seq": seq } })
                    .await?;
                Ok(())
            })
            .await
    }

    /// Applies the given changes if the ticket belongs to `author_id`;
    /// whether there was such a ticket. (`updateOne`, not `findAndModify`:
    /// SecantusDB scans the whole collection for a `findAndModify`, even by
    /// `_id`, which made a change cost 200 ms at 20,000 tickets; the caller
    /// has the record already.)
    pub async fn update(
        &self,
        id: &str,
        author_id: &str,
        is_public: Option<bool>,
        remark: Option<&str>,
    ) -> Result<bool> {
        let mut set = Document::new();
        if let Some(is_public) = is_public {
            set.insert("is_public", is_public);
        }
        if let Some(remark) = remark {
            set.insert("remark", remark);
        }
        if set.is_empty() {
            // Nothing to change; the caller's check found it.
            return Ok(true);
        }
        let filter = doc! { "_id": id, "author_id": author_id };
        let tickets = self.tickets.clone();
        self.gate
            .run(async move {
                let updated = tickets.update_one(filter, doc! { "$set": set }).await?;
                Ok(updated.matched_count > 0)
            })
            .await
    }

    /// Removes the record whoever its author; whether there was one.
    pub async fn remove(&self, id: &str) -> Result<bool> {
        let (tickets, filter) = (self.tickets.clone(), doc! { "_id": id });
        self.gate
            .run(async move { Ok(tickets.delete_one(filter).await?.deleted_count > 0) })
            .await
    }

    /// Removes the record if it belongs to `author_id`; whether it did.
    /// (`deleteOne`, for the reason given at [`Self::update`].)
    pub async fn delete(&self, id: &str, author_id: &str) -> Result<bool> {
        let (tickets, filter) = (
            self.tickets.clone(),
            doc! { "_id": id, "author_id": author_id },
        );
        self.gate
            .run(async move { Ok(tickets.delete_one(filter).await?.deleted_count > 0) })
            .await
    }
}
