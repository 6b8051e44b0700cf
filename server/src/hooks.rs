//! The small interface request handlers use to run plugins: validate an
//! upload, render a (cached) preview. It joins the plugin host to storage;
//! neither knows about the other.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, future::BoxFuture, stream::FuturesUnordered};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use warp::http::StatusCode;

use crate::{
    app::AppState,
    error::ApiError,
    plugins::{
        CallResult, Conflict, FileInfo, FileSource, Hook, LoadedPlugin, PluginError, PluginHost,
        TicketFiles, Verdict, bounded_text,
    },
    store::{ByteRange, CachedAnswer, CachedPreview, FileStore, StoredFile, TicketRecord},
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

/// The other files of the ticket a preview is rendered for, as a renderer
/// sees them through `open-file`; remembers which paths it asked for, so
/// the preview is cached together with their content.
struct TicketSiblings {
    files: FileStore,
    ticket: Vec<StoredFile>,
    runtime: tokio::runtime::Handle,
    asked: Mutex<Vec<String>>,
}

impl TicketSiblings {
    fn new(state: &AppState, ticket: &TicketRecord) -> Arc<Self> {
        Arc::new(Self {
            files: state.store.files.clone(),
            ticket: ticket.files.clone(),
            runtime: tokio::runtime::Handle::current(),
            asked: Mutex::new(Vec::new()),
        })
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl TicketFiles for TicketSiblings {
    fn open(&self, path: &str) -> Option<(FileInfo, Arc<dyn FileSource>)> {
        if let Ok(mut asked) = self.asked.lock()
            && !asked.iter().any(|a| a == path)
        {
            asked.push(path.to_owned());
        }
        let file = self.ticket.iter().find(|f| f.path == path)?;
        let source = GridFsSource {
            files: self.files.clone(),
            file: file.clone(),
            runtime: self.runtime.clone(),
        };
        Some((info(file), Arc::new(source)))
    }
}

/// The key of an answer that depends on other files of the ticket: the
/// first-level key plus each file's path and content hash (`-` when the
/// ticket has no such file).
fn dependent_key(key: &str, ticket: &TicketRecord, paths: &[String]) -> String {
    let mut hash = Sha256::new();
    hash.update(key.as_bytes());
    for path in paths {
        let sha = ticket.file(path).map_or("-", |f| f.sha256.as_str());
        for part in [path.as_bytes(), sha.as_bytes()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    hex::encode(hash.finalize())
}

fn info(file: &StoredFile) -> FileInfo {
    FileInfo {
        path: file.path.clone(),
        content_type: file.content_type.clone(),
        size: file.size.max(0) as u64,
    }
}

/// A failing validator fails closed: the upload is refused, naming it.
fn unavailable(plugin: &LoadedPlugin, error: &PluginError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Plugin unavailable: {}", plugin.name()),
    )
    .with_field("plugin", json!(plugin.name()))
    .with_field("reason", json!(error.kind()))
}

/// Two files claim the name of a validator this upload needs: neither
/// runs, and the upload is not let through unchecked either.
fn contested(conflict: &Conflict) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Plugin unavailable: {}", conflict.describe()),
    )
    .with_field("plugin", json!(conflict.name))
}

fn still_loading() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Plugins are still loading; try again in a moment",
    )
    .retry_after(2)
}

/// One reason an upload was refused (`rejections` of the 422 body).
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyRejection {
    /// The file concerned; `null` for a rule about the whole ticket.
    pub file: Option<String>,
    /// The validator that refused it.
    pub plugin: String,
    /// The validator's message: control characters escaped, at most
    /// `plugins.max_message_chars` characters (then `…`).
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
    /// The first `plugins.max_messages` rejections.
    pub rejections: Vec<PolicyRejection>,
    /// Rejections left out of the list; absent when none were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted: Option<u64>,
}

/// One validator call of an upload: the file it is about (none for a
/// ticket validator), who, and how it ended.
type Checked = (Option<String>, Arc<LoadedPlugin>, CallResult<Verdict>);

/// Runs every matching file validator on each file and every ticket
/// validator once, concurrently (the validator pool bounds how many run
/// at a time), all within `plugins.upload_timeout_ms`. All rejections are
/// reported together (422); a failure, a name conflict or running out of
/// time fails closed (503).
pub async fn validate_upload(state: &AppState, files: &[StoredFile]) -> Result<(), ApiError> {
    let host = &state.plugins;
    let config = &state.config.plugins;
    let budget = Duration::from_millis(config.upload_timeout_ms);
    let deadline = tokio::time::Instant::now() + budget;
    if !host.ready(budget).await {
        return Err(still_loading());
    }
    let infos: Vec<FileInfo> = files.iter().map(info).collect();
    for info in &infos {
        if let Some(conflict) = host.contested(Hook::ValidateFile, Some(info)) {
            return Err(contested(&conflict));
        }
    }
    if let Some(conflict) = host.contested(Hook::ValidateTicket, None) {
        return Err(contested(&conflict));
    }

    let mut calls: Vec<BoxFuture<'_, Checked>> = Vec::new();
    for (file, info) in files.iter().zip(&infos) {
        for plugin in host.matching(Hook::ValidateFile, info) {
            let source = source(state, file);
            calls.push(Box::pin(async move {
                let result = host.validate_file(&plugin, info.clone(), source).await;
                (Some(file.path.clone()), plugin, result)
            }));
        }
    }
    for plugin in host.ticket_validators() {
        let infos = infos.clone();
        calls.push(Box::pin(async move {
            let result = host.validate_ticket(&plugin, infos).await;
            (None, plugin, result)
        }));
    }

    let mut running: FuturesUnordered<_> = calls
        .into_iter()
        .enumerate()
        .map(|(i, call)| async move { (i, call.await) })
        .collect();
    let mut rejections: Vec<(usize, PolicyRejection)> = Vec::new();
    loop {
        let next = match tokio::time::timeout_at(deadline, running.next()).await {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(_) => {
                // What is still in the set never finished.
                return Err(over_budget(config.upload_timeout_ms, running.len()));
            }
        };
        let (i, (file, plugin, result)) = next;
        match result {
            Ok(Verdict::Accept) => {}
            Ok(Verdict::Reject(message)) => rejections.push((
                i,
                PolicyRejection {
                    file,
                    plugin: plugin.name().to_owned(),
                    message: bounded_text(&message, config.max_message_chars as usize),
                },
            )),
            Err(error) => return Err(unavailable(&plugin, &error)),
        }
    }
    if rejections.is_empty() {
        return Ok(());
    }
    // In upload order, whatever order the calls finished in.
    rejections.sort_by_key(|(i, _)| *i);
    let shown = config.max_messages as usize;
    let omitted = rejections.len().saturating_sub(shown);
    let rejections: Vec<PolicyRejection> =
        rejections.into_iter().take(shown).map(|(_, r)| r).collect();
    let mut error = ApiError::unprocessable("File rejected by policy")
        .with_field("rejections", json!(rejections));
    if omitted > 0 {
        error = error.with_field("omitted", json!(omitted));
    }
    Err(error)
}

fn over_budget(budget_ms: u64, unfinished: usize) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "Plugin unavailable: validating this upload took longer than the {:.1} s allowed \
             ({unfinished} checks unfinished; plugins.upload_timeout_ms)",
            budget_ms as f64 / 1000.0
        ),
    )
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
/// plugin; a failing renderer is skipped (and not tried again for a
/// while). A requester renders at most `plugins.previews_per_user` cold
/// previews at once.
pub async fn preview(
    state: &AppState,
    requester: &str,
    ticket: &TicketRecord,
    file: &StoredFile,
) -> Result<PreviewReply, ApiError> {
    let host: &Arc<PluginHost> = &state.plugins;
    if !host
        .ready(Duration::from_millis(state.config.plugins.timeout_ms))
        .await
    {
        return Err(still_loading());
    }
    let info = info(file);
    let renderers = host.matching(Hook::Render, &info);
    if renderers.is_empty() {
        return Err(no_preview());
    }
    let keys: Vec<String> = renderers.iter().map(|p| cache_key(file, p)).collect();
    let answers = cached_answers(state, ticket, &keys).await?;
    let mut slot = None;
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
        if host.failed_recently(key) {
            continue;
        }
        if slot.is_none() {
            slot = Some(host.preview_slot(requester).ok_or_else(|| too_many(host))?);
        }
        metrics().preview_cache(false);
        let siblings = TicketSiblings::new(state, ticket);
        let result = host
            .render(
                plugin,
                key,
                info.clone(),
                source(state, file),
                Some(siblings.clone()),
            )
            .await;
        // An answer built from other files is cached under a key that
        // covers them too; the first-level key records which they were.
        let asked = siblings.asked();
        let answer_key = if asked.is_empty() || result.is_err() {
            key.clone()
        } else {
            let key2 = dependent_key(key, ticket, &asked);
            remember(
                state,
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
                };
                let answer = CachedAnswer::Preview(preview);
                remember(state, &answer_key, plugin, &file.sha256, &answer).await;
                if let CachedAnswer::Preview(preview) = answer {
                    return Ok(PreviewReply {
                        preview,
                        cache_hit: false,
                    });
                }
            }
            Ok(None) => {
                remember(
                    state,
                    &answer_key,
                    plugin,
                    &file.sha256,
                    &CachedAnswer::Declined,
                )
                .await
            }
            Err(PluginError::Busy(_)) => return Err(busy()),
            Err(_) => continue,
        }
    }
    Err(no_preview())
}

/// The cached answer of each renderer (by its first-level key), following
/// [`CachedAnswer::Depends`] to the answer for this ticket's files: at
/// most two round trips.
async fn cached_answers(
    state: &AppState,
    ticket: &TicketRecord,
    keys: &[String],
) -> Result<Vec<Option<CachedAnswer>>, ApiError> {
    let mut first = state.store.previews.get_many(keys).await?;
    let mut answers: Vec<Option<CachedAnswer>> = keys.iter().map(|k| first.remove(k)).collect();
    let second: Vec<(usize, String)> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Some(CachedAnswer::Depends(paths)) => Some((i, dependent_key(&keys[i], ticket, paths))),
            _ => None,
        })
        .collect();
    if second.is_empty() {
        return Ok(answers);
    }
    let wanted: Vec<String> = second.iter().map(|(_, k)| k.clone()).collect();
    let mut found = state.store.previews.get_many(&wanted).await?;
    for (i, key2) in second {
        answers[i] = match found.remove(&key2) {
            // Still the marker (it should not be): render again.
            Some(CachedAnswer::Depends(_)) | None => None,
            answer => answer,
        };
    }
    Ok(answers)
}

fn too_many(host: &PluginHost) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "Too many previews at once: at most {} of yours are rendered at a time",
            host.previews_per_user()
        ),
    )
    .retry_after(1)
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Previews are busy; try again in a moment",
    )
    .retry_after(1)
}

/// Caching is an optimisation: a failed write is logged, not fatal.
async fn remember(
    state: &AppState,
    key: &str,
    plugin: &LoadedPlugin,
    sha256: &str,
    answer: &CachedAnswer,
) {
    if let Err(error) = state
        .store
        .previews
        .put(key, &plugin.build, plugin.name(), sha256, answer)
        .await
    {
        tracing::warn!(%error, plugin = plugin.name(), "could not cache a preview");
    }
}

fn no_preview() -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "No preview available")
}

/// After a ticket is deleted: its previews go unless another ticket holds
/// the same content. Best effort: an entry left behind by a failure here
/// is only wasted space, aged out once its build is gone.
pub async fn forget_previews(state: &AppState, ticket: &TicketRecord) {
    let mut hashes: Vec<String> = ticket.files.iter().map(|f| f.sha256.clone()).collect();
    hashes.sort();
    hashes.dedup();
    let forget = async {
        let held = state.store.tickets.holding(hashes.clone()).await?;
        let orphaned: Vec<String> = hashes.into_iter().filter(|h| !held.contains(h)).collect();
        state.store.previews.forget_content(orphaned).await
    };
    if let Err(error) = forget.await {
        tracing::warn!(%error, ticket_id = %ticket.id, "could not remove the previews of a deleted ticket");
    }
}

/// How often the preview cache is swept.
const PREVIEW_SWEEP: Duration = Duration::from_secs(600);

/// Sweeps the preview cache now (once plugins are loaded) and then
/// periodically: entries of builds unloaded for `plugins.preview_cache_days`,
/// then the oldest beyond `plugins.preview_cache_max_bytes`.
pub async fn sweep_previews(state: Arc<AppState>) {
    let config = &state.config.plugins;
    state.plugins.ready(Duration::MAX).await;
    let mut every = tokio::time::interval(PREVIEW_SWEEP);
    loop {
        every.tick().await;
        let builds = state
            .plugins
            .plugins()
            .iter()
            .map(|p| p.build.clone())
            .collect();
        let age = Duration::from_secs(config.preview_cache_days.saturating_mul(86_400));
        let cutoff = mongodb::bson::DateTime::from_system_time(
            std::time::SystemTime::now()
                .checked_sub(age)
                .unwrap_or(std::time::UNIX_EPOCH),
        );
        match state
            .store
            .previews
            .sweep(builds, cutoff, config.preview_cache_max_bytes)
            .await
        {
            Ok(swept) if swept.stale + swept.over_size > 0 => tracing::info!(
                stale = swept.stale,
                over_size = swept.over_size,
                "preview cache swept"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not sweep the preview cache"),
        }
    }
}
