//! Reading files back: headers, validators, ranges, odd paths, and the zip.

use std::io::Read;

use pd2_ticket_tests::{Server, ServerOptions, assert_error, create_ticket};
use sha2::{Digest, Sha256};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn files_carry_type_cache_and_validator_headers() {
    let server = Server::start().await;
    let t = server.token("1");
    let png = b"\x89PNG\r\n\x1a\n0000";
    let ticket = create_ticket(
        &server,
        &t,
        &[
            ("Main.java", b"class Main {}"),
            ("a/b.cpp", b"int main(){}"),
            ("x.py", b"print()"),
            ("img.png", png),
            ("notes.md", b"# t"),
            ("data.bin", b"\x00\x01"),
        ],
        None,
    )
    .await;
    let id = ticket["id"].as_str().unwrap();
    for (path, content_type) in [
        ("Main.java", "text/x-java; charset=utf-8"),
        ("a/b.cpp", "text/x-c++src; charset=utf-8"),
        ("x.py", "text/x-python; charset=utf-8"),
        ("img.png", "image/png"),
        ("notes.md", "text/markdown; charset=utf-8"),
        ("data.bin", "application/octet-stream"),
    ] {
        let response = server
            .get(&format!("/ticket/@me/{id}/files/{path}"), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["cache-control"], "private, no-cache");
        assert_eq!(h["vary"], "Authorization");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["accept-ranges"], "bytes");
        let etag = h["etag"].to_str().unwrap().to_owned();
        let body = response.bytes().await.unwrap();
        assert_eq!(
            etag,
            format!("\"{}\"", hex::encode(Sha256::digest(&body))),
            "ETag is the content hash"
        );

        let cached = server
            .get(&format!("/ticket/@me/{id}/files/{path}"), &t)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304);
        assert_eq!(cached.headers()["etag"], etag.as_str());
        assert!(cached.bytes().await.unwrap().is_empty());
        let changed = server
            .get(&format!("/ticket/@me/{id}/files/{path}"), &t)
            .header("if-none-match", "\"0000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200);
    }
}

#[tokio::test]
async fn ranges_across_gridfs_chunks() {
    let server = Server::start_with(
        pd2_ticket_tests::ServerOptions::default().env("PD2_LIMITS__MAX_FILE_SIZE", 2 << 20),
    )
    .await;
    let t = server.token("1");
    let content = pattern(700 * 1024); // chunks of 255 KiB: three of them
    let ticket = create_ticket(&server, &t, &[("big.bin", &content)], None).await;
    let url = format!(
        "/ticket/@me/{}/files/big.bin",
        ticket["id"].as_str().unwrap()
    );
    let whole = server
        .get(&url, &t)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(whole.as_ref(), content.as_slice());

    let size = content.len();
    let boundary = 255 * 1024;
    for (header, start, end) in [
        ("bytes=0-0".to_owned(), 0, 1),
        ("bytes=10-99".to_owned(), 10, 100),
        (
            format!("bytes={}-{}", boundary - 5, boundary + 5),
            boundary - 5,
            boundary + 6,
        ),
        (
            format!("bytes={}-{}", boundary - 1, 2 * boundary + 1),
            boundary - 1,
            2 * boundary + 2,
        ),
        (format!("bytes={}-", size - 100), size - 100, size),
        ("bytes=-10".to_owned(), size - 10, size),
        (format!("bytes=5-{}", size * 2), 5, size),
    ] {
        let response = server
            .get(&url, &t)
            .header("range", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{header}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{}/{size}", end - 1).as_str()
        );
        assert_eq!(
            response.headers()["content-length"],
            (end - start).to_string().as_str()
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(body.as_ref(), &content[start..end], "{header}");
    }
    let response = server
        .get(&url, &t)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    // Multiple ranges: the whole file.
    let response = server
        .get(&url, &t)
        .header("range", "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), size);
}

#[tokio::test]
async fn paths_are_percent_decoded_and_checked() {
    let server = Server::start().await;
    let t = server.token("1");
    let ticket = create_ticket(
        &server,
        &t,
        &[
            (
                "作業1/主程式.cpp",
                "int main() { return 0; } // 你好".as_bytes(),
            ),
            ("with space.txt", b"s"),
        ],
        None,
    )
    .await;
    assert_eq!(ticket["files"][0], "作業1/主程式.cpp");
    let id = ticket["id"].as_str().unwrap();
    let encoded = "%E4%BD%9C%E6%A5%AD1/%E4%B8%BB%E7%A8%8B%E5%BC%8F.cpp";
    let response = server
        .get(&format!("/ticket/@me/{id}/files/{encoded}"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "int main() { return 0; } // 你好"
    );
    let response = server
        .get(&format!("/ticket/@me/{id}/files/with%20space.txt"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    for illegal in [
        "..%2F..%2Fetc%2Fpasswd",
        "a%00b",
        "%2Fetc",
        "x%3F",
        "%FF%FE",
        "a//b",
        "x/%2E%2E%2Fy",
    ] {
        let response = server
            .get(&format!("/ticket/@me/{id}/files/{illegal}"), &t)
            .send()
            .await
            .unwrap();
        assert_error(response, 403, "Permission denied").await;
    }
    let response = server
        .get(&format!("/ticket/@me/{id}/files/nope.txt"), &t)
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "Ticket file not found").await;
    let response = server
        .get(&format!("/ticket/@me/{id}/files/%E4%BD%9C%E6%A5%AD1"), &t)
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "Ticket file not found").await;
}

#[tokio::test]
async fn zip_holds_every_file_under_its_path() {
    let server = Server::start_with(
        pd2_ticket_tests::ServerOptions::default().env("PD2_LIMITS__MAX_FILE_SIZE", 2 << 20),
    )
    .await;
    let t = server.token("1");
    let big = pattern(1 << 20);
    let source = "public class App { }\n".repeat(500);
    let files: Vec<(&str, &[u8])> = vec![
        ("src/main/App.java", source.as_bytes()),
        ("作業/說明.md", "# 說明".as_bytes()),
        ("blob.bin", &big),
        ("empty.txt", b""),
    ];
    let ticket = create_ticket(&server, &t, &files, None).await;
    let id = ticket["id"].as_str().unwrap();

    let response = server
        .get(&format!("/ticket/@me/{id}/download"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"{id}.zip\"").as_str()
    );
    let bytes = response.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(archive.len(), files.len());
    for (i, (name, content)) in files.iter().enumerate() {
        let mut entry = archive.by_index(i).unwrap();
        assert_eq!(entry.name().unwrap(), *name);
        let mut out = Vec::new();
        entry.read_to_end(&mut out).unwrap();
        assert_eq!(out.as_slice(), *content, "{name}");
    }
    // Source text is compressed, the binary stored.
    assert_eq!(
        archive.by_name("src/main/App.java").unwrap().compression(),
        zip::CompressionMethod::Deflated
    );
    assert_eq!(
        archive.by_name("blob.bin").unwrap().compression(),
        zip::CompressionMethod::Stored
    );
}

/// Bytes are stored in the standard GridFS layout, so any GridFS client
/// (the original server, `mongofiles`, a backup script) reads them back.
#[tokio::test]
async fn stored_files_are_standard_gridfs() {
    use futures_util::AsyncReadExt;
    use mongodb::bson::{Document, doc};

    let server = Server::start_with(
        pd2_ticket_tests::ServerOptions::default().env("PD2_LIMITS__MAX_FILE_SIZE", 4 << 20),
    )
    .await;
    let t = server.token("1");
    // Six chunks: more than one write batch, the last one short.
    let content = pattern(5 * 255 * 1024 + 1000);
    create_ticket(&server, &t, &[("dir/big.bin", &content)], None).await;

    let db = server.mongo().await;
    let file = db
        .collection::<Document>("files.files")
        .find_one(doc! { "filename": "dir/big.bin" })
        .await
        .expect("find files document")
        .expect("a files document");
    assert_eq!(file.get_i64("length").ok(), Some(content.len() as i64));
    assert_eq!(file.get_i32("chunkSize").ok(), Some(255 * 1024));
    assert!(file.get_datetime("uploadDate").is_ok());
    let sha = hex::encode(Sha256::digest(&content));
    let metadata = file.get_document("metadata").expect("metadata");
    assert_eq!(metadata.get_str("sha256").ok(), Some(sha.as_str()));

    let bucket = db.gridfs_bucket(
        mongodb::options::GridFsBucketOptions::builder()
            .bucket_name("files".to_owned())
            .build(),
    );
    let mut download = bucket
        .open_download_stream(file.get("_id").expect("id").clone())
        .await
        .expect("the driver opens it");
    let mut read = Vec::new();
    download
        .read_to_end(&mut read)
        .await
        .expect("the driver reads it");
    assert!(read == content, "the driver read other bytes");
}

/// Everything a signed-in user is answered is theirs: no shared cache (a
/// lab browser, a proxy) may hand it to the next person asking for the
/// same URL. Answers without a token may be cached as before.
#[tokio::test]
async fn every_answer_to_a_signed_in_user_is_private() {
    let server = Server::start().await;
    let t = server.token("71");
    let ticket = create_ticket(&server, &t, &[("Main.java", b"class Main {}")], None).await;
    let id = ticket["id"].as_str().unwrap();
    for path in [
        "/ticket".to_owned(),
        format!("/ticket/@me/{id}"),
        format!("/ticket/@me/{id}/files/Main.java"),
        format!("/ticket/@me/{id}/download"),
        "/user/@me".to_owned(),
        format!("/ticket/@me/{id}/files/Missing.java"),
    ] {
        let response = server.get(&path, &t).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h["cache-control"], "private, no-cache", "{path}");
        assert!(
            h.get_all("vary").iter().any(|v| v == "Authorization"),
            "{path}: {h:?}"
        );
    }
    let public = pd2_ticket_tests::http_client()
        .build()
        .expect("http client")
        .get(server.url("/meta"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    assert!(
        !public
            .headers()
            .get_all("vary")
            .iter()
            .any(|v| v == "Authorization"),
        "{:?}",
        public.headers()
    );
}

/// A TA who closes the tab while a zip streams is not an error of the
/// server's: it is logged at INFO, and the next zip works.
#[tokio::test]
async fn a_client_hanging_up_during_a_zip_is_not_an_error() {
    let server = Server::start_with(room_for_12_mib(ServerOptions::default())).await;
    let t = server.token("72");
    // 12 MiB of incompressible bytes: far more than the response's
    // buffers, so the zip is still being written when the client leaves.
    let parts: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("data/part{i}.bin"), noise(i, 1 << 20)))
        .collect();
    let files: Vec<(&str, &[u8])> = parts
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let ticket = create_ticket(&server, &t, &files, None).await;
    let id = ticket["id"].as_str().unwrap();
    let mut response = server
        .get(&format!("/ticket/@me/{id}/download"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().expect("a first piece");
    assert!(!first.is_empty());
    drop(response);
    pd2_ticket_tests::eventually(
        "the hang-up was never logged",
        std::time::Duration::from_secs(30),
        || async { server.log_text().contains("the client hung up") },
    )
    .await;
    let log = server.log_text();
    assert!(!log.contains("zip download failed"), "{log}");
    let archive = pd2_ticket_tests::download_zip(&server, &t, id).await;
    assert_eq!(archive.len(), 12);
}

/// Bytes that do not compress.
fn noise(seed: usize, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Room for the 12 MiB ticket above.
fn room_for_12_mib(options: ServerOptions) -> ServerOptions {
    options
        .env("PD2_LIMITS__MAX_FILE_SIZE", 2 << 20)
        .env("PD2_LIMITS__MAX_TICKET_SIZE", 64 << 20)
}

/// A file whose bytes cannot be read gets an error status, not a `200`
/// with a body cut short: the first chunk (for a small file, all of it) is
/// read before the headers go out.
#[tokio::test]
async fn an_unreadable_small_file_is_an_error_not_a_short_200() {
    let server = Server::start().await;
    let t = server.token("73");
    let ticket = create_ticket(&server, &t, &[("Main.java", b"class Main {}\n")], None).await;
    let id = ticket["id"].as_str().unwrap();
    // Its one chunk gone (a database that lost it, a read that failed).
    let chunks = server
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("files.chunks");
    chunks
        .delete_many(mongodb::bson::doc! {})
        .await
        .expect("delete");
    let response = server
        .get(&format!("/ticket/@me/{id}/files/Main.java"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["detail"],
        "Internal server error"
    );
}
