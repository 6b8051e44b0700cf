//! A ticket's files as they are read: one file by its path in a URL, its
//! bytes (or a range of them), and the whole ticket as a zip. The HTTP side
//! (`api::files`, `api::download`) only adds status and headers.

use std::io::{self, Write};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use percent_encoding::percent_decode_str;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use zip::{CompressionMethod, ZipWriter, write::SimpleFileOptions};

use super::Context;
use crate::{
    store::{ByteRange, FileStore, StoreError, StoredFile, TicketRecord},
    ticket::{is_legal_path, zip_entry_name},
};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not a path a file of a ticket could have (or not UTF-8).
    #[error("illegal file path")]
    IllegalPath,
    /// A legal path the ticket lacks.
    #[error("no such file in the ticket")]
    NotFound,
}

/// Zip output is sent in pieces of about this size.
const PIECE: usize = 64 * 1024;
/// Pieces buffered between the zip thread and the socket.
const PIECES_IN_FLIGHT: usize = 4;

/// Finds a file of the ticket by its percent-encoded URL path.
pub fn find<'t>(ticket: &'t TicketRecord, encoded: &str) -> Result<&'t StoredFile, FileError> {
    let path = decode_path(encoded)?;
    ticket.file(&path).ok_or(FileError::NotFound)
}

/// A percent-encoded URL path as a ticket's file path, if it could be one.
pub fn decode_path(encoded: &str) -> Result<String, FileError> {
    let path = percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| FileError::IllegalPath)?;
    if !is_legal_path(&path) {
        return Err(FileError::IllegalPath);
    }
    Ok(path.into_owned())
}

/// The bytes of `range` of `file`. The first chunk is read before this
/// returns: a failure there (for a file of one chunk, anywhere) is an
/// error to answer with, never a 200 cut short. A later failure cuts a
/// body whose `Content-Length` says it was cut.
pub async fn read(
    ctx: &Context,
    file: &StoredFile,
    range: ByteRange,
) -> Result<impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static, StoreError> {
    let mut stream = Box::pin(ctx.store.files.read(file, range));
    let first = stream.try_next().await?;
    Ok(futures_util::stream::iter(first.map(Ok)).chain(stream))
}

/// The whole file in memory (callers bound its size).
pub async fn read_all(ctx: &Context, file: &StoredFile) -> Result<Vec<u8>, StoreError> {
    let range = ByteRange {
        start: 0,
        end: file.size.max(0) as u64,
    };
    ctx.store.files.read_into_one(file, range).await
}

/// Every file of the ticket as one zip, streamed; entries keep their paths.
///
/// The zip writer is synchronous, so it runs on a blocking thread that
/// pulls chunks from GridFS one at a time and pushes zip bytes through a
/// bounded channel. Memory per download is a few buffers, whatever the
/// ticket's size; no temporary file is written; a client that hangs up
/// closes the channel, which stops the writer. A failure ends the stream
/// with an error, so the client sees a broken download, not a short zip.
pub fn zip(ctx: &Context, ticket: TicketRecord) -> ReceiverStream<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
    let files = ctx.store.files.clone();
    let runtime = tokio::runtime::Handle::current();
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
                let _ = tx.blocking_send(Err(error));
            }
        }
    });
    ReceiverStream::new(rx)
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

/// `Write` into the answer's channel, in pieces of [`PIECE`] bytes.
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
