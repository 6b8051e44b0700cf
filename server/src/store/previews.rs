//! The `previews` collection: rendered previews (and declines), keyed by a
//! hash of content, path, plugin build and settings.

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

    /// Cached answers for `keys`: `Some(preview)` or `None` for a decline.
    pub async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<HashMap<String, Option<CachedPreview>>> {
        let (previews, filter) = (self.previews.clone(), doc! { "_id": { "$in": keys } });
        let docs: Vec<PreviewDoc> = self
            .gate
            .run(async move { Ok(previews.find(filter).await?.try_collect().await?) })
            .await?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let preview = (!d.declined).then(|| CachedPreview {
                    plugin: d.plugin,
                    content_type: d.content_type,
                    body: d.body.map(|b| b.bytes).unwrap_or_default(),
                });
                (d.key, preview)
            })
            .collect())
    }

    pub async fn put(
        &self,
        key: &str,
        build: &str,
        plugin: &str,
        preview: Option<&CachedPreview>,
    ) -> Result<()> {
        let doc = PreviewDoc {
            key: key.to_owned(),
            plugin: plugin.to_owned(),
            build: build.to_owned(),
            declined: preview.is_none(),
            content_type: preview.map(|p| p.content_type.clone()).unwrap_or_default(),
            body: preview.map(|p| Binary {
                subtype: BinarySubtype::Generic,
                bytes: p.body.clone(),
            }),
            created_at: DateTime::now(),
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
