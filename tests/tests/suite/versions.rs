//! Versions of a ticket, storage shared by content, diffs and compare,
//! against the real binary with the shipped `config.toml` and first-party
//! plugins, and a real SecantusDB. Material: a real Java project (the
//! observer pattern of java-design-patterns: 30 files, diagrams among the
//! sources) and TinyXML-2's 3,047-line C++ source.
//!
//! The crash tests abort the server at a named step (`TEST_PD2_CRASH_AT`,
//! see `store::crash`) and let a second instance's janitor finish.

use std::time::Duration;

use mongodb::bson::doc;
use pd2_ticket_tests::{
    Server, ServerOptions, assert_error, create_ticket, eventually, json, post_form, project_files,
    workspace_root,
};

type Files = Vec<(String, Vec<u8>)>;

fn observer() -> Files {
    project_files("java-design-patterns/observer")
}

fn refs(files: &Files) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect()
}

async fn post_version(
    server: &Server,
    token: &str,
    id: &str,
    files: &[(&str, &[u8])],
    data: Option<&str>,
) -> reqwest::Response {
    try_post_version(server, token, id, files, data)
        .await
        .expect("version request")
}

async fn try_post_version(
    server: &Server,
    token: &str,
    id: &str,
    files: &[(&str, &[u8])],
    data: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let path = format!("/ticket/@me/{id}/versions");
    post_form(server, &path, token, files, data).await
}

async fn add_version(
    server: &Server,
    token: &str,
    id: &str,
    files: &[(&str, &[u8])],
    data: Option<&str>,
) -> serde_json::Value {
    let (status, body) = json(post_version(server, token, id, files, data).await).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Every file of `files` reads back byte for byte from `ticket`.
async fn reads_back(server: &Server, token: &str, ticket: &str, files: &Files) {
    for (name, bytes) in files {
        let path = format!("/ticket/@me/{ticket}/files/{name}");
        let (status, got) = get_bytes(server, &path, token).await;
        assert_eq!((status, &got), (200, bytes), "{name}");
    }
}

async fn get_bytes(server: &Server, path: &str, token: &str) -> (u16, Vec<u8>) {
    let response = server.get(path, token).send().await.expect("get");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("bytes").to_vec())
}

/// The observer project with `App.java` edited, one file removed, one
/// added, and a diagram renamed: what a student changes between two
/// submissions.
fn second_version(v1: &Files) -> Files {
    let mut v2 = Vec::new();
    for (name, bytes) in v1 {
        if name.ends_with("/App.java") && !name.contains("/generic/") {
            let text = String::from_utf8(bytes.clone()).expect("utf-8");
            let edited = text.replacen(
                "public static void main(String[] args) {",
                "public static void main(String[] args) {\n    // v2: the weather changes twice\n    LOGGER.info(\"starting\");",
                1,
            );
            assert_ne!(edited, text, "the edit applies");
            v2.push((name.clone(), edited.into_bytes()));
        } else if name.ends_with("/WeatherType.java") {
            continue;
        } else if name.ends_with("etc/observer_1.png") {
            v2.push((
                name.replace("observer_1.png", "observer-old.png"),
                bytes.clone(),
            ));
        } else {
            v2.push((name.clone(), bytes.clone()));
        }
    }
    v2.push((
        "java-design-patterns/observer/NOTES.md".to_owned(),
        b"# What changed\n\nApp logs at start.\n".to_vec(),
    ));
    v2
}

#[tokio::test]
async fn a_new_version_keeps_the_link_and_every_read_can_ask_for_the_old_one() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (student, ta) = (server.token("100"), server.token_named("200", Some("ta")));
    let v1 = observer();
    let created = create_ticket(
        &server,
        &student,
        &refs(&v1),
        Some(r#"{"is_public": true, "remark": "lab 3"}"#),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (created["version"].as_i64(), created["versions"].as_i64()),
        (Some(1), Some(1))
    );
    let stored_v1 = server.stored().await;

    let v2 = second_version(&v1);
    let answer = add_version(
        &server,
        &student,
        &id,
        &refs(&v2),
        Some(r#"{"remark": "fixed the start"}"#),
    )
    .await;
    assert_eq!(answer["id"], id.as_str(), "the link stays");
    assert_eq!(
        (answer["version"].as_i64(), answer["versions"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(answer["remark"], "lab 3", "the ticket's remark stays");

    // Storage: only the two new contents (the edited App.java, NOTES.md)
    // were stored; the renamed diagram and 27 unchanged files are shared.
    let stored_v2 = server.stored().await;
    assert_eq!(
        stored_v2.files,
        stored_v1.files + 2,
        "{stored_v1:?} -> {stored_v2:?}"
    );
    assert_eq!(stored_v2.tickets, 1);

    // A third version that changes only pom.xml stores only that: the
    // files v2 added are shared from v2 on.
    let mut v3 = v2.clone();
    let pom = v3
        .iter_mut()
        .find(|(n, _)| n.ends_with("pom.xml"))
        .expect("pom.xml");
    pom.1.extend(b"<!-- v3 -->\n");
    add_version(&server, &student, &id, &refs(&v3), None).await;
    assert_eq!(server.stored().await.files, stored_v2.files + 1);
    // Back to what v2 was: nothing new stored at all.
    let answer = add_version(&server, &student, &id, &refs(&v2), None).await;
    assert_eq!(answer["versions"], 4);
    assert_eq!(server.stored().await.files, stored_v2.files + 1);

    // The TA's reads: the newest by default, the old one on request.
    let base = format!("/ticket/100/{id}");
    let (status, newest) = json(server.get(&base, &ta).send().await.expect("get")).await;
    assert_eq!(status, 200);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| f.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(names(&newest).iter().any(|n| n.ends_with("NOTES.md")));
    let (_, old) = json(
        server
            .get(&format!("{base}?version=1"), &ta)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(old["version"].as_i64(), Some(1));
    assert_eq!(
        names(&old),
        v1.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
    );

    let app = v1
        .iter()
        .find(|(n, _)| {
            n.ends_with("/observer/App.java")
                || (n.ends_with("/App.java") && !n.contains("generic") && !n.contains("Test"))
        })
        .expect("App.java");
    let app_path = app.0.clone();
    let (_, now) = get_bytes(&server, &format!("{base}/files/{app_path}"), &ta).await;
    assert!(String::from_utf8_lossy(&now).contains("v2: the weather changes twice"));
    let (status, then) =
        get_bytes(&server, &format!("{base}/files/{app_path}?version=1"), &ta).await;
    assert_eq!(
        (status, then.as_slice()),
        (200, app.1.as_slice()),
        "v1's bytes, exactly"
    );
    // A file only v1 had.
    let gone = v1
        .iter()
        .find(|(n, _)| n.ends_with("/WeatherType.java"))
        .expect("WeatherType");
    assert_eq!(
        get_bytes(&server, &format!("{base}/files/{}", gone.0), &ta)
            .await
            .0,
        404
    );
    assert_eq!(
        get_bytes(&server, &format!("{base}/files/{}?version=1", gone.0), &ta).await,
        (200, gone.1.clone())
    );

    // Previews of either version (rendered by the first-party plugins).
    let (status, preview) = get_bytes(
        &server,
        &format!("{base}/preview/{app_path}?version=1"),
        &ta,
    )
    .await;
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&preview).contains("v2: the weather"));

    // The zip of each version.
    for (query, count, marker) in [("", v2.len(), true), ("?version=1", v1.len(), false)] {
        let (status, zip) = get_bytes(&server, &format!("{base}/download{query}"), &ta).await;
        assert_eq!(status, 200);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
        assert_eq!(zip.len(), count);
        let mut entry = zip.by_name(&app_path).expect("App.java in the zip");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
        assert_eq!(text.contains("v2: the weather"), marker);
    }

    // Search either version.
    let (_, found) = json(
        server
            .get(&format!("{base}/search?q=weather%20changes%20twice"), &ta)
            .send()
            .await
            .expect("search"),
    )
    .await;
    assert_eq!(
        found["matches"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let (_, found) = json(
        server
            .get(
                &format!("{base}/search?q=weather%20changes%20twice&version=1"),
                &ta,
            )
            .send()
            .await
            .expect("search"),
    )
    .await;
    assert_eq!(
        found["matches"].as_array().map(Vec::len),
        Some(0),
        "{found}"
    );

    // The list of versions.
    let (status, versions) = json(
        server
            .get(&format!("{base}/versions"), &ta)
            .send()
            .await
            .expect("versions"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["remark"], "lab 3");
    assert_eq!(versions[0]["files"].as_u64(), Some(v1.len() as u64));
    assert_eq!(versions[0]["changed"].as_u64(), Some(v1.len() as u64));
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(versions[1]["remark"], "fixed the start");
    // Modified App.java, removed WeatherType.java, renamed diagram, added NOTES.md.
    assert_eq!(versions[1]["changed"].as_u64(), Some(4), "{versions}");

    // Bad and missing versions.
    assert_error(
        server
            .get(&format!("{base}?version=5"), &ta)
            .send()
            .await
            .expect("get"),
        404,
        "Version not found",
    )
    .await;
    assert_error(
        server
            .get(&format!("{base}/files/{app_path}?version=0"), &ta)
            .send()
            .await
            .expect("get"),
        400,
        "Query parameter `version` must be a version number (1 or more)",
    )
    .await;
    assert_error(
        server
            .get(&format!("{base}/download?version=x"), &ta)
            .send()
            .await
            .expect("get"),
        400,
        "Query parameter `version` must be a version number (1 or more)",
    )
    .await;
}

#[tokio::test]
async fn only_the_author_adds_versions_and_nobody_learns_of_a_hidden_ticket() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (student, other) = (server.token("100"), server.token("300"));
    let file: &[(&str, &[u8])] = &[("a.txt", b"one\n")];
    let public = create_ticket(&server, &student, file, Some(r#"{"is_public": true}"#)).await;
    let private = create_ticket(&server, &student, file, None).await;
    let (public, private) = (
        public["id"].as_str().expect("id"),
        private["id"].as_str().expect("id"),
    );

    // Another user sees the public ticket but cannot add to it; the
    // private one does not exist for them (also its versions and diffs).
    let response = server
        .post(&format!("/ticket/100/{public}/versions"), &other)
        .multipart(reqwest::multipart::Form::new().part(
            "files",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
        ))
        .send()
        .await
        .expect("post");
    assert_error(response, 403, "Permission denied").await;
    for path in [
        format!("/ticket/100/{private}/versions"),
        format!("/ticket/100/{private}/diff"),
        format!("/ticket/100/{private}/diff/a.txt"),
        format!("/compare/100/{public}/100/{private}"),
    ] {
        assert_error(
            server.get(&path, &other).send().await.expect("get"),
            404,
            "Ticket not found",
        )
        .await;
    }
    // A refused version leaves the ticket as it was and nothing stored.
    let before = server.stored().await;
    let response = post_version(
        &server,
        &student,
        public,
        &[("a.txt", b"two\n"), ("A.TXT", b"clash\n")],
        None,
    )
    .await;
    assert_eq!(response.status(), 400);
    eventually(
        "a refused version left bytes",
        Duration::from_secs(10),
        || async { server.stored().await == before && server.count("uploads", doc! {}).await == 0 },
    )
    .await;
    let (_, ticket) = json(
        server
            .get(&format!("/ticket/@me/{public}"), &student)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(ticket["versions"], 1);
    // A version of a ticket that does not exist.
    let response = post_version(&server, &student, "0123456789abcdef0123", file, None).await;
    assert_error(response, 404, "Ticket not found").await;
}

#[tokio::test]
async fn diffs_list_every_change_and_show_a_files_lines() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (student, ta) = (server.token("100"), server.token("200"));
    let v1 = observer();
    let created = create_ticket(
        &server,
        &student,
        &refs(&v1),
        Some(r#"{"is_public": true}"#),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let v2 = second_version(&v1);
    add_version(&server, &student, &id, &refs(&v2), None).await;
    let base = format!("/ticket/100/{id}");

    let (status, diff) = json(
        server
            .get(&format!("{base}/diff"), &ta)
            .send()
            .await
            .expect("diff"),
    )
    .await;
    assert_eq!(status, 200, "{diff}");
    assert_eq!(
        (
            diff["from"]["version"].as_i64(),
            diff["to"]["version"].as_i64()
        ),
        (Some(1), Some(2))
    );
    let files = diff["files"].as_array().expect("files");
    let status_of = |suffix: &str| -> serde_json::Value {
        files
            .iter()
            .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
            .cloned()
            .unwrap_or_else(|| panic!("{suffix} in {diff}"))
    };
    let app = status_of("observer/App.java");
    assert_eq!(app["status"], "modified");
    assert_eq!(
        (app["additions"].as_u64(), app["deletions"].as_u64()),
        (Some(2), Some(0)),
        "{app}"
    );
    assert_eq!(status_of("NOTES.md")["status"], "added");
    assert_eq!(status_of("NOTES.md")["additions"], 3);
    assert_eq!(status_of("WeatherType.java")["status"], "removed");
    let renamed = status_of("observer-old.png");
    assert_eq!(renamed["status"], "renamed");
    assert!(
        renamed["old_path"]
            .as_str()
            .is_some_and(|p| p.ends_with("observer_1.png"))
    );
    assert_eq!(status_of("pom.xml")["status"], "unchanged");
    assert_eq!(
        (
            diff["added"].as_u64(),
            diff["removed"].as_u64(),
            diff["modified"].as_u64(),
            diff["renamed"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );

    // One file's lines, as unified text.
    let path = app["path"].as_str().expect("path");
    let response = server
        .get(&format!("{base}/diff/{path}"), &ta)
        .send()
        .await
        .expect("diff");
    assert_eq!(
        response.headers()["content-type"],
        "text/x-diff; charset=utf-8"
    );
    assert_eq!(response.headers()["x-diff"], "text");
    let text = response.text().await.expect("text");
    assert!(
        text.starts_with(&format!("--- a/{path}\n+++ b/{path}\n@@ ")),
        "{text}"
    );
    assert!(
        text.contains("\n+    // v2: the weather changes twice\n"),
        "{text}"
    );
    // The version before: everything added.
    let response = server
        .get(&format!("{base}/diff/{path}?to=1"), &ta)
        .send()
        .await
        .expect("diff");
    let text = response.text().await.expect("text");
    assert!(
        text.starts_with(&format!("--- /dev/null\n+++ b/{path}\n")),
        "{text}"
    );
    // A binary file: said, not diffed.
    let png = files
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("observer.png"))
        })
        .expect("png")["path"]
        .as_str()
        .expect("path")
        .to_owned();
    let response = server
        .get(&format!("{base}/diff/{png}?from=1&to=1"), &ta)
        .send()
        .await
        .expect("diff");
    assert_eq!(response.headers()["x-diff"], "identical");
    assert_eq!(response.text().await.expect("text"), "");
    // Neither side has it; a version that does not exist.
    assert_error(
        server
            .get(&format!("{base}/diff/nope.txt"), &ta)
            .send()
            .await
            .expect("diff"),
        404,
        "Ticket file not found",
    )
    .await;
    assert_error(
        server
            .get(&format!("{base}/diff?from=1&to=7"), &ta)
            .send()
            .await
            .expect("diff"),
        404,
        "Version not found",
    )
    .await;
}

#[tokio::test]
async fn a_large_source_diffs_by_its_lines_and_binary_or_huge_files_say_changed() {
    let server =
        Server::start_with(ServerOptions::shipped().env("PD2_LIMITS__MAX_FILE_SIZE", 4 << 20))
            .await;
    let token = server.token("100");
    let source =
        std::fs::read(workspace_root().join("tests/fixtures/projects/tinyxml2/tinyxml2.cpp"))
            .expect("fixture");
    let text = String::from_utf8_lossy(&source).into_owned();
    // 50 lines changed through the file.
    let edited: String = text
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, line)| {
            if i % 60 == 7 {
                format!("// changed {i}\r\n")
            } else {
                line.to_owned()
            }
        })
        .collect();
    let big = vec![b'x'; 2 * 1024 * 1024 + 1];
    let mut big2 = big.clone();
    big2[10] = b'y';
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let mut png2 = png.clone();
    png2.push(1);
    let created = create_ticket(
        &server,
        &token,
        &[
            ("tinyxml2.cpp", &source),
            ("big.txt", &big),
            ("logo.png", &png),
        ],
        None,
    )
    .await;
    let id = created["id"].as_str().expect("id");
    add_version(
        &server,
        &token,
        id,
        &[
            ("tinyxml2.cpp", edited.as_bytes()),
            ("big.txt", &big2),
            ("logo.png", &png2),
        ],
        None,
    )
    .await;
    let (_, diff) = json(
        server
            .get(&format!("/ticket/@me/{id}/diff"), &token)
            .send()
            .await
            .expect("diff"),
    )
    .await;
    let of = |p: &str| {
        diff["files"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["path"] == p))
            .cloned()
            .expect("path")
    };
    let changed = text
        .split_inclusive('\n')
        .enumerate()
        .filter(|(i, _)| i % 60 == 7)
        .count() as u64;
    assert_eq!(
        (
            of("tinyxml2.cpp")["additions"].as_u64(),
            of("tinyxml2.cpp")["deletions"].as_u64()
        ),
        (Some(changed), Some(changed))
    );
    assert_eq!(of("big.txt")["note"], "too large");
    assert_eq!(of("logo.png")["note"], "binary");
    for (path, kind) in [("big.txt", "too large"), ("logo.png", "binary")] {
        let response = server
            .get(&format!("/ticket/@me/{id}/diff/{path}"), &token)
            .send()
            .await
            .expect("diff");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-diff"], kind);
        assert_eq!(
            response.text().await.expect("text"),
            format!("Files a/{path} and b/{path} differ ({kind})\n")
        );
    }
    // The file at exactly the limit is still diffed.
    let at_limit = vec![b'z'; 2 * 1024 * 1024];
    let mut at_limit2 = at_limit.clone();
    at_limit2[0] = b'\n';
    let created = create_ticket(&server, &token, &[("edge.txt", &at_limit)], None).await;
    let id = created["id"].as_str().expect("id");
    add_version(&server, &token, id, &[("edge.txt", &at_limit2)], None).await;
    let response = server
        .get(&format!("/ticket/@me/{id}/diff/edge.txt"), &token)
        .send()
        .await
        .expect("diff");
    assert_eq!(response.headers()["x-diff"], "text");
}

#[tokio::test]
async fn compare_two_tickets_a_student_can_see() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (ta, student, stranger) = (
        server.token("200"),
        server.token("100"),
        server.token("300"),
    );
    let v1 = observer();
    let starter = create_ticket(
        &server,
        &ta,
        &refs(&v1),
        Some(r#"{"is_public": true, "remark": "starter"}"#),
    )
    .await;
    let starter = starter["id"].as_str().expect("id").to_owned();
    let work = create_ticket(&server, &student, &refs(&second_version(&v1)), None).await;
    let work = work["id"].as_str().expect("id").to_owned();
    // The second ticket's files were stored once: only the 2 new contents.
    let (_, compared) = json(
        server
            .get(&format!("/compare/200/{starter}/@me/{work}"), &student)
            .send()
            .await
            .expect("compare"),
    )
    .await;
    assert_eq!(compared["modified"], 1, "{compared}");
    assert_eq!(compared["to"]["ticket_id"], work.as_str());
    let app = compared["files"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["status"] == "modified"))
        .expect("modified")["path"]
        .as_str()
        .expect("p")
        .to_owned();
    let text = server
        .get(
            &format!("/compare/200/{starter}/@me/{work}/{app}"),
            &student,
        )
        .send()
        .await
        .expect("diff")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("+    // v2: the weather changes twice"),
        "{text}"
    );
    // A stranger cannot see the student's ticket: 404 as for a read.
    assert_error(
        server
            .get(&format!("/compare/200/{starter}/100/{work}"), &stranger)
            .send()
            .await
            .expect("compare"),
        404,
        "Ticket not found",
    )
    .await;
}

#[tokio::test]
async fn shared_bytes_outlive_one_ticket_and_go_with_the_last() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (a, b) = (server.token("100"), server.token("101"));
    let v1 = observer();
    let empty = server.stored().await;
    let first = create_ticket(&server, &a, &refs(&v1), None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let one = server.stored().await;
    // The same folder by another student: no bytes stored again.
    let second = create_ticket(&server, &b, &refs(&v1), None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(server.stored().await.files, one.files);
    add_version(&server, &a, &first, &refs(&second_version(&v1)), None).await;
    // The first ticket goes, every version: the second still reads every
    // byte, and only the first's own new contents went.
    assert_eq!(
        server
            .delete(&format!("/ticket/@me/{first}"), &a)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    assert_eq!(server.stored().await.files, one.files);
    reads_back(&server, &b, &second, &v1).await;
    assert_eq!(
        server
            .delete(&format!("/ticket/@me/{second}"), &b)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    assert_eq!(server.stored().await, empty);
    assert_eq!(server.count("uploads", doc! {}).await, 0);
}

/// A version upload and a delete of the same ticket, raced many times:
/// whichever wins, nothing is left half way: no file without a
/// reference, no reference to a missing file, and a ticket sharing the
/// contents still reads them.
#[tokio::test]
async fn a_version_racing_a_delete_leaves_nothing_behind() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (a, b) = (server.token("100"), server.token("101"));
    let v1 = observer();
    let v2 = second_version(&v1);
    let keeper = create_ticket(&server, &b, &refs(&v1), None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let baseline = server.stored().await;
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..8 {
        let id = create_ticket(&server, &a, &refs(&v1), None).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let files = refs(&v2);
        let (version, deleted) =
            tokio::join!(post_version(&server, &a, &id, &files, None), async {
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 120)).await;
                server
                    .delete(&format!("/ticket/@me/{id}"), &a)
                    .send()
                    .await
                    .expect("delete")
            });
        let outcome = (version.status().as_u16(), deleted.status().as_u16());
        *outcomes.entry(outcome).or_insert(0) += 1;
        assert!(
            matches!(outcome, (201, 204) | (404, 204)),
            "{outcome:?}\n{}",
            server.log_text()
        );
        assert_eq!(
            server
                .get(&format!("/ticket/@me/{id}"), &a)
                .send()
                .await
                .expect("get")
                .status(),
            404
        );
        eventually(
            "the raced ticket's files went",
            Duration::from_secs(20),
            || async {
                server.stored().await == baseline && server.count("uploads", doc! {}).await == 0
            },
        )
        .await;
    }
    reads_back(&server, &b, &keeper, &v1).await;
    eprintln!("race outcomes (version, delete): {outcomes:?}");
}

fn crashing_at(point: &str) -> ServerOptions {
    ServerOptions::shipped()
        .env("TEST_PD2_CRASH_AT", point)
        .env("PD2_LIMITS__UPLOAD_IDLE_SECS", 1)
}

/// A second instance on the first one's database, whose janitor finishes
/// what the first left (entries are stale after 10 idle periods of 1 s).
async fn survivor_of(crashed: &Server) -> Server {
    Server::start_with(
        ServerOptions::shipped()
            .env("PD2_LIMITS__UPLOAD_IDLE_SECS", 1)
            .database(&crashed.db_uri.clone(), &crashed.database.clone()),
    )
    .await
}

#[tokio::test]
async fn a_deletion_cut_short_by_a_crash_is_finished_by_another_instance() {
    let mut crashed = Server::start_with(crashing_at("delete-after-record")).await;
    let (a, b) = (crashed.token("100"), crashed.token("101"));
    let v1 = observer();
    let keeper = create_ticket(&crashed, &b, &refs(&v1), None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let baseline = crashed.stored().await;
    let id = create_ticket(&crashed, &a, &refs(&v1), None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    add_version(&crashed, &a, &id, &refs(&second_version(&v1)), None).await;
    // The record goes, then the process dies before any file does.
    assert!(
        crashed
            .delete(&format!("/ticket/@me/{id}"), &a)
            .send()
            .await
            .is_err()
    );
    crashed
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the server aborted");
    let survivor = survivor_of(&crashed).await;
    assert_eq!(survivor.count("tickets", doc! { "_id": &id }).await, 0);
    assert!(
        survivor.stored().await.files > baseline.files,
        "nothing was removed yet"
    );
    eventually(
        "the deletion was not finished",
        Duration::from_secs(40),
        || async {
            survivor.stored().await == baseline && survivor.count("uploads", doc! {}).await == 0
        },
    )
    .await;
    assert!(
        survivor
            .log_text()
            .contains("finishing an abandoned deletion"),
        "{}",
        survivor.log_text()
    );
    reads_back(&survivor, &b, &keeper, &v1).await;
}

#[tokio::test]
async fn a_version_upload_cut_short_after_taking_references_gives_them_back() {
    let mut crashed = Server::start_with(crashing_at("upload-after-hold")).await;
    let a = crashed.token("100");
    let v1 = observer();
    let id = create_ticket(&crashed, &a, &refs(&v1), None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let baseline = crashed.stored().await;
    // It finds v1's files stored, takes references on them, and dies.
    assert!(
        try_post_version(&crashed, &a, &id, &refs(&second_version(&v1)), None)
            .await
            .is_err()
    );
    crashed
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the server aborted");
    let survivor = survivor_of(&crashed).await;
    eventually(
        "the dead upload was not undone",
        Duration::from_secs(40),
        || async {
            survivor.stored().await == baseline && survivor.count("uploads", doc! {}).await == 0
        },
    )
    .await;
    // The ticket is as it was; deleting it now leaves nothing, which it
    // could not if the dead upload's references had stayed.
    let (_, ticket) = json(
        survivor
            .get(&format!("/ticket/@me/{id}"), &a)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(ticket["versions"], 1);
    assert_eq!(
        survivor
            .delete(&format!("/ticket/@me/{id}"), &a)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    survivor.assert_nothing_left(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_version_recorded_just_before_a_crash_is_kept_whole() {
    let mut crashed = Server::start_with(crashing_at("version-after-record")).await;
    let a = crashed.token("100");
    let v1 = observer();
    let v2 = second_version(&v1);
    let id = create_ticket(&crashed, &a, &refs(&v1), None).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        try_post_version(&crashed, &a, &id, &refs(&v2), None)
            .await
            .is_err()
    );
    crashed
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the server aborted");
    let survivor = survivor_of(&crashed).await;
    // The janitor removes the entry and nothing else: v2 reads whole.
    eventually("the entry stayed", Duration::from_secs(40), || async {
        survivor.count("uploads", doc! {}).await == 0
    })
    .await;
    reads_back(&survivor, &a, &id, &v2).await;
    assert_eq!(
        survivor
            .delete(&format!("/ticket/@me/{id}"), &a)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    survivor.assert_nothing_left(Duration::from_secs(10)).await;
}
