//! Uploads shaped like what students send, through the repository's own
//! `config.toml` with the first-party plugins, plus a validator that reads
//! every byte of every file back (`tests/fixtures/readback`): every
//! threshold of the upload path (file counts, the ~1 MiB write batch, the
//! GridFS chunk, the size limits, each ±1 byte, empty files between large
//! ones), policy refusals after the first batch, and a real project. Every
//! stored upload is read back byte for byte through `files/` and the zip.

use std::{io::Read, path::Path, time::Duration};

use pd2_ticket_tests::{
    Server, ServerOptions, first_party_plugins, fixture_plugins, json, plugin_dir, project_files,
    upload, workspace_root,
};
use serde_json::Value;

/// GridFS chunk and the upload's write batch (`store::staging`).
const CHUNK: usize = 255 * 1024;
const BATCH: usize = 4 * CHUNK;
/// The shipped `config.toml`'s limits.
const MAX_FILE: usize = 1 << 20;
const MAX_TICKET: usize = 50 << 20;
const MAX_FILES: usize = 200;

const CLEANUP: Duration = Duration::from_secs(30);

/// The shipped configuration and plugins, and `readback`.
async fn shipped_server() -> Server {
    let mut plugins: Vec<_> = std::fs::read_dir(first_party_plugins())
        .expect("plugins/dist")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    plugins.push(fixture_plugins().join("readback.wasm"));
    let plugins: Vec<&Path> = plugins.iter().map(|p| p.as_path()).collect();
    Server::start_with(
        ServerOptions::default()
            .env("PD2_CONFIG", workspace_root().join("config.toml").display())
            .env("PD2_PLUGINS__DIR", plugin_dir(&plugins).display()),
    )
    .await
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Java source of exactly `size` bytes, different for each `seed`, led
/// (when it fits) by the line `readback` checks the rest against.
fn java(seed: usize, size: usize) -> Vec<u8> {
    const HEADER: usize = 29;
    let mut body = Vec::with_capacity(size);
    let mut line = 0usize;
    while body.len() < size.saturating_sub(HEADER) {
        body.extend_from_slice(
            format!(
                "    int f{seed}_{line}() {{ return {}; }} // 題目 {seed}\n",
                line * 31 + seed
            )
            .as_bytes(),
        );
        line += 1;
    }
    if size < HEADER {
        body.truncate(size);
        return body;
    }
    body.truncate(size - HEADER);
    let mut out = format!("// readback {:016x}\n", fnv1a(&body)).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A folder of `sizes.len()` Java files.
fn folder(sizes: &[usize]) -> Vec<(String, Vec<u8>)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("src/main/java/hw/File{i:03}.java"), java(i, n)))
        .collect()
}

fn encode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn send(server: &Server, token: &str, files: &[(String, Vec<u8>)]) -> (u16, Value) {
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    json(upload(server, token, &files, None).await).await
}

/// Uploads `files`, expects 201, and reads every file back through
/// `files/` and the zip, byte for byte.
async fn stored_exactly(server: &Server, token: &str, what: &str, files: &[(String, Vec<u8>)]) {
    let (status, body) = send(server, token, files).await;
    assert_eq!(status, 201, "{what}: {body}");
    let id = body["id"].as_str().expect("ticket id");
    for (path, bytes) in files {
        let response = server
            .get(&format!("/ticket/@me/{id}/files/{}", encode(path)), token)
            .send()
            .await
            .expect("file");
        assert_eq!(response.status(), 200, "{what}: {path}");
        let got = response.bytes().await.expect("file bytes");
        assert!(got == bytes.as_slice(), "{what}: {path} differs");
    }
    let response = server
        .get(&format!("/ticket/@me/{id}/download"), token)
        .send()
        .await
        .expect("zip");
    assert_eq!(response.status(), 200, "{what}: zip");
    let zip = response.bytes().await.expect("zip bytes");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).expect("a zip");
    assert_eq!(archive.len(), files.len(), "{what}: zip entries");
    for (i, (path, bytes)) in files.iter().enumerate() {
        let mut entry = archive.by_index(i).expect("entry");
        assert_eq!(entry.name().expect("name"), path.as_str(), "{what}");
        let mut out = Vec::new();
        entry.read_to_end(&mut out).expect("entry bytes");
        assert!(out == *bytes, "{what}: {path} differs in the zip");
    }
}

/// The folders of issue 20's table, all of which were refused with a 503
/// once a validator read a file an earlier batch had not sent.
#[tokio::test]
async fn folders_students_send_are_stored_exactly() {
    let server = shipped_server().await;
    let t = server.token("1");
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("10 x 100 KB", vec![100_000; 10]),
        ("11 x 100 KB", vec![100_000; 11]),
        ("12 x 100 KB", vec![100_000; 12]),
        ("20 x 100 KB", vec![100_000; 20]),
        ("8 x 200 KB", vec![200_000; 8]),
        ("40 x 50 KB", vec![50_000; 40]),
        ("600 KB, 500 KB, 1 KB", vec![600_000, 500_000, 1_000]),
        ("3 x 1 MiB", vec![MAX_FILE; 3]),
    ];
    for (what, sizes) in cases {
        stored_exactly(&server, &t, what, &folder(&sizes)).await;
    }
}

/// Sizes on both sides of every threshold, one or two files at a time and
/// with small and empty files after them, so each crossing happens in the
/// middle of a file, at its end, and before the next one begins.
#[tokio::test]
async fn every_size_threshold_is_stored_exactly() {
    let server = shipped_server().await;
    let t = server.token("2");
    let edges = [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        BATCH - 1,
        BATCH,
        BATCH + 1,
        MAX_FILE - 1,
        MAX_FILE,
    ];
    for &size in &edges {
        stored_exactly(&server, &t, &format!("{size}"), &folder(&[size])).await;
        stored_exactly(
            &server,
            &t,
            &format!("{size} then small"),
            &folder(&[size, 0, 7, 1_000]),
        )
        .await;
    }
    // Two files whose sum sits on the batch size, then one more.
    for total in [BATCH - 1, BATCH, BATCH + 1] {
        let first = 600_000;
        stored_exactly(
            &server,
            &t,
            &format!("pair summing to {total}"),
            &folder(&[first, total - first, 1_000]),
        )
        .await;
    }
    stored_exactly(
        &server,
        &t,
        "empty files between large ones",
        &folder(&[CHUNK + 1, 0, BATCH, 0, 0, 7, MAX_FILE, 0, BATCH - 1, 0]),
    )
    .await;

    let (status, body) = send(&server, &t, &folder(&[1_000, MAX_FILE + 1])).await;
    assert_eq!(
        (status, &body["detail"]),
        (413, &Value::from("File is too large"))
    );
    only_tickets_left(&server, CLEANUP).await;
}

/// From one file to `limits.max_files`, and the ticket size limit.
#[tokio::test]
async fn file_counts_and_the_ticket_limit() {
    let server = shipped_server().await;
    let t = server.token("3");
    for count in [1, 2, MAX_FILES - 1, MAX_FILES] {
        stored_exactly(
            &server,
            &t,
            &format!("{count} files"),
            &folder(&vec![20_000; count]),
        )
        .await;
    }
    let (status, body) = send(&server, &t, &folder(&vec![10; MAX_FILES + 1])).await;
    assert_eq!(
        (status, &body["detail"]),
        (
            413,
            &Value::from(format!("Too many files (at most {MAX_FILES})"))
        )
    );

    // Exactly `max_ticket_size` in 50 files of 1 MiB; one byte more is
    // refused, and leaves nothing.
    let full = folder(&vec![MAX_FILE; MAX_TICKET / MAX_FILE]);
    stored_exactly(&server, &t, "max_ticket_size", &full).await;
    let mut over = full;
    over.push(("src/one-more.txt".into(), b"x".to_vec()));
    let (status, body) = send(&server, &t, &over).await;
    assert_eq!(
        (status, &body["detail"]),
        (413, &Value::from("Ticket is too large"))
    );
    only_tickets_left(&server, CLEANUP).await;
}

/// A file the policy refuses, sent after the first batch went out: 422
/// naming it, and nothing of the upload left in the database.
#[tokio::test]
async fn refusals_after_the_first_batch_name_the_file_and_leave_nothing() {
    let server = shipped_server().await;
    let t = server.token("4");
    let elf = b"\x7fELF\x02\x01\x01\x00 a compiled program".to_vec();
    let class = b"\xca\xfe\xba\xbe\x00\x00\x00\x3d a class file".to_vec();
    // An ELF named `README` (no extension) is sniffed too (issue 21).
    for (name, bytes) in [
        ("build/Main.class", class),
        ("src/Tool.java", elf.clone()),
        ("README", elf),
    ] {
        let mut files = folder(&[100_000; 20]);
        files.push((name.to_owned(), bytes));
        files.push(("src/After.java".into(), java(99, 3_000)));
        let (status, body) = send(&server, &t, &files).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["detail"], "File rejected by policy");
        let rejections = body["rejections"].as_array().expect("rejections");
        assert_eq!(rejections.len(), 1, "{body}");
        assert_eq!(rejections[0]["file"], name);
        assert_eq!(rejections[0]["plugin"], "file-policy");
        only_tickets_left(&server, CLEANUP).await;
    }
}

/// A real project folder (six modules of a Java design-patterns course
/// project: sources, tests, poms, READMEs, PNG diagrams, a WAV), uploaded
/// the way a browser sends a chosen folder.
#[tokio::test]
async fn a_real_project_is_stored_exactly() {
    let server = shipped_server().await;
    let t = server.token("5");
    let files = project_files("java-design-patterns");
    assert!(files.len() > 100, "{} files", files.len());
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert!(total > 2_000_000, "{total} bytes");
    stored_exactly(&server, &t, "java-design-patterns", &files).await;
}

/// Asserts that, within `limit`, the database holds no GridFS file, chunk
/// or journal entry beyond what the recorded tickets hold.
async fn only_tickets_left(server: &Server, limit: Duration) {
    use futures_util::TryStreamExt;
    use mongodb::bson::{Document, doc};
    let db = server.mongo().await;
    let all = |name: &'static str| {
        let collection = db.collection::<Document>(name);
        async move {
            let docs: Vec<Document> = collection
                .find(doc! {})
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("documents");
            docs
        }
    };
    // Stored files the tickets point at, each once: a content uploaded
    // twice is stored once (docs/storage.md, "Versions and shared files").
    let held = all("tickets")
        .await
        .iter()
        .flat_map(|d| d.get_array("files").cloned().unwrap_or_default())
        .filter_map(|f| f.as_document()?.get_object_id("file_id").ok())
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    pd2_ticket_tests::eventually("files of a refused upload left", limit, || async {
        server.count("files.files", doc! {}).await == held
            && server.count("uploads", doc! {}).await == 0
    })
    .await;
    let chunks: u64 = all("files.files")
        .await
        .iter()
        .map(|f| (f.get_i64("length").unwrap_or(0) as u64).div_ceil(CHUNK as u64))
        .sum();
    pd2_ticket_tests::eventually("chunks of a refused upload left", limit, || async {
        server.count("files.chunks", doc! {}).await == chunks
    })
    .await;
}
