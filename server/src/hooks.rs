//! The small interface request handlers use to run plugins: validate an
//! upload, render a (cached) preview. It joins the plugin host to storage;
//! neither knows about the other.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use warp::http::StatusCode;

use crate::{
    app::AppState,
    error::ApiError,
    plugins::{FileInfo, FileSource, Hook, LoadedPlugin, PluginHost, Verdict},
    store::{ByteRange, CachedPreview, FileStore, StoredFile},
    telemetry::metrics,
};

/// A stored file read through GridFS, a range at a time. Plugin calls run
/// on blocking threads, so reads block on the runtime here.
struct GridFsSource {
    files: FileStore,
    file: StoredFile,
    runtime: tokio::runtime::Handle,
}

impl FileSource for GridFsSource {
    fn size(&self) -> u64 {
        self.file.size.max(0) as u64
    }

    fn read(&self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        let start = offset.min(self.size());
        let end = start.saturating_add(u64::from(len)).min(self.size());
        let stream = self.files.read(&self.file, ByteRange { start, end });
        let pieces: Vec<Bytes> = self.runtime.block_on(stream.try_collect())?;
        Ok(pieces.concat())
    }
}

fn source(state: &AppState, file: &StoredFile) -> Arc<dyn FileSource> {
    Arc::new(GridFsSource {
        files: state.store.files.clone(),
        file: file.clone(),
        runtime: tokio::runtime::Handle::current(),
    })
}

fn info(file: &StoredFile) -> FileInfo {
    FileInfo {
        path: file.path.clone(),
        content_type: file.content_type.clone(),
        size: file.size.max(0) as u64,
    }
}

/// A failing validator fails closed: the upload is refused, naming it.
fn unavailable(plugin: &LoadedPlugin) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Plugin unavailable: {}", plugin.name()),
    )
    .with_field("plugin", json!(plugin.name()))
}

/// One reason an upload was refused (`rejections` of the 422 body).
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyRejection {
    /// The file concerned; `null` for a rule about the whole ticket.
    pub file: Option<String>,
    /// The validator that refused it.
    pub plugin: String,
    pub message: String,
}

/// The 422 body of a refused upload.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "detail": "File rejected by policy",
    "rejections": [{"file": "a.exe", "plugin": "file-policy", "message": "denied_extensions: `.exe` files are not accepted"}]
}))]
pub struct PolicyRejected {
    pub detail: String,
    pub rejections: Vec<PolicyRejection>,
}

/// Runs every matching file validator on each file, then every ticket
/// validator once. All rejections are reported together (422).
pub async fn validate_upload(state: &AppState, files: &[StoredFile]) -> Result<(), ApiError> {
    let host = &state.plugins;
    let mut rejections = Vec::new();
    for file in files {
        let info = info(file);
        for plugin in host.matching(Hook::ValidateFile, &info) {
            match host
                .validate_file(&plugin, info.clone(), source(state, file))
                .await
            {
                Ok(Verdict::Accept) => {}
                Ok(Verdict::Reject(message)) => rejections.push(PolicyRejection {
                    file: Some(file.path.clone()),
                    plugin: plugin.name().to_owned(),
                    message,
                }),
                Err(_) => return Err(unavailable(&plugin)),
            }
        }
    }
    let infos: Vec<FileInfo> = files.iter().map(info).collect();
    for plugin in host.ticket_validators() {
        match host.validate_ticket(&plugin, infos.clone()).await {
            Ok(Verdict::Accept) => {}
            // Not about one file: `file` is null.
            Ok(Verdict::Reject(message)) => rejections.push(PolicyRejection {
                file: None,
                plugin: plugin.name().to_owned(),
                message,
            }),
            Err(_) => return Err(unavailable(&plugin)),
        }
    }
    if rejections.is_empty() {
        return Ok(());
    }
    Err(ApiError::unprocessable("File rejected by policy")
        .with_field("rejections", json!(rejections)))
}

/// A preview ready to send.
pub struct PreviewReply {
    pub preview: CachedPreview,
    pub cache_hit: bool,
}

/// Identifies a preview: same bytes, path, plugin build and settings give
/// the same output, so a new build or new settings miss the cache.
fn cache_key(file: &StoredFile, plugin: &LoadedPlugin) -> String {
    let mut hash = Sha256::new();
    for part in [
        file.sha256.as_bytes(),
        file.path.as_bytes(),
        plugin.name().as_bytes(),
        plugin.build.as_bytes(),
        plugin.settings_json().as_bytes(),
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// Asks matching renderers in priority order; the first preview wins.
/// Cached answers (previews and declines) are used without running the
/// plugin; a failing renderer is skipped and not cached.
pub async fn preview(state: &AppState, file: &StoredFile) -> Result<PreviewReply, ApiError> {
    let host: &Arc<PluginHost> = &state.plugins;
    let info = info(file);
    let renderers = host.matching(Hook::Render, &info);
    if renderers.is_empty() {
        return Err(no_preview());
    }
    let keys: Vec<String> = renderers.iter().map(|p| cache_key(file, p)).collect();
    let cached = state.store.previews.get_many(&keys).await?;
    for (plugin, key) in renderers.iter().zip(&keys) {
        match cached.get(key) {
            Some(Some(preview)) => {
                metrics().preview_cache(true);
                return Ok(PreviewReply {
                    preview: preview.clone(),
                    cache_hit: true,
                });
            }
            // Declined before: skip without running it.
            Some(None) => continue,
            None => {}
        }
        metrics().preview_cache(false);
        match host.render(plugin, info.clone(), source(state, file)).await {
            Ok(Some(preview)) => {
                let preview = CachedPreview {
                    plugin: plugin.name().to_owned(),
                    content_type: preview.content_type,
                    body: preview.body,
                };
                remember(state, key, plugin, Some(&preview)).await;
                return Ok(PreviewReply {
                    preview,
                    cache_hit: false,
                });
            }
            Ok(None) => remember(state, key, plugin, None).await,
            Err(_) => continue,
        }
    }
    Err(no_preview())
}

/// Caching is an optimisation: a failed write is logged, not fatal.
async fn remember(
    state: &AppState,
    key: &str,
    plugin: &LoadedPlugin,
    preview: Option<&CachedPreview>,
) {
    if let Err(error) = state
        .store
        .previews
        .put(key, &plugin.build, plugin.name(), preview)
        .await
    {
        tracing::warn!(%error, plugin = plugin.name(), "could not cache a preview");
    }
}

fn no_preview() -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "No preview available")
}
