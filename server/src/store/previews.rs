//! The `previews` collection: rendered previews (and declines), keyed by a
//! hash of content, path, plugin build and settings.
//!
//! Entries go when no ticket holds their content any more
//! ([`PreviewStore::forget_content`], on ticket deletion), when their build
//! has not been loaded for `plugins.preview_cache_days`, and oldest first
//! when the cache outgrows `plugins.preview_cache_max_bytes`
//! ([`PreviewStore::sweep`]).

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database,
    bson::{Binary, DateTime, doc, spec::BinarySubtype},
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result};

/// A preview as served.
#[derive(Debug, Clone)]
pub struct CachedPreview {
    /// The plugin that rendered it.
    pub plugin: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// The encoding the file's text was decoded from, when not UTF-8.
    pub encoding: Option<String>,
}

/// What the cache holds for a key.
#[derive(Debug, Clone)]
pub enum CachedAnswer {
    Preview(CachedPreview),
    /// The renderer declined: skip it next time.
    Declined,
    /// The renderer read these other files of the ticket (a Markdown
    /// file's images): its answer is cached under a second key that also
    /// covers their content, since another ticket may hold the same
    /// Markdown beside other images.
    Depends(Vec<String>),
}

#[derive(Serialize, Deserialize)]
struct PreviewDoc {
    #[serde(rename = "_id")]
    key: String,
    plugin: String,
    build: String,
    /// The renderer declined: skip it next time.
    declined: bool,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    body: Option<Binary>,
    created_at: DateTime,
    /// SHA-256 of the file content previewed (absent in entries written
    /// before it was recorded; the sweep ages those out).
    #[serde(default)]
    sha256: Option<String>,
    /// Bytes of `body`.
    #[serde(default)]
    size: i64,
    /// See [`CachedAnswer::Depends`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    depends: Vec<String>,
    /// See [`CachedPreview::encoding`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
}

/// What the size bound needs to know of an entry.
#[derive(Deserialize)]
struct Footprint {
    #[serde(rename = "_id")]
    key: String,
    #[serde(default)]
    size: i64,
}

/// What one sweep removed.
#[derive(Debug, Default)]
pub struct Swept {
    pub stale: u64,
    pub over_size: u64,
}

#[derive(Clone)]
pub struct PreviewStore {
    previews: Collection<PreviewDoc>,
    gate: Gate,
}

impl PreviewStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            previews: db.collection("previews"),
            gate,
        }
    }

    /// Cached answers for those of `keys` that have one.
    pub async fn get_many(&self, keys: &[String]) -> Result<HashMap<String, CachedAnswer>> {
        let (previews, filter) = (self.previews.clone(), doc! { "_id": { "$in": keys } });
        let docs: Vec<PreviewDoc> = self
            .gate
            .run(async move { Ok(previews.find(filter).await?.try_collect().await?) })
            .await?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let answer = if !d.depends.is_empty() {
                    CachedAnswer::Depends(d.depends)
                } else if d.declined {
                    CachedAnswer::Declined
                } else {
                    CachedAnswer::Preview(CachedPreview {
                        plugin: d.plugin,
                        content_type: d.content_type,
                        body: d.body.map(|b| b.bytes).unwrap_or_default(),
                        encoding: d.encoding,
                    })
                };
                (d.key, answer)
            })
            .collect())
    }

    pub async fn put(
        &self,
        key: &str,
        build: &str,
        plugin: &str,
        sha256: &str,
        answer: &CachedAnswer,
    ) -> Result<()> {
        let preview = match answer {
            CachedAnswer::Preview(p) => Some(p),
            _ => None,
        };
        let depends = match answer {
            CachedAnswer::Depends(paths) => paths.clone(),
            _ => Vec::new(),
        };
        let doc = PreviewDoc {
            key: key.to_owned(),
            plugin: plugin.to_owned(),
            build: build.to_owned(),
            declined: matches!(answer, CachedAnswer::Declined),
            content_type: preview.map(|p| p.content_type.clone()).unwrap_or_default(),
            body: preview.map(|p| Binary {
                subtype: BinarySubtype::Generic,
                bytes: p.body.clone(),
            }),
            created_at: DateTime::now(),
            sha256: Some(sha256.to_owned()),
            size: preview.map_or(0, |p| p.body.len() as i64),
            depends,
            encoding: preview.and_then(|p| p.encoding.clone()),
        };
        let (previews, filter) = (self.previews.clone(), doc! { "_id": key });
        self.gate
            .run(async move {
                previews.replace_one(filter, doc).upsert(true).await?;
                Ok(())
            })
            .await
    }
}

impl PreviewStore {
    /// Removes every entry rendered from one of these contents.
    pub async fn forget_content(&self, sha256s: Vec<String>) -> Result<u64> {
        if sha256s.is_empty() {
            return Ok(0);
        }
        let (previews, filter) = (self.previews.clone(), doc! { "sha256": { "$in": sha256s } });
        self.gate
            .run(async move { Ok(previews.delete_many(filter).await?.deleted_count) })
            .await
    }

    /// Removes entries of builds not loaded now that are older than
    /// `stale_before`, then the oldest entries beyond `max_bytes`.
    pub async fn sweep(
        &self,
        loaded_builds: Vec<String>,
        stale_before: DateTime,
        max_bytes: u64,
    ) -> Result<Swept> {
        let previews = self.previews.clone();
        let stale = doc! {
            "build": { "$nin": loaded_builds },
            "created_at": { "$lt": stale_before },
        };
        let stale = self
            .gate
            .run(async move { Ok(previews.delete_many(stale).await?.deleted_count) })
            .await?;

        // Newest first: what is kept is the newest `max_bytes`.
        let footprints = self.previews.clone_with_type::<Footprint>();
        let entries: Vec<Footprint> = self
            .gate
            .run(async move {
                Ok(footprints
                    .find(doc! {})
                    .projection(doc! { "_id": 1, "size": 1 })
                    .sort(doc! { "created_at": -1 })
                    .await?
                    .try_collect()
                    .await?)
            })
            .await?;
        let mut total = 0u64;
        let over: Vec<String> = entries
            .into_iter()
            .filter_map(|e| {
                total = total.saturating_add(e.size.max(0) as u64);
                (total > max_bytes).then_some(e.key)
            })
            .collect();
        let mut over_size = 0;
        for batch in over.chunks(1000) {
            let (previews, filter) = (
                self.previews.clone(),
                doc! { "_id": { "$in": batch.to_vec() } },
            );
            over_size += self
                .gate
                .run(async move { Ok(previews.delete_many(filter).await?.deleted_count) })
                .await?;
        }
        Ok(Swept { stale, over_size })
    }
}
