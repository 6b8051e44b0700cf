//! Upload policy: the validator plugins' say on an upload, as a
//! [`PolicyError`] when they refuse it or cannot give it.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use serde::Serialize;
use utoipa::ToSchema;

use super::sources::{ReadClock, info};
use crate::{
    plugins::{
        CallResult, ContentWithheld, FileInfo, FileSource, Hook, LoadedPlugin, PluginError,
        Verdict, bounded_text,
    },
    service::Context,
    store::{StoreError, StoredFile},
};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The validators' reasons, in upload order; `omitted` more were left
    /// out (`plugins.max_messages`).
    #[error("refused by policy")]
    Rejected {
        rejections: Vec<PolicyRejection>,
        omitted: usize,
    },
    /// A validator failed (it fails closed).
    #[error("validator {plugin} failed: {reason}")]
    Failed {
        plugin: String,
        reason: &'static str,
    },
    /// Two files claim the name of a validator this upload needs: neither
    /// runs, and the upload is not let through unchecked either.
    #[error("validator name contested: {description}")]
    Contested { plugin: String, description: String },
    #[error("plugins are still loading")]
    Loading,
    /// A file of the upload could not be read back for a validator: the
    /// storage's failure, reported as such (no plugin is blamed).
    #[error("reading `{file}` for validation failed: {error}")]
    Unreadable { file: String, error: StoreError },
    /// `plugins.upload_timeout_ms` ran out with checks unfinished.
    #[error("validation took longer than {budget_ms} ms")]
    OverBudget { budget_ms: u64, unfinished: usize },
}

impl PolicyError {
    /// The server could not decide (as opposed to a refusal).
    pub fn is_server_side(&self) -> bool {
        !matches!(self, PolicyError::Rejected { .. })
    }
}

/// One reason an upload was refused (`rejections` of the 422 body).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyRejection {
    /// The file concerned; `null` for a rule about the whole ticket.
    pub file: Option<String>,
    /// The validator that refused it.
    pub plugin: String,
    /// The validator's message: control characters escaped, at most
    /// `plugins.max_message_chars` characters (then `…`).
    pub message: String,
}

/// Most time reads from the database may add to an upload's validation.
const MAX_READ_WAIT: Duration = Duration::from_secs(30);

/// One validator call of an upload: the file it is about (none for a
/// ticket validator), who, and how it ended.
type Checked = (Option<String>, Arc<LoadedPlugin>, CallResult<Verdict>);

/// Runs every matching file validator on each file and every ticket
/// validator once, concurrently (the validator pool bounds how many run
/// at a time), all within `plugins.upload_timeout_ms`. All rejections are
/// reported together; a failure, a name conflict or running out of time
/// fails closed.
///
/// The budget is for the validators' work: time the upload's files spent
/// being read back from the database (`reads`) is added to it, up to
/// [`MAX_READ_WAIT`], so that a busy database does not fail an upload as
/// a slow validator.
pub async fn check(
    ctx: &Context,
    files: &[(StoredFile, Arc<dyn FileSource>)],
    reads: &ReadClock,
) -> Result<(), PolicyError> {
    let files: Vec<(FileInfo, Arc<dyn FileSource>)> =
        files.iter().map(|(f, s)| (info(f), s.clone())).collect();
    let rejections = run(ctx, &files, reads, false).await?;
    if rejections.is_empty() {
        return Ok(());
    }
    let shown = ctx.config.plugins.max_messages as usize;
    let omitted = rejections.len().saturating_sub(shown);
    Err(PolicyError::Rejected {
        rejections: rejections.into_iter().take(shown).collect(),
        omitted,
    })
}

/// What the validators say of an upload's names and sizes alone, before
/// its bytes are sent (`POST /ticket/check`): each file validator is
/// called with a file whose content is withheld, so one that decides by
/// the name answers and one that reads the content ends without a verdict
/// (the upload itself will tell); ticket validators get the list as in an
/// upload. Advisory: a validator that fails, is contested or runs out of
/// time is skipped, never reported as a refusal.
pub async fn preflight(
    ctx: &Context,
    files: &[FileInfo],
) -> Result<Vec<PolicyRejection>, PolicyError> {
    let files: Vec<(FileInfo, Arc<dyn FileSource>)> = files
        .iter()
        .map(|f| {
            let source: Arc<dyn FileSource> = Arc::new(Withheld(f.size));
            (f.clone(), source)
        })
        .collect();
    run(ctx, &files, &ReadClock::default(), true).await
}

/// A file of a declared size whose bytes are not here.
struct Withheld(u64);

impl FileSource for Withheld {
    fn size(&self) -> u64 {
        self.0
    }
    fn read(&self, _: u64, _: u32) -> anyhow::Result<Vec<u8>> {
        Err(ContentWithheld.into())
    }
}

/// Runs the calls (see [`check`]); the rejections in upload order. With
/// `advisory`, failures and conflicts skip the calls concerned, and running
/// out of time ends with what was answered.
async fn run(
    ctx: &Context,
    files: &[(FileInfo, Arc<dyn FileSource>)],
    reads: &ReadClock,
    advisory: bool,
) -> Result<Vec<PolicyRejection>, PolicyError> {
    let host = &ctx.plugins;
    let config = &ctx.config.plugins;
    let budget = Duration::from_millis(config.upload_timeout_ms);
    let deadline = tokio::time::Instant::now() + budget;
    let ends = || deadline + reads.waited().min(MAX_READ_WAIT);
    if !host.ready(budget).await {
        return Err(PolicyError::Loading);
    }
    let infos: Vec<FileInfo> = files.iter().map(|(f, _)| f.clone()).collect();
    let contested = infos
        .iter()
        .find_map(|info| host.contested(Hook::ValidateFile, Some(info)))
        .or_else(|| host.contested(Hook::ValidateTicket, None));
    if let Some(conflict) = contested.filter(|_| !advisory) {
        return Err(PolicyError::Contested {
            plugin: conflict.name.clone(),
            description: conflict.describe(),
        });
    }

    let mut calls: Vec<BoxFuture<'_, Checked>> = Vec::new();
    for (info, source) in files {
        for plugin in host.matching(Hook::ValidateFile, info) {
            let source = source.clone();
            calls.push(Box::pin(async move {
                let result = host.validate_file(&plugin, info.clone(), source).await;
                (Some(info.path.clone()), plugin, result)
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
        let next = match tokio::time::timeout_at(ends(), running.next()).await {
            Ok(Some(next)) => next,
            Ok(None) => break,
            // Reads of the database moved the end meanwhile.
            Err(_) if ends() > tokio::time::Instant::now() => continue,
            Err(_) if advisory => break,
            // What is still in the set never finished.
            Err(_) => {
                return Err(PolicyError::OverBudget {
                    budget_ms: config.upload_timeout_ms,
                    unfinished: running.len(),
                });
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
            Err(_) if advisory => {}
            Err(PluginError::Unreadable(cause)) => {
                return Err(PolicyError::Unreadable {
                    file: file.unwrap_or_default(),
                    error: super::sources::read_failure(&cause),
                });
            }
            Err(error) => {
                return Err(PolicyError::Failed {
                    plugin: plugin.name().to_owned(),
                    reason: error.kind(),
                });
            }
        }
    }
    // In upload order, whatever order the calls finished in.
    rejections.sort_by_key(|(i, _)| *i);
    Ok(rejections.into_iter().map(|(_, r)| r).collect())
}
