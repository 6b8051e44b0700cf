//! Uploads in flight and their journal: the idle cut-off, the upload a
//! crashed server left behind, a slow but live upload that must survive the
//! sweep, and an upload whose validation outlived its journal entry.
//!
//! Every server here runs with `limits.upload_idle_secs = 1`, so an entry is
//! abandoned after 10 s untouched and sweeps run every second.

use std::time::Duration;

use mongodb::bson::doc;
use pd2_ticket_tests::{
    Server, ServerOptions, Stored, assert_error, eventually, fixture_plugins,
    multipart::{closing, file_head, post_head, read_status, send},
    plugin_dir, upload,
};
use tokio::io::AsyncWriteExt;

fn quick_journal() -> ServerOptions {
    ServerOptions::default().env("PD2_LIMITS__UPLOAD_IDLE_SECS", 1)
}

/// A client that goes quiet mid-file is cut off with 408, and what it sent
/// is removed.
#[tokio::test]
async fn stalled_upload_is_408_and_leaves_nothing() {
    let server = Server::start_with(quick_journal()).await;
    let token = server.token("1");
    let mut body = file_head("half.bin");
    body.extend(vec![7u8; 300 * 1024]);
    let mut stream = send(
        server.port,
        &post_head(server.port, Some(&token), body.len() + 1000),
    )
    .await;
    stream.write_all(&body).await.expect("send");
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let _ = stream.read_to_end(&mut response).await;
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled upload");
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "stalled upload answered: {response}"
    );
    assert!(
        response.contains(r#"{"detail":"Upload stalled: no data for 1 s"}"#),
        "{response}"
    );
    server.assert_nothing_left(Duration::from_secs(15)).await;
}

/// A server killed mid-upload cannot clean up; another instance finds the
/// abandoned entry and removes its bytes. Meanwhile a slow upload on that
/// instance, silent for less than the idle limit each time but running for
/// longer than the abandonment age, keeps its entry fresh and is stored
/// whole.
#[tokio::test]
async fn crashed_servers_upload_is_swept_while_a_slow_live_one_survives() {
    let mut crashed =
        Server::start_with(quick_journal().env("PD2_LIMITS__MAX_FILE_SIZE", 4 << 20)).await;
    let survivor = Server::start_with(
        quick_journal().database(&crashed.db_uri.clone(), &crashed.database.clone()),
    )
    .await;
    let token = crashed.token("1");

    // Part of a file (more than one write batch of 4 chunks) reaches the
    // first server, which then dies.
    let mut body = file_head("lost.bin");
    body.extend(vec![1u8; 1100 * 1024]);
    let mut lost = send(
        crashed.port,
        &post_head(crashed.port, Some(&token), body.len() + 600 * 1024),
    )
    .await;
    lost.write_all(&body).await.expect("send");
    eventually(
        "the lost upload's chunks never arrived",
        Duration::from_secs(20),
        || async { survivor.count("files.chunks", doc! {}).await >= 4 },
    )
    .await;
    crashed.kill();
    drop(lost);
    let chunks_lost = survivor.count("files.chunks", doc! {}).await;
    assert!(chunks_lost >= 4);
    assert_eq!(survivor.count("uploads", doc! {}).await, 1);

    // A slow upload on the survivor: 13 pieces, 0.9 s apart (just under the
    // 1 s idle limit), so it lasts longer than the 10 s abandonment age.
    let pieces: Vec<Vec<u8>> = (0..13u8).map(|i| vec![b'a' + i; 1000]).collect();
    let content: Vec<u8> = pieces.concat();
    let mut head = file_head("slow.bin");
    let tail = [b"\r\n".as_slice(), &closing()].concat();
    let declared = head.len() + content.len() + tail.len();
    let mut slow = send(
        survivor.port,
        &post_head(survivor.port, Some(&token), declared),
    )
    .await;
    slow.write_all(&std::mem::take(&mut head))
        .await
        .expect("send");
    for piece in &pieces {
        slow.write_all(piece).await.expect("send");
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    slow.write_all(&tail).await.expect("send");
    assert_eq!(
        read_status(&mut slow, Duration::from_secs(10)).await,
        Some(201),
        "log:\n{}",
        survivor.log_text()
    );

    // The abandoned bytes are gone; the slow upload is whole.
    eventually(
        "the abandoned upload was not swept",
        Duration::from_secs(20),
        || async { survivor.count("uploads", doc! {}).await == 0 },
    )
    .await;
    assert_eq!(
        survivor.stored().await,
        Stored {
            tickets: 1,
            files: 1,
            chunks: 1
        }
    );
    assert!(
        survivor.log_text().contains("removing an abandoned upload"),
        "{}",
        survivor.log_text()
    );
    let tickets = pd2_ticket_tests::json(
        survivor
            .get("/ticket/@me", &survivor.token("1"))
            .send()
            .await
            .expect("list"),
    )
    .await
    .1;
    let id = tickets[0]["id"].as_str().expect("ticket id");
    let stored = survivor
        .get(&format!("/ticket/@me/{id}/files/slow.bin"), &token)
        .send()
        .await
        .expect("file");
    assert_eq!(stored.status(), 200);
    assert_eq!(stored.bytes().await.expect("bytes").as_ref(), content);
}

/// Validation that takes longer than the abandonment age: another sweep
/// takes the upload for dead and removes its bytes, so the upload must not
/// become a ticket pointing at them. It fails cleanly instead.
#[tokio::test]
async fn upload_whose_validation_outlives_its_journal_fails_cleanly() {
    let plugins = plugin_dir(&[&fixture_plugins().join("misbehave.wasm")]);
    let server = Server::start_with(
        quick_journal()
            .env("PD2_PLUGINS__DIR", plugins.display())
            .env("PD2_PLUGINS__TIMEOUT_MS", 20_000)
            .env("PD2_PLUGINS__UPLOAD_TIMEOUT_MS", 30_000),
    )
    .await;
    let token = server.token("1");
    // The validator sleeps 12 s on slow.txt; the entry is abandoned at 10 s.
    // It then accepts the file, or (`read`) fails to read it again because
    // the sweep removed it: the cause reported is the same. A second file
    // (not validated) takes each upload over one write batch (1020 KiB), so
    // its bytes are stored (and journaled) before validation; a small
    // upload is held in memory until validated.
    let padding = vec![b' '; 1_046_000];
    type Files<'a> = [(&'a str, &'a [u8]); 2];
    let (first, second): (Files, Files) = (
        [("slow.txt", b"12"), ("padding.bin", &padding)],
        [("slow.txt", b"12 read"), ("padding.bin", &padding)],
    );
    let other = server.token("2");
    let (accepts, reads, small) = tokio::join!(
        upload(&server, &token, &first, None),
        upload(&server, &token, &second, None),
        upload(&server, &other, &[("slow.txt", b"12")], None),
    );
    for response in [accepts, reads] {
        assert_error(response, 503, "Upload took too long; please try again").await;
    }
    // Nothing of the small one was stored while it was validated, so no
    // sweep could take it: it is recorded whole.
    assert_eq!(small.status(), 201);
    let small_id = small.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let response = server
        .delete(&format!("/ticket/2/{small_id}"), &other)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
    server.assert_nothing_left(Duration::from_secs(15)).await;

    // Quick validation is unaffected.
    let (status, _) =
        pd2_ticket_tests::json(upload(&server, &token, &[("slow.txt", b"0")], None).await).await;
    assert_eq!(status, 201);
}

/// An upload sent in one batch has no journal entry. If its process died
/// while that batch landed half, its files are found by the janitor's check
/// of recent files: files without a ticket or a journal entry are removed;
/// files of a recorded ticket, or of an upload still journaled, stay.
#[tokio::test]
async fn files_of_an_upload_that_died_half_written_are_removed() {
    use mongodb::bson::{Binary, DateTime, Document, oid::ObjectId, spec::BinarySubtype};
    let database = format!(
        "orphans-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let uri = pd2_ticket_tests::shared_db_uri();
    let db = mongodb::Client::with_uri_str(uri)
        .await
        .expect("client")
        .database(&database);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Files received two hours ago, checked up to three hours ago.
    db.collection::<Document>("settings")
        .insert_one(doc! { "_id": "files_checked_until", "value": now - 3 * 3600 })
        .await
        .expect("seed the mark");
    let id = |upload: u8, n: u8| {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&((now - 2 * 3600) as u32).to_be_bytes());
        bytes[4..8].copy_from_slice(&[upload; 4]);
        bytes[11] = n;
        ObjectId::from_bytes(bytes)
    };
    let files = db.collection::<Document>("files.files");
    let chunks = db.collection::<Document>("files.chunks");
    for (upload, ticket, count) in [(1, "dead", 2), (2, "recorded", 1), (3, "journaled", 1)] {
        for n in 0..count {
            files
                .insert_one(doc! {
                    "_id": id(upload, n), "length": 3_i64, "chunkSize": 261120,
                    "uploadDate": DateTime::from_millis((now - 2 * 3600) * 1000),
                    "filename": format!("f{n}.txt"),
                    "metadata": { "ticket_id": ticket, "path": format!("f{n}.txt") },
                })
                .await
                .expect("seed a file");
            chunks
                .insert_one(doc! {
                    "files_id": id(upload, n), "n": 0,
                    "data": Binary { subtype: BinarySubtype::Generic, bytes: b"abc".to_vec() },
                })
                .await
                .expect("seed a chunk");
        }
    }
    db.collection::<Document>("tickets")
        .insert_one(doc! {
            "_id": "recorded", "author_id": "1", "files": [], "is_public": false,
            "remark": "", "create_time": (now - 2 * 3600) * 1000, "seq": 1_i64,
        })
        .await
        .expect("seed a ticket");
    // Touched "in an hour": no sweep takes it for abandoned meanwhile.
    let later = DateTime::from_millis((now + 3600) * 1000);
    db.collection::<Document>("uploads")
        .insert_one(doc! {
            "_id": "journaled", "first_file_id": id(3, 0), "last_file_id": id(3, 255),
            "started_at": later, "touched_at": later,
        })
        .await
        .expect("seed a journal entry");

    let server = Server::start_with(quick_journal().database(uri, &database)).await;
    eventually(
        "the half-written upload's files were not removed",
        Duration::from_secs(30),
        || async {
            server
                .count("files.files", doc! { "metadata.ticket_id": "dead" })
                .await
                == 0
        },
    )
    .await;
    for (upload, files_left, chunks_left) in [(1, 0, 0), (2, 1, 1), (3, 1, 1)] {
        let ids: Vec<ObjectId> = (0..2).map(|n| id(upload, n)).collect();
        assert_eq!(
            (
                server
                    .count("files.files", doc! { "_id": { "$in": &ids } })
                    .await,
                server
                    .count("files.chunks", doc! { "files_id": { "$in": &ids } })
                    .await,
            ),
            (files_left, chunks_left),
            "upload {upload}"
        );
    }
    assert!(
        server
            .log_text()
            .contains("removing the files of an upload that died half written"),
        "{}",
        server.log_text()
    );
    // The mark moved on, to no later than files may still be landing.
    let mark = db
        .collection::<Document>("settings")
        .find_one(doc! { "_id": "files_checked_until" })
        .await
        .expect("mark")
        .and_then(|d| d.get_i64("value").ok())
        .expect("mark value");
    assert!(
        mark > now - 2 * 3600 && mark < now,
        "mark {mark}, now {now}"
    );
}
