//! Previews, in one place: `preview()` asks the renderers for a file
//! through the cache (`cache`), within the preview policy (`policy`: who
//! may render when, what a preview may be and how it is served). The
//! plugin host only runs the hooks. Failures are [`PreviewError`]s.

mod cache;
pub mod policy;

use std::{sync::Arc, time::Duration};

use self::{
    cache::{cache_key, cached_answers, dependent_key, remember},
    policy::{FailedRenders, PreviewSlots},
};
use super::{
    files,
    sources::{TicketSiblings, gridfs, info},
    text,
};
use crate::{
    config::PluginsConfig,
    plugins::{FileInfo, FileSource, Hook, MemorySource, PluginError, PluginHost},
    service::Context,
    store::{CachedAnswer, CachedPreview, StoreError, StoredFile, TicketRecord},
    telemetry::metrics,
};
pub use cache::{forget, sweep};

/// The preview service's own state: per-requester slots and renders that
/// failed recently (see `policy`).
pub struct Previews {
    slots: PreviewSlots,
    failed: FailedRenders,
}

impl Previews {
    pub fn new(config: &PluginsConfig) -> Self {
        Self {
            slots: PreviewSlots::new(config.previews_per_user as usize),
            failed: FailedRenders::new(Duration::from_secs(config.failed_render_cache_secs)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("plugins are still loading")]
    Loading,
    /// No renderer takes the file, or every one declined or failed.
    #[error("no preview available")]
    NoPreview,
    /// The requester already has this many previews rendering.
    #[error("too many previews at once (at most {0})")]
    TooMany(usize),
    /// Every renderer instance is taken.
    #[error("previews are busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Text files up to this size are read once and, when they are not UTF-8,
/// decoded before a renderer sees them (see `service::text`); larger ones
/// are read by the renderer as stored.
const DECODE_LIMIT: u64 = 4 << 20;

/// What a renderer is given to read.
struct Prepared {
    info: FileInfo,
    source: Arc<dyn FileSource>,
    /// The encoding the text was decoded from, when it was not UTF-8.
    encoding: Option<&'static str>,
}

/// The file as renderers read it: a text file in a legacy encoding as
/// UTF-8 (its type saying `charset=utf-8`), read once; anything else as
/// stored.
async fn prepare(ctx: &Context, file: &StoredFile) -> Result<Prepared, StoreError> {
    let info = info(file);
    let size = file.size.max(0) as u64;
    if !text::is_textual(&file.content_type) || size > DECODE_LIMIT {
        let source = gridfs(&ctx.store.files, file, tokio::runtime::Handle::current());
        return Ok(Prepared {
            info,
            source,
            encoding: None,
        });
    }
    let bytes = files::read_all(ctx, file).await?;
    let decoded = text::decode(&bytes).and_then(|d| d.encoding.map(|e| (d.text.into_owned(), e)));
    Ok(match decoded {
        Some((text, encoding)) => {
            let essence = file.content_type.split(';').next().unwrap_or("").trim();
            Prepared {
                info: FileInfo {
                    size: text.len() as u64,
                    content_type: format!("{essence}; charset=utf-8"),
                    ..info
                },
                source: Arc::new(MemorySource(text.into_bytes())),
                encoding: Some(encoding),
            }
        }
        None => Prepared {
            info,
            source: Arc::new(MemorySource(bytes)),
            encoding: None,
        },
    })
}

/// A preview ready to send.
pub struct PreviewReply {
    pub preview: CachedPreview,
    pub cache_hit: bool,
}

impl PreviewReply {
    /// See [`policy::etag`].
    pub fn etag(&self) -> String {
        policy::etag(&self.preview)
    }

    /// See [`policy::headers`].
    pub fn headers(&self, is_admin: bool) -> Vec<(&'static str, String)> {
        policy::headers(&self.preview, self.cache_hit, is_admin)
    }
}

/// Asks matching renderers in priority order; the first preview wins.
/// Cached answers (previews and declines) are used without running the
/// plugin; a failing renderer is skipped (and not tried again for a
/// while). A requester renders at most `plugins.previews_per_user` cold
/// previews at once.
pub async fn preview(
    ctx: &Context,
    requester: &str,
    ticket: &TicketRecord,
    file: &StoredFile,
) -> Result<PreviewReply, PreviewError> {
    let host: &Arc<PluginHost> = &ctx.plugins;
    if !host
        .ready(Duration::from_millis(ctx.config.plugins.timeout_ms))
        .await
    {
        return Err(PreviewError::Loading);
    }
    let info = info(file);
    let renderers = host.matching(Hook::Render, &info);
    if renderers.is_empty() {
        return Err(PreviewError::NoPreview);
    }
    let keys: Vec<String> = renderers
        .iter()
        .map(|p| cache_key(ticket, file, p))
        .collect();
    let answers = cached_answers(ctx, ticket, &keys).await?;
    let mut slot = None;
    let mut prepared: Option<Prepared> = None;
    for ((plugin, key), answer) in renderers.iter().zip(&keys).zip(answers) {
        match answer {
            Some(CachedAnswer::Preview(preview)) => {
                metrics().preview_cache(true);
                return Ok(PreviewReply {
                    preview,
                    cache_hit: true,
                });
            }
            // Declined before: skip without running it.
            Some(CachedAnswer::Declined) => continue,
            Some(CachedAnswer::Depends(_)) | None => {}
        }
        // A render that failed is not retried for a while: a page
        // reloaded in a loop does not run a plugin that times out again
        // and again.
        if ctx.previews.failed.contains(key) {
            continue;
        }
        if slot.is_none() {
            let previews = &ctx.previews;
            slot = Some(
                previews
                    .slots
                    .take(requester)
                    .ok_or(PreviewError::TooMany(previews.slots.per_user()))?,
            );
        }
        metrics().preview_cache(false);
        let siblings = TicketSiblings::new(&ctx.store.files, ticket);
        // Read (and decoded) once, for whichever renderer runs first.
        let text = match &prepared {
            Some(text) => text,
            None => prepared.insert(prepare(ctx, file).await?),
        };
        let encoding = text.encoding;
        let result = host
            .render(
                plugin,
                text.info.clone(),
                text.source.clone(),
                Some(siblings.clone()),
            )
            .await;
        if result
            .as_ref()
            .is_err_and(|e| !matches!(e, PluginError::Busy(_) | PluginError::Unreadable(_)))
        {
            ctx.previews.failed.insert(key);
        }
        // An answer built from other files is cached under a key that
        // covers them too; the first-level key records which they were.
        let asked = siblings.asked();
        let answer_key = if asked.is_empty() || result.is_err() {
            key.clone()
        } else {
            let key2 = dependent_key(key, ticket, &asked);
            remember(
                ctx,
                key,
                plugin,
                &file.sha256,
                &CachedAnswer::Depends(asked),
            )
            .await;
            key2
        };
        match result {
            Ok(Some(preview)) => {
                let preview = CachedPreview {
                    plugin: plugin.name().to_owned(),
                    content_type: preview.content_type,
                    body: preview.body,
                    encoding: encoding.map(str::to_owned),
                };
                let answer = CachedAnswer::Preview(preview);
                remember(ctx, &answer_key, plugin, &file.sha256, &answer).await;
                if let CachedAnswer::Preview(preview) = answer {
                    return Ok(PreviewReply {
                        preview,
                        cache_hit: false,
                    });
                }
            }
            Ok(None) => {
                remember(
                    ctx,
                    &answer_key,
                    plugin,
                    &file.sha256,
                    &CachedAnswer::Declined,
                )
                .await
            }
            Err(PluginError::Busy(_)) => return Err(PreviewError::Busy),
            // The file could not be read: no other renderer could read it
            // either, and "no preview" would not be the truth.
            Err(PluginError::Unreadable(cause)) => {
                return Err(PreviewError::Store(super::sources::read_failure(&cause)));
            }
            Err(_) => continue,
        }
    }
    Err(PreviewError::NoPreview)
}
