//! The reading room's server side, with what students send: a real
//! student's homework saved as Big5 by Visual Studio on Traditional-Chinese
//! Windows, beside a 40-file Java project with images. Previews decode
//! legacy encodings once and say so, the bytes stay as uploaded, and a
//! search finds lines across the ticket within its bounds.

use pd2_ticket_tests::{Server, ServerOptions, assert_error, create_ticket, json, project_files};
use serde_json::Value;

/// The Big5 homework and the Java project, as one folder.
fn folder() -> Vec<(String, Vec<u8>)> {
    let mut files = project_files("nptu-oop-student");
    files.extend(project_files("java-design-patterns"));
    files
}

async fn upload_folder(
    server: &Server,
    token: &str,
    files: &[(String, Vec<u8>)],
    public: bool,
) -> String {
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let data = format!(r#"{{"is_public": {public}}}"#);
    let ticket = create_ticket(server, token, &parts, Some(&data)).await;
    ticket["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_big5_homework_is_previewed_decoded_and_kept_as_uploaded() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let token = server.token("31");
    let files = folder();
    assert!(files.len() >= 40, "{} files", files.len());
    let id = upload_folder(&server, &token, &files, false).await;
    let big5 = &files
        .iter()
        .find(|(n, _)| n.ends_with("Student.cpp"))
        .expect("Student.cpp")
        .1;
    assert!(
        std::str::from_utf8(big5).is_err(),
        "the fixture is Big5, not UTF-8"
    );

    for round in ["cold", "cached"] {
        let response = server
            .get(
                &format!("/ticket/@me/{id}/preview/nptu-oop-student/Student.cpp"),
                &token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{round}");
        assert_eq!(response.headers()["x-preview-encoding"], "Big5", "{round}");
        assert_eq!(
            response.headers()["x-preview-plugin"],
            "code-preview",
            "{round}"
        );
        let html = response.text().await.unwrap();
        assert!(html.contains("//缺交次數"), "{round}: {html}");
        assert!(
            !html.contains('\u{fffd}'),
            "{round}: nothing lost in decoding"
        );
    }
    // The header too, and a UTF-8 source says nothing.
    let header = server
        .get(
            &format!("/ticket/@me/{id}/preview/nptu-oop-student/Student.h"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header.headers()["x-preview-encoding"], "Big5");
    let utf8 = server
        .get(
            &format!("/ticket/@me/{id}/preview/nptu-oop-student/Score.cpp"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(utf8.status(), 200);
    assert!(utf8.headers().get("x-preview-encoding").is_none());
    // The bytes are the student's, as uploaded.
    let raw = server
        .get(
            &format!("/ticket/@me/{id}/files/nptu-oop-student/Student.cpp"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(raw.bytes().await.unwrap().as_ref(), big5.as_slice());
}

async fn search(server: &Server, token: &str, user: &str, id: &str, q: &str) -> reqwest::Response {
    server
        .get(&format!("/ticket/{user}/{id}/search"), token)
        .query(&[("q", q)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn search_finds_lines_across_the_ticket_within_its_bounds() {
    let server = Server::start_with(
        ServerOptions::shipped()
            .env("PD2_LIMITS__MAX_FILE_SIZE", 3 << 20)
            .env("PD2_LIMITS__MAX_TICKET_SIZE", 64 << 20),
    )
    .await;
    let (ann, bob) = (server.token("41"), server.token("42"));
    let files = folder();
    let id = upload_folder(&server, &ann, &files, false).await;

    // Chinese in a Big5 file: found at its line, the excerpt decoded.
    let (status, found) = json(search(&server, &ann, "@me", &id, "缺交").await).await;
    assert_eq!(status, 200, "{found}");
    let hit = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"] == "nptu-oop-student/Student.cpp")
        .unwrap_or_else(|| panic!("{found}"));
    assert_eq!(hit["line"], 7, "{found}");
    assert_eq!(hit["excerpt"], "int times1 = 0;//缺交次數");
    // Case is ignored; images are said not to be text.
    let (_, found) = json(search(&server, &ann, "@me", &id, "WEATHER").await).await;
    let paths: Vec<&str> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with("Weather.java")), "{found}");
    let skipped = found["skipped"].to_string();
    assert!(
        skipped.contains(".png") && skipped.contains("not text"),
        "{found}"
    );
    assert_eq!(found["truncated"], false);
    assert!(found["searched"].as_u64().unwrap() >= 30, "{found}");

    // The query's bounds, and who may search.
    assert_error(
        search(&server, &ann, "@me", &id, "  ").await,
        400,
        "Query must be 1 to 200 characters",
    )
    .await;
    assert_error(
        search(&server, &ann, "@me", &id, &"x".repeat(201)).await,
        400,
        "Query must be 1 to 200 characters",
    )
    .await;
    assert_eq!(
        search(&server, &ann, "@me", &id, &"界".repeat(200))
            .await
            .status(),
        200
    );
    assert_error(
        search(&server, &bob, "41", &id, "class").await,
        404,
        "Ticket not found",
    )
    .await;

    // At most 200 matches; files over 2 MiB are not read (±1 byte).
    let line = "needle\n";
    let many = line.repeat(300);
    let limit = 2usize << 20;
    let at_limit = format!("needle{}", " ".repeat(limit - 6));
    let over_limit = format!("needle{}", " ".repeat(limit - 5));
    assert_eq!((at_limit.len(), over_limit.len()), (limit, limit + 1));
    let big = upload_folder(
        &server,
        &bob,
        &[
            ("t/at.txt".to_owned(), at_limit.into_bytes()),
            ("t/over.txt".to_owned(), over_limit.into_bytes()),
            ("t/many.txt".to_owned(), many.into_bytes()),
        ],
        true,
    )
    .await;
    // A public ticket: anyone signed in may search it.
    let (status, found) = json(search(&server, &ann, "42", &big, "needle").await).await;
    assert_eq!(status, 200, "{found}");
    let matches = found["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 200);
    assert_eq!(found["truncated"], true);
    assert_eq!(
        matches[0]["path"], "t/at.txt",
        "a file of exactly 2 MiB is read"
    );
    let skipped: Vec<&Value> = found["skipped"].as_array().unwrap().iter().collect();
    assert!(
        skipped
            .iter()
            .any(|s| s["path"] == "t/over.txt" && s["reason"] == "too large"),
        "{found}"
    );
    assert!(!skipped.iter().any(|s| s["path"] == "t/at.txt"), "{found}");
}

async fn check(server: &Server, token: &str, files: Value) -> (u16, Value) {
    json(
        server
            .post("/ticket/check", token)
            .json(&serde_json::json!({ "files": files }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Before a byte is sent, the server says which names and sizes it would
/// refuse: its own rules and the policy's by-name rules, with the reasons
/// the upload would give. Nothing is stored.
#[tokio::test]
async fn an_upload_is_checked_by_name_before_its_bytes_are_sent() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let token = server.token("51");
    let max = 1u64 << 20;
    let (status, found) = check(
        &server,
        &token,
        serde_json::json!([
            {"path": "lab/src/Main.java", "size": 1520},
            {"path": "lab/Main.class", "size": 804},
            {"path": "lab/notes.txt", "size": 10},
            {"path": "lab/NOTES.txt", "size": 10},
            {"path": "lab/../../etc/passwd", "size": 10},
            {"path": "lab/big.bin", "size": max + 1},
            {"path": "lab/at-limit.txt", "size": max},
        ]),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let rejections = found["rejections"].as_array().unwrap();
    let reason = |file: &str| {
        rejections.iter().find(|r| r["file"] == file).map(|r| {
            format!(
                "{}: {}",
                r["plugin"].as_str().unwrap(),
                r["message"].as_str().unwrap()
            )
        })
    };
    assert!(
        reason("lab/Main.class").is_some_and(|r| r.starts_with("file-policy: ")),
        "{found}"
    );
    assert!(
        reason("lab/NOTES.txt").is_some_and(|r| r.starts_with("pd2-ticket: Duplicate file name")),
        "{found}"
    );
    assert!(
        reason("lab/../../etc/passwd").is_some_and(|r| r.contains("Illegal file name")),
        "{found}"
    );
    assert!(
        reason("lab/big.bin").is_some_and(|r| r == "pd2-ticket: File is too large"),
        "{found}"
    );
    for fine in ["lab/src/Main.java", "lab/notes.txt", "lab/at-limit.txt"] {
        assert_eq!(reason(fine), None, "{fine}: {found}");
    }
    // A folder without a problem: nothing to say, nothing stored.
    let (status, found) = check(
        &server,
        &token,
        serde_json::json!([{"path": "a/Main.java", "size": 5}]),
    )
    .await;
    assert_eq!(
        (status, found),
        (200, serde_json::json!({"rejections": []}))
    );
    assert_eq!(server.stored().await.files, 0);
    // Bounded: a body over 64 KiB is refused.
    let many: Vec<Value> = (0..2000)
        .map(|i| serde_json::json!({"path": format!("src/file-number-{i:05}.java"), "size": 1}))
        .collect();
    let (status, body) = check(&server, &token, Value::Array(many)).await;
    assert_eq!(status, 413, "{body}");
}
