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
