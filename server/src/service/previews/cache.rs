//! The preview cache: answers (previews, declines, and which other files
//! an answer was built from) by a key of the bytes, the path, the plugin
//! build and its settings, per author; forgotten with the last ticket that
//! holds the bytes, swept by age and size.

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};

use crate::{
    plugins::LoadedPlugin,
    service::Context,
    store::{CachedAnswer, StoreError, StoredFile, TicketRecord},
};

/// Identifies a preview: same bytes, path, plugin build and settings give
/// the same output, so a new build or new settings miss the cache.
///
/// Scoped to the ticket's author: a cache shared by everyone would tell
/// anyone who previews a guess, by how fast (or whether a render slot was
/// needed), whether another user's private file holds those bytes. An
/// author's tickets share their previews (a second upload of a folder is
/// instant); identical starter code in many students' tickets is rendered
/// once per student.
pub(super) fn cache_key(ticket: &TicketRecord, file: &StoredFile, plugin: &LoadedPlugin) -> String {
    let mut hash = Sha256::new();
    for part in [
        ticket.author_id.as_bytes(),
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

/// The key of an answer that depends on other files of the ticket: the
/// first-level key plus each file's path and content hash (`-` when the
/// ticket has no such file).
pub(super) fn dependent_key(key: &str, ticket: &TicketRecord, paths: &[String]) -> String {
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

/// The cached answer of each renderer (by its first-level key), following
/// [`CachedAnswer::Depends`] to the answer for this ticket's files: at
/// most two round trips.
pub(super) async fn cached_answers(
    ctx: &Context,
    ticket: &TicketRecord,
    keys: &[String],
) -> Result<Vec<Option<CachedAnswer>>, StoreError> {
    let mut first = ctx.store.previews.get_many(keys).await?;
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
    let mut found = ctx.store.previews.get_many(&wanted).await?;
    for (i, key2) in second {
        answers[i] = match found.remove(&key2) {
            // Still the marker (it should not be): render again.
            Some(CachedAnswer::Depends(_)) | None => None,
            answer => answer,
        };
    }
    Ok(answers)
}

/// Caching is an optimisation: a failed write is logged, not fatal.
pub(super) async fn remember(
    ctx: &Context,
    key: &str,
    plugin: &LoadedPlugin,
    sha256: &str,
    answer: &CachedAnswer,
) {
    if let Err(error) = ctx
        .store
        .previews
        .put(key, &plugin.build, plugin.name(), sha256, answer)
        .await
    {
        tracing::warn!(%error, plugin = plugin.name(), "could not cache a preview");
    }
}

/// After a ticket is deleted: its previews go unless another ticket holds
/// the same content. Best effort: an entry left behind by a failure here
/// is only wasted space, aged out once its build is gone.
pub async fn forget(ctx: &Context, ticket: &TicketRecord) {
    let mut hashes: Vec<String> = ticket
        .version_list()
        .iter()
        .flat_map(|(_, files)| files.iter().map(|f| f.sha256.clone()))
        .collect();
    hashes.sort();
    hashes.dedup();
    let forget = async {
        let held = ctx.store.tickets.holding(hashes.clone()).await?;
        let orphaned: Vec<String> = hashes.into_iter().filter(|h| !held.contains(h)).collect();
        ctx.store.previews.forget_content(orphaned).await
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
pub async fn sweep(ctx: Arc<Context>) {
    let config = &ctx.config.plugins;
    ctx.plugins.ready(Duration::MAX).await;
    let mut every = tokio::time::interval(PREVIEW_SWEEP);
    loop {
        every.tick().await;
        let builds = ctx
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
        match ctx
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
