//! `GET /ticket/{user_id}/{ticket_id}/download`: every file of a ticket as one
//! zip, streamed straight from GridFS.
//!
//! The zip writer is synchronous, so it runs on a blocking thread that pulls
//! chunks from GridFS one at a time and pushes zip bytes through a bounded
//! channel into the response. Memory per download is a few buffers,
//! whatever the ticket's size; no temporary file is written; a client that
//! hangs up closes the channel, which stops the writer.

use std::io::{self, Write};

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use warp::{Filter, Reply, http::header, reply::Response};
use zip::{CompressionMethod, ZipWriter, write::SimpleFileOptions};

use super::error::{ApiError, ErrorBody};
use super::routes::{Built, Matched, Params};
use super::{
    files::FileBytes,
    filters::{authenticated, with_state},
    handle,
    openapi::{DataErrors, TicketPath},
};
use crate::{
    auth::Requester,
    service,
    service::Ctx,
    store::{ByteRange, FileStore, StoredFile, TicketRecord},
    ticket::zip_entry_name,
};

/// Zip output is sent in pieces of about this size.
const PIECE: usize = 64 * 1024;
/// Pieces buffered between the zip thread and the socket.
const PIECES_IN_FLIGHT: usize = 4;

pub(super) fn download_route(matched: Matched, ctx: Ctx) -> Built {
    matched
        .and(with_state(ctx.clone()))
        .and(authenticated(ctx))
        .and_then(|p: Params, c, r| handle(download(c, r, p.get("user_id"), p.get("ticket_id"))))
        .boxed()
}

/// All files of a ticket as one zip, streamed; entries keep their paths.
#[utoipa::path(
    get, path = "/ticket/{user_id}/{ticket_id}/download", tag = "files",
    security(("bearer" = [])),
    params(
        TicketPath,
    ),
    responses(
        (status = 200, description = "`attachment; filename=\"<ticket_id>.zip\"`", body = FileBytes, content_type = "application/zip"),
        (status = 404, description = "`Ticket not found`", body = ErrorBody),
        DataErrors,
    )
)]
pub(super) async fn download(
    ctx: Ctx,
    me: Requester,
    user_id: String,
    ticket_id: String,
) -> Result<Response, ApiError> {
    let ticket = service::tickets::read(&ctx, &me, &user_id, &ticket_id).await?;
    let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
    let files = ctx.store.files.clone();
    let runtime = tokio::runtime::Handle::current();
    let id = ticket.id.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        match write_zip(&runtime, &files, &ticket, &mut out) {
            Ok(()) => {}
            // The client went away: nothing failed on our side.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                tracing::info!(ticket_id = %ticket.id, "zip download ended: the client hung up");
            }
            Err(error) => {
                tracing::error!(%error, ticket_id = %ticket.id, "zip download failed");
                // Fails the response instead of ending it cleanly, so the
                // client sees a broken download rather than a short zip.
                let _ = tx.blocking_send(Err(error));
            }
        }
    });
    let mut response = warp::reply::stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/zip"),
    );
    // The id is 20 hex characters, so it is always a valid header value.
    if let Ok(value) = format!("attachment; filename=\"{id}.zip\"").parse() {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn write_zip(
    runtime: &tokio::runtime::Handle,
    files: &FileStore,
    ticket: &TicketRecord,
    out: &mut ChannelWriter,
) -> io::Result<()> {
    let modified = time::OffsetDateTime::from_unix_timestamp(ticket.create_time / 1000)
        .ok()
        .and_then(|t| {
            zip::DateTime::try_from(time::PrimitiveDateTime::new(t.date(), t.time())).ok()
        })
        .unwrap_or_default();
    let mut zip = ZipWriter::new_stream(out);
    let mut taken = std::collections::HashSet::new();
    for file in &ticket.files {
        let options = SimpleFileOptions::default()
            .compression_method(compression_for(file))
            .last_modified_time(modified)
            .large_file(file.size >= u32::MAX as i64);
        zip.start_file(zip_entry_name(&file.path, &mut taken), options)
            .map_err(unzipped)?;
        let range = ByteRange {
            start: 0,
            end: file.size.max(0) as u64,
        };
        let mut chunks = Box::pin(files.read(file, range));
        // Only the fetch runs on the runtime; writing (and so blocking on
        // the channel) happens on this thread.
        while let Some(chunk) = runtime
            .block_on(chunks.try_next())
            .map_err(io::Error::other)?
        {
            zip.write_all(&chunk)?;
        }
    }
    zip.finish().map_err(unzipped)?.into_inner().flush()
}

/// The io error inside a zip error, so that a client hanging up (a
/// `BrokenPipe` from the channel) is still told apart from a failure.
fn unzipped(error: zip::result::ZipError) -> io::Error {
    match error {
        zip::result::ZipError::Io(error) => error,
        other => io::Error::other(other),
    }
}

/// Text compresses well; media and archives are already compressed.
fn compression_for(file: &StoredFile) -> CompressionMethod {
    let ct = file.content_type.as_str();
    if ct.starts_with("text/")
        || ct.starts_with("application/json")
        || ct.starts_with("application/xml")
        || ct.starts_with("application/javascript")
        || ct == "image/svg+xml"
    {
        CompressionMethod::Deflated
    } else {
        CompressionMethod::Stored
    }
}

/// `Write` into the response channel, in pieces of [`PIECE`] bytes.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(Ok(Bytes::from(piece)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for &mut ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
