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
    /// Every version, oldest first, once the ticket has a second one
    /// (until then its one version is the ticket itself). Versions are
    /// numbered from 1 without gaps, so their count is the newest's
    /// number. `files` above are always the newest version's: readers of
    /// the original API see the newest without knowing of versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionRecord>,
    /// Not stored: the version `files` are of when a read asked for an
    /// older one ([`TicketRecord::at_version`]).
    #[serde(skip)]
    pub shown_version: Option<i64>,
}

/// One version of a ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: i64,
    /// Unix milliseconds.
    pub create_time: i64,
    pub remark: String,
    /// The key of the upload that made it (see `blobs`).
    pub key: String,
    /// Its files; absent for the newest, whose files are the ticket's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<StoredFile>>,
}

/// Versions a ticket keeps at most: every version is in the ticket's one
/// document, which MongoDB limits to 16 MiB.
pub const MAX_VERSIONS: usize = 100;
/// The most a ticket's record may weigh with a new version (BSON bytes):
/// long paths in many files fill the document before [`MAX_VERSIONS`].
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

impl TicketRecord {
    pub fn file(&self, path: &str) -> Option<&StoredFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Whether the record stays within [`MAX_RECORD_BYTES`].
    pub fn fits(&self) -> bool {
        mongodb::bson::to_vec(self).is_ok_and(|b| b.len() <= MAX_RECORD_BYTES)
    }

    /// The newest version's number.
    pub fn newest_version(&self) -> i64 {
        self.versions.last().map_or(1, |v| v.version)
    }

    /// Every version, oldest first (without its files), with its files.
    pub fn version_list(&self) -> Vec<(VersionRecord, &[StoredFile])> {
        if self.versions.is_empty() {
            return vec![(self.first_version(), &self.files)];
        }
        self.versions
            .iter()
            .map(|v| {
                let about = VersionRecord {
                    version: v.version,
                    create_time: v.create_time,
                    remark: v.remark.clone(),
                    key: v.key.clone(),
                    files: None,
                };
                (about, self.files_at(v.version).unwrap_or(&self.files))
            })
            .collect()
    }

    /// The files of `version`, or `None` if the ticket has no such version.
    pub fn files_at(&self, version: i64) -> Option<&[StoredFile]> {
        if version == self.newest_version() {
            return Some(&self.files);
        }
        self.versions
            .iter()
            .find(|v| v.version == version)?
            .files
            .as_deref()
    }

    fn first_version(&self) -> VersionRecord {
        VersionRecord {
            version: 1,
            create_time: self.create_time,
            remark: self.remark.clone(),
            key: self.id.clone(),
            files: None,
        }
    }

    /// The ticket as it was at `version` (its files), or `None` if it has
    /// no such version.
    pub fn at_version(mut self, version: i64) -> Option<TicketRecord> {
        if version == self.newest_version() {
            return Some(self);
        }
        let files = self
            .versions
            .iter_mut()
            .find(|v| v.version == version)?
            .files
            .take()?;
        self.files = files;
        self.shown_version = Some(version);
        Some(self)
    }

    /// The version `files` are of.
    pub fn version(&self) -> i64 {
        self.shown_version.unwrap_or_else(|| self.newest_version())
    }

    /// The keys of every version's upload (see `blobs`).
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.id.clone()];
        keys.extend(self.versions.iter().map(|v| v.key.clone()));
        keys.dedup();
        keys
    }

    /// Every stored file any version uses, each once.
    pub fn all_file_ids(&self) -> Vec<mongodb::bson::oid::ObjectId> {
        let mut ids: Vec<_> = self.files.iter().map(|f| f.file_id).collect();
        for v in &self.versions {
            ids.extend(v.files.iter().flatten().map(|f| f.file_id));
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// Makes `files` the newest version.
    pub fn add_version(&mut self, key: &str, files: Vec<StoredFile>, remark: String, time: i64) {
        if self.versions.is_empty() {
            self.versions.push(self.first_version());
        }
        let old = std::mem::replace(&mut self.files, files);
        if let Some(newest) = self.versions.last_mut() {
            newest.files = Some(old);
        }
        self.versions.push(VersionRecord {
            version: self.newest_version() + 1,
            create_time: time,
            remark,
            key: key.to_owned(),
            files: None,
        });
    }

    /// A filter that matches this record only while it has as many
    /// versions as now: writes that depend on the versions read use it.
    fn unchanged_versions(&self) -> Document {
        if self.versions.is_empty() {
            doc! { "versions": { "$exists": false } }
        } else {
            doc! { "versions": { "$size": self.versions.len() as i64 } }
        }
    }
}

/// What a list reads of each ticket: all but older versions' files (a
/// ticket with many versions weighs up to [`MAX_RECORD_BYTES`]).
fn listed() -> Document {
    doc! { "versions.files": 0 }
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
        // The janitor asks whether a version's upload was recorded.
        let by_key = IndexModel::builder()
            .keys(doc! { "versions.key": 1 })
            .build();
        self.tickets.create_index(by_key).await?;
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

    /// Which of these upload keys (ticket ids, or keys of versions) are
    /// recorded.
    pub async fn recorded(&self, keys: Vec<String>) -> Result<std::collections::HashSet<String>> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let wanted: std::collections::HashSet<String> = keys.iter().cloned().collect();
        let tickets = self.tickets.clone_with_type::<Document>();
        let filter = doc! { "$or": [
            { "_id": { "$in": &keys } },
            { "versions.key": { "$in": &keys } },
        ] };
        let projection = doc! { "_id": 1, "versions.key": 1 };
        let docs = super::find_projected(&self.gate, tickets, filter, projection).await?;
        let mut found = std::collections::HashSet::new();
        for d in &docs {
            if let Ok(id) = d.get_str("_id") {
                found.insert(id.to_owned());
            }
            for v in d.get_array("versions").into_iter().flatten() {
                if let Some(key) = v.as_document().and_then(|v| v.get_str("key").ok()) {
                    found.insert(key.to_owned());
                }
            }
        }
        found.retain(|k| wanted.contains(k));
        Ok(found)
    }

    /// Writes `record`'s versions and newest files if the stored record
    /// still has the versions `read` had; whether it did (else another
    /// version came first, or the ticket went).
    pub async fn save_versions(&self, read: &TicketRecord, record: &TicketRecord) -> Result<bool> {
        let mut filter = read.unchanged_versions();
        filter.insert("_id", &read.id);
        filter.insert("author_id", &read.author_id);
        let versions =
            mongodb::bson::to_bson(&record.versions).map_err(mongodb::error::Error::from)?;
        let files = mongodb::bson::to_bson(&record.files).map_err(mongodb::error::Error::from)?;
        let tickets = self.tickets.clone();
        self.gate
            .run(async move {
                let updated = tickets
                    .update_one(
                        filter,
                        doc! { "$set": { "versions": versions, "files": files } },
                    )
                    .await?;
                Ok(updated.matched_count == 1)
            })
            .await
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
                    let cursor = tickets
                        .find(range)
                        .sort(doc! { "seq": -1 })
                        .projection(listed())
                        .await?;
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
                    .projection(listed())
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

    /// Removes the record whoever its author, unless it has a second
    /// version; whether it did.
    pub async fn remove_unversioned(&self, id: &str) -> Result<bool> {
        let (tickets, filter) = (
            self.tickets.clone(),
            doc! { "_id": id, "versions": { "$exists": false } },
        );
        self.gate
            .run(async move { Ok(tickets.delete_one(filter).await?.deleted_count > 0) })
            .await
    }

    /// Removes `read`'s record if it is still as read (its author, its
    /// versions); whether it did. (`deleteOne`, for the reason given at
    /// [`Self::update`].)
    pub async fn delete(&self, read: &TicketRecord) -> Result<bool> {
        let mut filter = read.unchanged_versions();
        filter.insert("_id", &read.id);
        filter.insert("author_id", &read.author_id);
        let tickets = self.tickets.clone();
        self.gate
            .run(async move { Ok(tickets.delete_one(filter).await?.deleted_count > 0) })
            .await
    }
}
