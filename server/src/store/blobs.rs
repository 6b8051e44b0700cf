//! Stored files shared by content: a file whose bytes are stored already
//! (found by SHA-256 and size) is not stored again; the tickets and
//! versions that hold it share one GridFS file.
//!
//! Every upload has a *key*: a new ticket's id, or a fresh id for a new
//! version of a ticket (recorded in the version, see `tickets`). A stored
//! file lists the keys that use it in `metadata.refs`, and is removed only
//! when that list is empty. Each step is a single-document update, which
//! MongoDB applies atomically whatever the number of instances:
//! - A file becomes shareable (`metadata.shared`) only in the batch that
//!   records its upload, after the record: an upload still in flight, or
//!   one that failed, owns its files alone, and its cleanup may remove
//!   them by id range as before.
//! - An upload that finds a content stored adds its key to that file's
//!   references, unless the file is being removed (`metadata.deleting`)
//!   or already holds [`MAX_REFS`] references (the document stays small;
//!   the upload then stores its own copy). It first records in its journal
//!   entry which files it asked, so whatever happens next, a cleanup knows
//!   whose references to give back.
//! - Giving back (a deletion, a failed upload) pulls the keys, then marks
//!   the files whose references are now empty as `deleting`, then removes
//!   the files so marked. A reference added before the mark keeps the file
//!   (the mark's filter no longer matches); one tried after it fails, and
//!   that upload stores its own copy.
//!
//! Files from before sharing have no `refs`: they belong to the ticket
//! their `metadata.ticket_id` names and are never shared.

use std::collections::{HashMap, HashSet};

use mongodb::bson::{Document, doc, oid::ObjectId};

use super::{FileStore, Result, WriteBatch, files::FILES};

/// References one stored file takes at most.
pub const MAX_REFS: usize = 1000;

impl FileStore {
    /// Stored files that hold these contents (SHA-256, size) and may be
    /// shared: one for each content found.
    pub async fn reusable(&self, wanted: &[(String, i64)]) -> Result<HashMap<String, ObjectId>> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let sizes: HashMap<&str, i64> = wanted.iter().map(|(h, s)| (h.as_str(), *s)).collect();
        let hashes: Vec<&str> = sizes.keys().copied().collect();
        // By the hash of shared files only (`shared_sha256` is set when a
        // file becomes shareable): files never shared, from before sharing
        // or of uploads in flight, are not even read. (One field: SecantusDB
        // leaves an index aside when the filter has a second condition,
        // `explain` shows.)
        let filter = doc! { "metadata.shared_sha256": { "$in": hashes } };
        let projection = doc! {
            "_id": 1, "length": 1, "metadata.sha256": 1, "metadata.shared": 1,
            "metadata.deleting": 1,
        };
        let docs =
            super::find_projected(&self.gate, self.files.clone(), filter, projection).await?;
        let mut found = HashMap::new();
        for d in &docs {
            let Ok(meta) = d.get_document("metadata") else {
                continue;
            };
            let (Ok(id), Ok(hash)) = (d.get_object_id("_id"), meta.get_str("sha256")) else {
                continue;
            };
            let shareable = meta.get_bool("shared").unwrap_or(false)
                && !meta.get_bool("deleting").unwrap_or(false)
                && sizes.get(hash) == length(d).as_ref();
            if shareable {
                found.entry(hash.to_owned()).or_insert(id);
            }
        }
        Ok(found)
    }

    /// Adds, in `batch`, `key` to the references of those of `ids` that
    /// may still be shared (see the module's comment).
    pub fn hold_in(&self, batch: &mut WriteBatch, key: &str, ids: &[ObjectId]) {
        let full = format!("metadata.refs.{}", MAX_REFS - 1);
        batch.update_many(
            FILES,
            doc! {
                "_id": { "$in": ids.to_vec() },
                "metadata.shared": true,
                "metadata.deleting": { "$exists": false },
                full: { "$exists": false },
            },
            doc! { "$addToSet": { "metadata.refs": key } },
        );
    }

    /// Which of `ids` list `key` among their references.
    pub async fn held_by(&self, key: &str, ids: &[ObjectId]) -> Result<HashSet<ObjectId>> {
        let filter = doc! { "_id": { "$in": ids.to_vec() }, "metadata.refs": key };
        let docs = super::find_projected(&self.gate, self.files.clone(), filter, doc! { "_id": 1 })
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect())
    }

    /// Makes the upload's own files (id, SHA-256) shareable, in the batch
    /// that records it, after the record.
    pub fn share_in(&self, batch: &mut WriteBatch, files: &[(ObjectId, String)]) {
        for (id, sha256) in files {
            batch.update_many(
                FILES,
                doc! { "_id": id },
                doc! { "$set": { "metadata.shared": true, "metadata.shared_sha256": sha256 } },
            );
        }
    }

    /// Gives back the references of `keys` on `held`, and removes the
    /// files nobody references any more (files from before sharing go when
    /// their ticket's key is given back). Idempotent: a cleanup that died
    /// half way is done again. The files that went.
    pub async fn release(&self, keys: &[String], held: &[ObjectId]) -> Result<Vec<ObjectId>> {
        if held.is_empty() || keys.is_empty() {
            return Ok(Vec::new());
        }
        let (files, ids, keys) = (self.files.clone(), held.to_vec(), keys.to_vec());
        let doomed: Vec<ObjectId> = self
            .gate
            .run(async move {
                let mine = doc! { "_id": { "$in": &ids } };
                files
                    .update_many(
                        mine.clone(),
                        doc! { "$pull": { "metadata.refs": { "$in": &keys } } },
                    )
                    .await?;
                let mut unreferenced = mine.clone();
                unreferenced.insert(
                    "$or",
                    vec![
                        doc! { "metadata.refs": { "$size": 0 } },
                        doc! {
                            "metadata.refs": { "$exists": false },
                            "metadata.ticket_id": { "$in": &keys },
                        },
                    ],
                );
                files
                    .update_many(unreferenced, doc! { "$set": { "metadata.deleting": true } })
                    .await?;
                let mut marked = mine;
                marked.insert("metadata.deleting", true);
                Ok(ids_of(&files, marked).await?)
            })
            .await?;
        self.delete_files(doomed.clone()).await?;
        Ok(doomed)
    }

    /// Removes an upload's own files (ids `first..=last`) that were never
    /// recorded, with their chunks, complete or not. A file of the range
    /// that became shared (its record landed after all) goes the way every
    /// shared file goes, through [`Self::release`]: marked before it is
    /// removed, and kept if another upload took it meanwhile.
    pub async fn release_range(&self, key: &str, first: ObjectId, last: ObjectId) -> Result<()> {
        let shared = doc! {
            "_id": { "$gte": first, "$lte": last },
            "metadata.shared": true,
        };
        let files = self.files.clone();
        let shared: Vec<ObjectId> = self
            .gate
            .run(async move { Ok(ids_of(&files, shared).await?) })
            .await?;
        let gone = self.release(&[key.to_owned()], &shared).await?;
        let keep: Vec<ObjectId> = shared.into_iter().filter(|id| !gone.contains(id)).collect();
        // Never shared: this upload's alone, nobody can take them.
        let range = doc! { "$gte": first, "$lte": last, "$nin": keep };
        let (files, chunks) = (self.files.clone(), self.chunks.clone());
        self.gate
            .run(async move {
                // Chunks first, as in `delete_files`.
                chunks
                    .delete_many(doc! { "files_id": range.clone() })
                    .await?;
                files.delete_many(doc! { "_id": range }).await?;
                Ok(())
            })
            .await
    }

    /// Removes those of `ids` that were never shared (the check of recent
    /// files: a shared file was recorded, whoever its first owner).
    pub async fn delete_unshared(&self, ids: Vec<ObjectId>) -> Result<()> {
        let filter = doc! { "_id": { "$in": ids }, "metadata.shared": { "$ne": true } };
        let files = self.files.clone();
        let unshared = self
            .gate
            .run(async move { Ok(ids_of(&files, filter).await?) })
            .await?;
        self.delete_files(unshared).await
    }
}

fn length(d: &Document) -> Option<i64> {
    d.get_i64("length")
        .ok()
        .or_else(|| d.get_i32("length").ok().map(i64::from))
}

async fn ids_of(
    files: &mongodb::Collection<Document>,
    filter: Document,
) -> mongodb::error::Result<Vec<ObjectId>> {
    use futures_util::TryStreamExt;
    let docs: Vec<Document> = files
        .find(filter)
        .projection(doc! { "_id": 1 })
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect())
}
