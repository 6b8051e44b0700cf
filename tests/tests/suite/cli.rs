//! The student's command line (SPEC §8): the real `pd2` binary against the
//! real server with the shipped config and the first-party plugins. The
//! device sign-in end to end (approved through the API here, in the
//! browser in `app`), codes expired, denied and used twice; a real
//! project uploaded with its `.gitignore` and build outputs left out,
//! downloaded byte-exact; each refusal and failure as one line and an exit
//! code.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use mongodb::bson::doc;
use pd2_ticket_tests::{
    Server, ServerOptions, free_port, json,
    pd2::{Run, Terminal},
    temp_dir, workspace_root,
};
use serde_json::{Value, json};

async fn server() -> Server {
    server_with(ServerOptions::shipped()).await
}

/// A server of `options` (the shipped config, with changes) for the CLI.
async fn server_with(options: ServerOptions) -> Server {
    Server::start_with(
        options
            .secret("cli-secret-0123456789abcdef")
            // Nothing a student's shell may export breaks the server.
            .env("PD2_TOKEN", "a-student-token")
            .env("PD2_SERVER", "http://example.invalid"),
    )
    .await
}

/// Every error is one line on standard error, `pd2: error: …`.
fn one_line_error(run: &Run, code: i32, says: &str) {
    assert_eq!(
        run.code, code,
        "exit code; stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("pd2: error: ") && first.contains(says),
        "expected `{says}` in: {}",
        run.stderr
    );
}

/// What `GET /ticket` answers this token.
async fn tickets_status(server: &Server, token: &str) -> u16 {
    server
        .get("/ticket", token)
        .send()
        .await
        .expect("list tickets")
        .status()
        .as_u16()
}

async fn approve(server: &Server, token: &str, code: &str, verb: &str) -> u16 {
    server
        .post(&format!("/device/requests/{code}/{verb}"), token)
        .send()
        .await
        .expect("decide")
        .status()
        .as_u16()
}

async fn poll(server: &Server, device_code: &str) -> (u16, Value) {
    json(
        server
            .http
            .post(server.url("/device/token"))
            .json(&json!({ "device_code": device_code }))
            .send()
            .await
            .expect("poll"),
    )
    .await
}

async fn start_code(server: &Server, name: &str) -> Value {
    let (status, start) = json(
        server
            .http
            .post(server.url("/device/code"))
            .json(&json!({ "client_name": name }))
            .send()
            .await
            .expect("start"),
    )
    .await;
    assert_eq!(status, 200, "{start}");
    start
}

#[tokio::test]
async fn a_terminal_signs_in_with_a_code_approved_once() {
    // Device tokens of a day: the terminal renews them (under a week left).
    let server = server_with(ServerOptions::shipped().env("PD2_AUTH__DEVICE_TOKEN_DAYS", 1)).await;
    let student = server.token_named("7001", Some("alice"));
    let terminal = Terminal::new(&server.base);

    let login = terminal.start_login().await;
    assert!(
        login.url.starts_with(&format!("{}/#/device/", server.base))
            && login.url.ends_with(&login.user_code),
        "{}",
        login.url
    );
    // What the student checks before approving: the code and the device.
    let (status, pending) = json(
        server
            .get(
                &format!("/device/requests/{}", login.user_code.to_lowercase()),
                &student,
            )
            .send()
            .await
            .expect("lookup"),
    )
    .await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["user_code"], login.user_code.as_str());
    assert!(
        pending["client_name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("pd2 0.1.0 on ")
    );
    assert!((540..=600).contains(&pending["expires_in"].as_i64().unwrap_or(0)));
    let code = login.user_code.clone();
    assert_eq!(approve(&server, &student, &code, "approve").await, 204);
    let done = login.finish(Duration::from_secs(90)).await;
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    let signed_in: Value = serde_json::from_str(done.stdout.trim()).expect("JSON");
    assert_eq!(signed_in["user"]["id"], "7001");
    assert_eq!(signed_in["server"], server.base.as_str());

    // Kept for its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = terminal.credentials();
        let mode = std::fs::metadata(&file)
            .expect("credentials")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        let dir = std::fs::metadata(file.parent().expect("dir"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(dir & 0o777, 0o700);
    }
    let token_now = || {
        let stored: Value = serde_json::from_str(
            &std::fs::read_to_string(terminal.credentials()).expect("read credentials"),
        )
        .expect("JSON");
        stored["token"].as_str().expect("token").to_owned()
    };
    let first_token = token_now();
    // A second apart, so the renewed token differs from the first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let listed = terminal.run(&["--json", "list"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.json(), json!([]));
    // Renewed and kept: a day left is under the week the terminal wants.
    let renewed_by_cli = token_now();
    assert_ne!(renewed_by_cli, first_token);

    // The code is used up: approving it again finds nothing.
    assert_eq!(approve(&server, &student, &code, "approve").await, 404);
    // The browser lists the terminal; a device cannot approve another.
    let (_, sessions) = json(
        server
            .get("/device/sessions", &student)
            .send()
            .await
            .expect("sessions"),
    )
    .await;
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");
    assert_eq!(sessions[0]["current"], false);
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(terminal.credentials()).expect("read"))
            .expect("JSON");
    let device_token = stored["token"].as_str().expect("token").to_owned();
    let other = start_code(&server, "another terminal").await;
    let other_code = other["user_code"].as_str().expect("code");
    let (status, body) = json(
        server
            .post(
                &format!("/device/requests/{other_code}/approve"),
                &device_token,
            )
            .send()
            .await
            .expect("approve"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // The device's token renews while the device is signed in.
    let (status, renewed) = json(
        server
            .put("/oauth", &device_token)
            .send()
            .await
            .expect("renew"),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let renewed = renewed["access_token"].as_str().expect("token").to_owned();

    // A terminal left alone until its token expires is signed out: its
    // session is over (here the clock moved on in the database).
    let db = server.mongo().await;
    let sessions_coll = db.collection::<mongodb::bson::Document>("device_sessions");
    let live = sessions_coll
        .find_one(doc! {})
        .await
        .expect("find")
        .expect("a session");
    let keep = live.get_i64("expires").expect("expires");
    assert!(keep > 0);
    sessions_coll
        .update_many(doc! {}, doc! { "$set": { "expires": 1_i64 } })
        .await
        .expect("expire");
    assert_eq!(tickets_status(&server, &renewed).await, 403);
    one_line_error(
        &terminal.run(&["list"]).await,
        3,
        "does not accept your sign-in",
    );
    sessions_coll
        .update_many(doc! {}, doc! { "$set": { "expires": keep } })
        .await
        .expect("restore");
    assert_eq!(tickets_status(&server, &renewed).await, 200);

    // The server away: logging out says so and keeps the sign-in, which
    // still works there, for another try.
    let stored = std::fs::read_to_string(terminal.credentials()).expect("read");
    let moved = stored.replace(&server.base, &format!("http://127.0.0.1:{}", free_port()));
    std::fs::write(terminal.credentials(), &moved).expect("write");
    let away = terminal.run(&["logout"]).await;
    one_line_error(&away, 5, "still signed in: run `pd2 logout` again");
    assert!(terminal.credentials().exists());
    std::fs::write(terminal.credentials(), &stored).expect("write");

    // Signing out ends the session on the server: the token, and its
    // renewal, stop working at once.
    let out = terminal.run(&["logout"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Signed out of"), "{}", out.stdout);
    assert!(!terminal.credentials().exists());
    for token in [&first_token, &device_token, &renewed] {
        let status = tickets_status(&server, token).await;
        assert_eq!(status, 403);
    }
    // Signed out, the next sign-in remembers where.
    one_line_error(
        &terminal.run(&["list"]).await,
        3,
        &format!("not signed in: run `pd2 login` (to {}", server.base),
    );
}

#[tokio::test]
async fn device_codes_expire_are_denied_and_give_one_token() {
    let server = server().await;
    let student = server.token_named("7002", Some("bob"));

    // Polled before approval: pending; polled again at once: slow down.
    let start = start_code(&server, "pd2 on ws1 (bob)").await;
    assert_eq!(start["interval"], 5);
    assert_eq!(start["expires_in"], 600);
    assert!(
        start["user_code"]
            .as_str()
            .is_some_and(|c| c.len() == 9 && c.as_bytes()[4] == b'-'),
        "{start}"
    );
    let device_code = start["device_code"].as_str().expect("device_code");
    let (status, body) = poll(&server, device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending")),
        "{body}"
    );
    let (status, body) = poll(&server, device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("slow_down")),
        "{body}"
    );
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));

    // Approved: one poll gets the token, the next nothing.
    let user_code = start["user_code"].as_str().expect("code");
    assert_eq!(approve(&server, &student, user_code, "approve").await, 204);
    // The interval grew to 10 s; a poll waits it out, as a device would.
    let db = server.mongo().await;
    db.collection::<mongodb::bson::Document>("device_codes")
        .update_many(doc! {}, doc! { "$set": { "next_poll": 0_i64 } })
        .await
        .expect("skip the wait");
    let (status, token) = poll(&server, device_code).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 30 * 86_400);
    let access = token["access_token"].as_str().expect("token");
    assert_eq!(tickets_status(&server, access).await, 200);
    let (status, again) = poll(&server, device_code).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "{again}"
    );
    let (status, bogus) = poll(&server, "not-a-code").await;
    assert_eq!(
        (status, bogus["error"].as_str()),
        (400, Some("invalid_grant")),
        "{bogus}"
    );

    // Denied in the browser: the waiting terminal says so and stops.
    let terminal = Terminal::new(&server.base);
    let login = terminal.start_login().await;
    assert_eq!(
        approve(&server, &student, &login.user_code, "deny").await,
        204
    );
    let denied = login.finish(Duration::from_secs(60)).await;
    one_line_error(&denied, 3, "denied");
    assert!(!terminal.credentials().exists());

    // Expired: nobody approved it in time (the clock moved on in the
    // database); the terminal says so, and the code can no longer be
    // approved.
    let login = terminal.start_login().await;
    db.collection::<mongodb::bson::Document>("device_codes")
        .update_many(
            doc! { "user_code": login.user_code.replace('-', "") },
            doc! { "$set": { "expires": 1_i64 } },
        )
        .await
        .expect("expire");
    assert_eq!(
        approve(&server, &student, &login.user_code, "approve").await,
        404
    );
    let expired = login.finish(Duration::from_secs(60)).await;
    one_line_error(&expired, 3, "expired");

    // Guessing codes is bounded: 10 lookups a minute per person.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let response = server
            .get("/device/requests/BCDF-GHJK", &student)
            .send()
            .await
            .expect("lookup");
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let wait: u64 = response.headers()["retry-after"]
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("Retry-After");
            assert!((1..=60).contains(&wait));
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|s| *s == 404 || *s == 429)
    );
}

/// A student's folder: the real observer project with what a student's
/// working copy has beside the sources.
fn student_folder(root: &Path) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let project = root.join("observer");
    copy_dir(
        &workspace_root().join("tests/fixtures/projects/java-design-patterns/observer"),
        &project,
    );
    let mut wanted = BTreeMap::new();
    collect(&project, "observer", &mut wanted);
    let add = |path: &str, bytes: &[u8]| {
        let file = project.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, bytes).expect("write");
    };
    // Sent: names from every OS, a Big5 source, bytes of every value.
    let extra: [(&str, &[u8]); 4] = [
        ("筆記/心得 1.md", "# 心得\n觀察者模式\n".as_bytes()),
        ("docs/my notes.txt", b"spaces in a name\r\n"),
        (
            "legacy/big5.c",
            b"/* \xa7@\xb7~ */\nint main(void){return 0;}\n",
        ),
        ("data/bytes.dat", &(0..=255u8).collect::<Vec<_>>()),
    ];
    for (path, bytes) in extra {
        add(path, bytes);
        wanted.insert(format!("observer/{path}"), bytes.to_vec());
    }
    // Left out: ignored by the project, hidden, build outputs.
    add(".gitignore", b"*.log\nsecret/\n");
    add("run.log", b"log line\n");
    add("secret/token.txt", b"do not share\n");
    add(".idea/workspace.xml", b"<project/>\n");
    add(".DS_Store", b"\0\0\0\x01Bud1");
    add("target/classes/App.class", b"\xca\xfe\xba\xbe");
    add("build/main.o", b"\x7fELF");
    add("node_modules/left-pad/index.js", b"module.exports = 1;\n");
    add(
        "src/main/java/com/iluwatar/observer/Weather.class",
        b"\xca\xfe\xba\xbe",
    );
    (project, wanted)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn collect(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().expect("type").is_dir() {
            collect(&entry.path(), &name, out);
        } else {
            out.insert(name, std::fs::read(entry.path()).expect("read"));
        }
    }
}

#[tokio::test]
async fn a_folder_goes_up_without_what_it_ignores_and_comes_back_byte_exact() {
    let server = server().await;
    let student = server.token_named("7003", Some("carol"));
    let terminal = Terminal::with_token(&server.base, &student);
    let work = temp_dir("pd2-work");
    let (project, wanted) = student_folder(&work);

    // What would go, without sending (and without a server).
    let dry = terminal
        .run_in(&work, &["--json", "upload", "observer", "--dry-run"])
        .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let listed: Vec<String> = dry.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_owned())
        .collect();
    assert_eq!(listed, wanted.keys().cloned().collect::<Vec<_>>());
    let left_out: Vec<String> = dry.json()["left_out"]
        .as_array()
        .expect("left_out")
        .iter()
        .map(|f| f.as_str().expect("name").to_owned())
        .collect();
    assert_eq!(
        left_out,
        [
            "observer/.DS_Store",
            "observer/.gitignore",
            "observer/.idea/workspace.xml",
            "observer/build/main.o",
            "observer/node_modules/left-pad/index.js",
            "observer/run.log",
            "observer/secret/token.txt",
            "observer/src/main/java/com/iluwatar/observer/Weather.class",
            "observer/target/classes/App.class",
        ]
        .map(String::from)
    );
    // Signed in, the dry run is checked by the server too.
    assert_eq!(dry.json()["check"], "accepted");

    let up = terminal
        .run_in(
            &project,
            &["--json", "upload", "--remark", "lab 3: observer"],
        )
        .await;
    assert_eq!(up.code, 0, "{}", up.stderr);
    let answer = up.json();
    let id = answer["ticket"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        answer["link"],
        format!("{}/#/t/7003/{id}", server.base).as_str()
    );
    let mut names: Vec<String> = answer["ticket"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("name").to_owned())
        .collect();
    names.sort();
    assert_eq!(names, wanted.keys().cloned().collect::<Vec<_>>());
    assert_eq!(answer["ticket"]["remark"], "lab 3: observer");
    assert_eq!(answer["ticket"]["is_public"], false);
    // For people, the link is the last line.
    let human = terminal.run_in(&work, &["list"]).await;
    assert!(
        human.stdout.contains(&id) && human.stdout.contains("lab 3: observer"),
        "{}",
        human.stdout
    );

    // Downloaded: every byte as sent.
    let out = work.join("copy");
    let down = terminal
        .run_in(
            &work,
            &["download", &id, "-o", out.to_str().expect("utf-8")],
        )
        .await;
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(
        down.stdout
            .starts_with(&format!("Downloaded {} files", wanted.len())),
        "{}",
        down.stdout
    );
    let mut got = BTreeMap::new();
    collect(&out.join("observer"), "observer", &mut got);
    assert_eq!(got.len(), wanted.len());
    for (name, bytes) in &wanted {
        assert!(got.get(name) == Some(bytes), "{name} differs");
    }
    // Nothing is overwritten unless asked.
    let again = terminal
        .run_in(
            &work,
            &["download", &id, "-o", out.to_str().expect("utf-8")],
        )
        .await;
    one_line_error(&again, 1, "exists");

    // A new version from the same folder: the link stays.
    std::fs::write(
        project.join("README.md"),
        b"# Observer\n\nNow with notes.\n",
    )
    .expect("edit");
    let link = format!("{}/#/t/7003/{id}", server.base);
    let v2 = terminal
        .run_in(
            &project,
            &["upload", "--to", &link, "--remark", "README fixed"],
        )
        .await;
    assert_eq!(v2.code, 0, "{}", v2.stderr);
    assert!(
        v2.stdout.trim_end().ends_with(&link) && v2.stdout.contains("version 2"),
        "{}",
        v2.stdout
    );
    let shown = terminal.run(&["--json", "show", &id]).await;
    assert_eq!(shown.json()["ticket"]["version"], 2);
    let old = terminal.run(&["show", &id, "--version", "1"]).await;
    assert!(old.stdout.contains("version 1 of 2"), "{}", old.stdout);

    // The TA's comment reads as text in the terminal (the TA reads the
    // ticket once it is public).
    let published = terminal.run(&["show", &id]).await;
    assert!(published.stdout.contains("private"), "{}", published.stdout);
    let status = server
        .put(&format!("/ticket/@me/{id}"), &student)
        .json(&json!({ "is_public": true }))
        .send()
        .await
        .expect("publish")
        .status();
    assert_eq!(status, 201);
    let ta = server.token_named("7100", Some("ta"));
    let status = server
        .post(&format!("/ticket/7003/{id}/comments"), &ta)
        .json(&json!({ "body": "Use **`List<Observer>`** & see <https://example.org/a?b=1&c=2>\n\n<script>alert(1)</script>",
                        "path": "observer/README.md", "line_start": 1, "line_end": 1 }))
        .send()
        .await
        .expect("comment")
        .status();
    assert_eq!(status, 201);
    let comments = terminal.run(&["comments", &id]).await;
    assert_eq!(comments.code, 0, "{}", comments.stderr);
    assert!(
        comments
            .stdout
            .contains("── observer/README.md:1 (on version 2)")
            && comments.stdout.contains("\nta · ")
            && comments
                .stdout
                .contains("  Use `List<Observer>` & see https://example.org/a?b=1&c=2\n")
            && comments.stdout.contains("<script>alert(1)</script>"),
        "{}",
        comments.stdout
    );
}

#[tokio::test]
async fn refused_uploads_say_why_and_send_nothing() {
    let server = server().await;
    let student = server.token_named("7004", Some("dave"));
    let terminal = Terminal::with_token(&server.base, &student);
    let work = temp_dir("pd2-refused");
    let tickets = || async { server.count("tickets", doc! {}).await };

    // The policy's name rule, checked before sending.
    let lab = work.join("lab");
    std::fs::create_dir_all(&lab).expect("mkdir");
    std::fs::write(lab.join("Main.java"), b"class Main {}\n").expect("write");
    std::fs::write(lab.join("Main.class"), b"\xca\xfe\xba\xbe").expect("write");
    let run = terminal
        .run_in(&work, &["upload", "lab", "--no-ignore"])
        .await;
    one_line_error(&run, 4, "nothing was sent");
    assert!(
        run.stderr
            .contains("lab/Main.class: `.class` files are not allowed")
            && run.stderr.contains("(file-policy)"),
        "{}",
        run.stderr
    );
    assert_eq!(tickets().await, 0);
    // Left out by default, the same folder goes.
    let run = terminal.run_in(&work, &["--json", "upload", "lab"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["ticket"]["files"], json!(["lab/Main.java"]));
    assert!(run.stderr.contains("1 files left out"), "{}", run.stderr);

    // The size limit, at its edge: 1 MiB goes, 1 MiB + 1 byte does not.
    let limit = 1024 * 1024;
    let edge = work.join("edge");
    std::fs::create_dir_all(&edge).expect("mkdir");
    std::fs::write(edge.join("data.bin"), vec![7u8; limit]).expect("write");
    let run = terminal.run_in(&work, &["upload", "edge"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::write(edge.join("data.bin"), vec![7u8; limit + 1]).expect("write");
    let before = tickets().await;
    let run = terminal.run_in(&work, &["upload", "edge"]).await;
    one_line_error(&run, 4, "nothing was sent");
    assert!(
        run.stderr
            .contains("edge/data.bin: 1.0 MiB is over the limit of 1.0 MiB a file"),
        "{}",
        run.stderr
    );
    assert_eq!(tickets().await, before);

    // Too many files: said before anything is sent.
    let many = work.join("many");
    std::fs::create_dir_all(&many).expect("mkdir");
    for i in 0..201 {
        std::fs::write(many.join(format!("f{i:03}.txt")), b"x\n").expect("write");
    }
    let run = terminal.run_in(&work, &["upload", "many"]).await;
    one_line_error(&run, 4, "nothing was sent");
    assert!(
        run.stderr
            .contains("201 files: the server accepts at most 200"),
        "{}",
        run.stderr
    );

    // A binary dressed as a source passes the name check; the server's
    // content check refuses it (422), with the plugin's reason.
    let disguised = work.join("disguised");
    std::fs::create_dir_all(&disguised).expect("mkdir");
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.extend(vec![0u8; 4096]);
    std::fs::write(disguised.join("main.cpp"), elf).expect("write");
    let run = terminal.run_in(&work, &["upload", "disguised"]).await;
    one_line_error(&run, 4, "(422)");
    assert!(
        run.stderr.contains("disguised/main.cpp: ") && run.stderr.contains("(file-policy)"),
        "{}",
        run.stderr
    );
    assert_eq!(tickets().await, before);

    // Nothing in the folder at all.
    let empty = work.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    one_line_error(
        &terminal.run_in(&work, &["upload", "empty"]).await,
        4,
        "nothing to upload",
    );
}

#[tokio::test]
async fn every_failure_is_one_line_and_an_exit_code() {
    let server = server().await;
    let student = server.token_named("7005", Some("erin"));

    // Not signed in at all.
    let nobody = Terminal::new(&server.base);
    one_line_error(
        &nobody.run(&["list"]).await,
        3,
        "not signed in: run `pd2 login",
    );
    one_line_error(&nobody.run(&["login"]).await, 1, "which server?");
    // A token the server does not take.
    let forged = Terminal::with_token(&server.base, "eyJhbGciOiJIUzI1NiJ9.e30.x");
    one_line_error(
        &forged.run(&["list"]).await,
        3,
        "does not accept your sign-in",
    );
    // Things that are not there, or not tickets.
    let me = Terminal::with_token(&server.base, &student);
    one_line_error(
        &me.run(&["show", "0123456789abcdef0123"]).await,
        4,
        "Ticket not found (404)",
    );
    one_line_error(&me.run(&["show", "../../etc"]).await, 2, "is not a ticket");
    one_line_error(
        &me.run(&["upload", "/nonexistent/folder"]).await,
        1,
        "cannot read /nonexistent/folder",
    );
    // Wrong usage is clap's (2).
    assert_eq!(me.run(&["upload", "--nope"]).await.code, 2);
    // A server that is not there.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let away = Terminal::with_token(&closed, &student);
    one_line_error(
        &away.run(&["list"]).await,
        5,
        "cannot reach http://127.0.0.1:",
    );
    one_line_error(
        &Terminal::new(&closed)
            .run(&["login", "--server", &closed])
            .await,
        5,
        "cannot reach",
    );
    one_line_error(
        &me.run(&["login", "--server", "tickets.example.edu"]).await,
        1,
        "http:// or https://",
    );

    // One address starts 10 sign-ins a minute; the 11th is told to wait.
    for _ in 0..10 {
        start_code(&server, "pd2").await;
    }
    let run = Terminal::new(&server.base)
        .run(&["login", "--server", &server.base])
        .await;
    one_line_error(
        &run,
        4,
        "Too many attempts: try again later (429); try again in ",
    );
    // Behind a proxy (`server.client_ip_header`), each client is its own.
    let proxied =
        server_with(ServerOptions::shipped().env("PD2_SERVER__CLIENT_IP_HEADER", "X-Real-IP"))
            .await;
    let start_from = |ip: &'static str| {
        proxied
            .http
            .post(proxied.url("/device/code"))
            .header("X-Real-IP", ip)
            .json(&json!({ "client_name": "pd2" }))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(start_from("10.0.0.1").await.expect("start").status(), 200);
    }
    assert_eq!(start_from("10.0.0.1").await.expect("start").status(), 429);
    let (status, other) = json(start_from("10.0.0.2").await.expect("start")).await;
    assert_eq!(status, 200, "{other}");
    let viewer = proxied.token_named("7007", Some("frank"));
    let (_, pending) = json(
        proxied
            .get(
                &format!(
                    "/device/requests/{}",
                    other["user_code"].as_str().expect("code")
                ),
                &viewer,
            )
            .send()
            .await
            .expect("lookup"),
    )
    .await;
    assert_eq!(pending["client_ip"], "10.0.0.2");

    // A server whose database is down answers 503: said as such.
    let down = Server::start_with(
        ServerOptions::default()
            .database(&format!("mongodb://127.0.0.1:{}", free_port()), "down")
            .secret("cli-down-secret-0123456789")
            .env("PD2_MONGODB__TIMEOUT_MS", 500),
    )
    .await;
    let token = pd2_ticket_tests::signed_token("cli-down-secret-0123456789", "7006", 3600);
    let run = Terminal::with_token(&down.base, &token)
        .run(&["list"])
        .await;
    one_line_error(&run, 5, "Database unavailable (503)");
}
