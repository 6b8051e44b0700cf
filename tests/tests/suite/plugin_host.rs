//! The plugin host as an admin has to trust it: names that two files
//! claim, bounds on everything a plugin hands back, budgets shared by all
//! calls, start-up and the compile cache, and the preview cache's hygiene.
//! Real components built with the SDK, through the real server.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use pd2_ticket_tests::{
    Server, ServerOptions, create_ticket, eventually, first_party_plugins, fixture_plugins, json,
    plugin_dir, temp_dir, upload,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    fixture_plugins().join(format!("{name}.wasm"))
}
fn first_party(name: &str) -> PathBuf {
    first_party_plugins().join(format!("{name}.wasm"))
}

fn options(dir: &Path) -> ServerOptions {
    ServerOptions::default()
        .env("PD2_PLUGINS__DIR", dir.display())
        .admins(&["900"])
}

async fn health(server: &Server) -> Value {
    json(server.get_anonymous("/health").await).await.1
}

async fn plugins(server: &Server, token: &str) -> Value {
    let (status, body) = json(server.get("/plugins", token).send().await.unwrap()).await;
    assert_eq!(status, 200);
    body
}

/// An impostor claiming `file-policy` beside the real one: neither runs,
/// the uploads the policy would check fail closed, every time the server
/// starts; removing the impostor restores the policy by itself.
#[tokio::test]
async fn a_name_claimed_twice_fails_closed_until_one_file_is_gone() {
    let dir = plugin_dir(&[&first_party("file-policy"), &fixture("impostor")]);
    let db = format!("impostor-{:x}", rand::random::<u32>());
    for _start in 0..3 {
        let server =
            Server::start_with(options(&dir).database(pd2_ticket_tests::shared_db_uri(), &db))
                .await;
        let student = server.token("1");
        let response = upload(&server, &student, &[("a.exe", b"MZ\x90\x00")], None).await;
        let status = response.status().as_u16();
        let (_, body) = json(response).await;
        assert_eq!(status, 503, "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("Plugin unavailable: plugin name \"file-policy\" is claimed by")
                && detail.contains("file-policy.wasm")
                && detail.contains("impostor.wasm"),
            "{detail}"
        );
        // Not even a harmless upload passes unchecked.
        let response = upload(&server, &student, &[("Main.java", b"class Main {}")], None).await;
        assert_eq!(response.status(), 503);

        let h = health(&server).await;
        assert_eq!(h["plugins"]["status"], "degraded", "{h}");
        assert_eq!(
            h["plugins"]["conflicts"],
            serde_json::json!(["file-policy"])
        );
        let listed = plugins(&server, &server.token("900")).await;
        assert!(
            !listed["plugins"].to_string().contains("file-policy"),
            "{listed}"
        );
        assert_eq!(listed["conflicts"][0]["name"], "file-policy", "{listed}");
        let logged = server
            .log_text()
            .lines()
            .filter(|l| l.contains("plugin name conflict"))
            .count();
        assert_eq!(logged, 1, "logged once per start:\n{}", server.log_text());
        assert_eq!(server.stored().await.files, 0, "nothing kept");
    }

    let server =
        Server::start_with(options(&dir).database(pd2_ticket_tests::shared_db_uri(), &db)).await;
    let student = server.token("1");
    std::fs::remove_file(dir.join("impostor.wasm")).unwrap();
    eventually(
        "the conflict never cleared",
        Duration::from_secs(30),
        || async { health(&server).await["plugins"]["conflicts"] == serde_json::json!([]) },
    )
    .await;
    // Its default settings refuse a binary renamed to a source file.
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(64, 0);
    let response = upload(&server, &student, &[("Main.java", &elf)], None).await;
    assert_eq!(response.status(), 422, "the real policy serves again");
}

/// Once the server runs, a file copied in under the name of a plugin that
/// serves is refused and reported; the plugin keeps serving. When the
/// serving file goes, the refused one is examined again and takes over.
#[tokio::test]
async fn a_file_claiming_a_serving_name_is_refused_and_the_plugin_keeps_running() {
    let dir = plugin_dir(&[&first_party("file-policy")]);
    let server = Server::start_with(options(&dir)).await;
    let (admin, student) = (server.token("900"), server.token("1"));
    // Its default settings refuse a binary renamed to a source file.
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(64, 0);
    std::fs::copy(fixture("impostor"), dir.join("impostor.wasm")).unwrap();
    eventually(
        "the impostor was never reported",
        Duration::from_secs(60),
        || async {
            plugins(&server, &admin).await["errors"]
                .to_string()
                .contains("impostor.wasm")
        },
    )
    .await;
    let listed = plugins(&server, &admin).await;
    let errors = listed["errors"].to_string();
    assert!(
        errors.contains("plugin name \\\"file-policy\\\" is already served by file-policy.wasm"),
        "{listed}"
    );
    assert_eq!(listed["conflicts"], serde_json::json!([]), "{listed}");
    let h = health(&server).await;
    assert_eq!(h["plugins"]["conflicts"], serde_json::json!([]), "{h}");
    // The real policy still refuses a program.
    let response = upload(&server, &student, &[("Main.java", &elf)], None).await;
    assert_eq!(response.status(), 422);
    assert!(
        server
            .log_text()
            .lines()
            .any(|l| l.contains("plugin not loaded") && l.contains("already served")),
        "{}",
        server.log_text()
    );

    std::fs::remove_file(dir.join("file-policy.wasm")).unwrap();
    eventually(
        "the refused file never took over",
        Duration::from_secs(60),
        || async { plugins(&server, &admin).await["errors"] == serde_json::json!([]) },
    )
    .await;
    let response = upload(&server, &student, &[("a.exe", b"MZ\x90\x00")], None).await;
    assert_eq!(
        response.status(),
        201,
        "the impostor (accepts all) serves now"
    );
}

/// Names follow the documented alphabet, and a plugin that wants every
/// preview at the highest priority is refused, saying why.
#[tokio::test]
async fn manifests_out_of_bounds_are_refused_with_the_reason() {
    let dir = plugin_dir(&[&fixture("greedy"), &first_party("plain-text")]);
    let server = Server::start_with(options(&dir)).await;
    let admin = server.token("900");
    let listed = plugins(&server, &admin).await;
    let errors = listed["errors"].to_string();
    assert!(
        errors.contains("greedy.wasm")
            && errors.contains("priority 2147483647 is outside -1000..=1000"),
        "{listed}"
    );
    let ticket = create_ticket(&server, &admin, &[("a.txt", b"hello")], None).await;
    let id = ticket["id"].as_str().unwrap();
    let response = server
        .get(&format!("/ticket/@me/{id}/preview/a.txt"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-preview-plugin"], "plain-text");
}

/// 40 files, each rejected with a 20 MiB message holding a newline: the
/// 422 lists the first `max_messages`, each cut and escaped, and counts the
/// rest; the server log holds no forged line.
#[tokio::test]
async fn a_flood_of_long_rejections_gives_a_small_422() {
    let dir = plugin_dir(&[&fixture("misbehave")]);
    let server = Server::start_with(
        options(&dir)
            .env("PD2_LIMITS__MAX_FILES", 100)
            .env("PD2_PLUGINS__TIMEOUT_MS", 10_000)
            .env("PD2_PLUGINS__UPLOAD_TIMEOUT_MS", 120_000),
    )
    .await;
    let token = server.token("1");
    let names: Vec<String> = (0..40).map(|i| format!("flood{i}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let response = upload(&server, &token, &files, None).await;
    assert_eq!(response.status(), 422);
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() < 64 * 1024, "422 body of {} bytes", bytes.len());
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let rejections = body["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), 20);
    assert_eq!(body["omitted"], 20);
    // In upload order, whatever order the concurrent calls finished in.
    assert_eq!(rejections[0]["file"], "flood0.txt");
    assert_eq!(rejections[19]["file"], "flood19.txt");
    let message = rejections[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("flooded\\nFORGED LOG LINE xxx"),
        "{message}"
    );
    assert!(
        message.ends_with('…') && message.chars().count() == 501,
        "{}",
        message.len()
    );
    assert!(!server.log_text().lines().any(|l| l.starts_with("FORGED")));
    assert_eq!(server.stored().await.files, 0);
}

/// A renderer that logs a million lines: the log gets the call's share
/// and one line saying how many were suppressed; no forged line appears.
#[tokio::test]
async fn a_chatty_plugin_gets_a_bounded_log() {
    let dir = plugin_dir(&[&fixture("misbehave")]);
    // A million host calls take ~2 s here, but over 20 s on a machine busy
    // building (a fresh `./test.sh`): the render has time to finish.
    let server = Server::start_with(
        options(&dir)
            .env("PD2_PLUGINS__TIMEOUT_MS", 150_000)
            .env("PD2_PLUGINS__LOG_LINES_PER_CALL", 50),
    )
    .await;
    let token = server.token("1");
    let ticket = create_ticket(&server, &token, &[("chatty.txt", b"x")], None).await;
    let id = ticket["id"].as_str().unwrap();
    let response = server
        .get(&format!("/ticket/@me/{id}/preview/chatty.txt"), &token)
        .timeout(Duration::from_secs(180))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = server.log_text();
    let lines = log.lines().filter(|l| l.contains("chatty line")).count();
    assert_eq!(lines, 50, "{}", &log[..log.len().min(4000)]);
    assert!(
        log.contains("suppressed=999950"),
        "{}",
        &log[log.len().saturating_sub(4000)..]
    );
    assert!(!log.lines().any(|l| l.starts_with("FORGED")));
    assert!(log.len() < 1 << 20, "log of {} bytes", log.len());
}

/// Why a call failed is told apart and reaches the admin: the panic's own
/// message, running out of memory, the time limit, a content type no
/// preview may have.
#[tokio::test]
async fn failures_are_diagnosed_for_the_admin() {
    let dir = plugin_dir(&[&fixture("misbehave")]);
    let server = Server::start_with(options(&dir).env("PD2_PLUGINS__TIMEOUT_MS", 1500)).await;
    let admin = server.token("900");
    let ticket = create_ticket(
        &server,
        &admin,
        &[
            ("panic.txt", b"x"),
            ("alloc.txt", b"x"),
            ("loop.txt", b"x"),
            ("octet.txt", b"x"),
        ],
        None,
    )
    .await;
    let id = ticket["id"].as_str().unwrap();
    for (file, expected) in [
        ("panic.txt", "render: panicked: renderer panicked (at "),
        ("alloc.txt", "render: ran out of memory (limit 64 MiB)"),
        ("loop.txt", "render: exceeded its 1.5s time limit"),
        ("octet.txt", "is not one a preview may have"),
    ] {
        let response = server
            .get(&format!("/ticket/@me/{id}/preview/{file}"), &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{file}");
        let listed = plugins(&server, &admin).await;
        let last = listed["plugins"][0]["stats"]["last_failure"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(last.contains(expected), "{file}: {last}");
    }
    let log = server.log_text();
    assert!(
        log.contains("reason=\"panic\"") || log.contains("reason=panic"),
        "{log}"
    );
    let metrics = server.metrics(&admin).await;
    for reason in ["panic", "out_of_memory", "timeout", "bad_output"] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {metrics}"
        );
    }
    // Failed renders are not retried at once: the second request is
    // answered without running the plugin (its call count stays).
    let calls = |v: &Value| v["plugins"][0]["stats"]["calls"].as_u64().unwrap_or(0);
    let before = calls(&plugins(&server, &admin).await);
    let again = server
        .get(&format!("/ticket/@me/{id}/preview/loop.txt"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 415);
    assert_eq!(calls(&plugins(&server, &admin).await), before);
}

/// One requester cannot take all the renderers: beyond its slots it gets
/// 429, and uploads (validators have their own pool) still go through
/// while every renderer slot is busy.
#[tokio::test]
async fn previews_cannot_starve_uploads_or_other_users() {
    let dir = plugin_dir(&[&fixture("misbehave")]);
    let server = Server::start_with(
        options(&dir)
            .env("PD2_PLUGINS__TIMEOUT_MS", 3000)
            .env("PD2_PLUGINS__PREVIEWS_PER_USER", 2),
    )
    .await;
    let hog = server.token("1");
    // Distinct paths: distinct previews, so the failure cache does not
    // answer any of them.
    let names: Vec<String> = (0..6).map(|i| format!("d{i}/loop.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let many = create_ticket(&server, &hog, &files, None).await;
    let many_id = many["id"].as_str().unwrap().to_owned();
    let mut running = Vec::new();
    for name in &names {
        let request = server
            .get(&format!("/ticket/@me/{many_id}/preview/{name}"), &hog)
            .send();
        running.push(tokio::spawn(request));
    }
    let mut statuses = Vec::new();
    for r in running {
        statuses.push(r.await.unwrap().unwrap().status().as_u16());
    }
    statuses.sort();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 4, "{statuses:?}");

    // 128 looping previews from 64 students (2 each, their limit), then
    // another student uploads: validators have their own pool, so the
    // upload is validated meanwhile.
    let other = server.token("2");
    let mut loops = Vec::new();
    for u in 0..64 {
        let user = server.token(&format!("{}", 100 + u));
        let names: Vec<String> = (0..2).map(|i| format!("{i}/loop.txt")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let t = create_ticket(&server, &user, &files, None).await;
        let t = t["id"].as_str().unwrap().to_owned();
        for name in &names {
            let request = server
                .get(&format!("/ticket/@me/{t}/preview/{name}"), &user)
                .send();
            loops.push(tokio::spawn(request));
        }
    }
    let response = upload(&server, &other, &[("EVIL.txt", b"EVIL")], None).await;
    assert_eq!(response.status(), 422, "the validator ran meanwhile");
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for l in loops {
        let status = l.await.unwrap().map_or(0, |r| r.status().as_u16());
        *answers.entry(status).or_default() += 1;
    }
    // Each either ran out of time (415) or found no renderer free (503).
    let settled: usize = [415, 503].iter().filter_map(|s| answers.get(s)).sum();
    assert_eq!(settled, 128, "{answers:?}");
}

/// `/ping` answers while the plugins compile, `/health` says `starting`
/// until they are loaded; a second start takes them from the compile cache.
#[tokio::test]
async fn start_up_answers_at_once_and_reuses_compiled_plugins() {
    let dir = plugin_dir(&[
        &first_party("code-preview"),
        &first_party("markdown-preview"),
        &first_party("file-policy"),
    ]);
    let cache = temp_dir("compile-cache");
    let opts = || options(&dir).env("PD2_PLUGINS__CACHE_DIR", cache.display());
    let server = Server::start_with(opts()).await;
    let log = server.log_text();
    let ping_before = log
        .find("listening")
        .zip(log.find("plugins loaded"))
        .is_some_and(|(l, p)| l < p);
    assert!(ping_before, "listening comes before plugins load:\n{log}");
    assert!(log.contains("from_cache=0"), "{log}");
    let cached = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(cached, 3, "one compiled file per plugin");
    drop(server);

    let again = Server::start_with(opts()).await;
    let log = again.log_text();
    assert!(log.contains("from_cache=3"), "{log}");
}

/// A cached preview goes with the last ticket that holds its content.
#[tokio::test]
async fn cached_previews_go_with_their_tickets() {
    let dir = plugin_dir(&[&first_party("plain-text")]);
    let server = Server::start_with(options(&dir)).await;
    let token = server.token("1");
    let one = create_ticket(&server, &token, &[("a.txt", b"shared")], None).await;
    let two = create_ticket(&server, &token, &[("a.txt", b"shared")], None).await;
    for t in [&one, &two] {
        let id = t["id"].as_str().unwrap();
        let r = server
            .get(&format!("/ticket/@me/{id}/preview/a.txt"), &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(server.count("previews", mongodb::bson::doc! {}).await, 1);
    let delete = |t: &Value| {
        let id = t["id"].as_str().unwrap().to_owned();
        server.delete(&format!("/ticket/@me/{id}"), &token).send()
    };
    assert_eq!(delete(&one).await.unwrap().status(), 204);
    assert_eq!(
        server.count("previews", mongodb::bson::doc! {}).await,
        1,
        "the other ticket still holds the content"
    );
    assert_eq!(delete(&two).await.unwrap().status(), 204);
    assert_eq!(server.count("previews", mongodb::bson::doc! {}).await, 0);
}

/// The whole validation of an upload has one time budget: a validator
/// that takes longer fails the upload closed, and nothing is kept.
#[tokio::test]
async fn validating_an_upload_has_one_time_budget() {
    let dir = plugin_dir(&[&fixture("misbehave")]);
    let server = Server::start_with(
        options(&dir)
            .env("PD2_PLUGINS__TIMEOUT_MS", 20_000)
            .env("PD2_PLUGINS__UPLOAD_TIMEOUT_MS", 1_000),
    )
    .await;
    let token = server.token("1");
    let response = upload(
        &server,
        &token,
        &[("slow.txt", b"5"), ("b.txt", b"ok")],
        None,
    )
    .await;
    let (status, body) = json(response).await;
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(
            "Plugin unavailable: validating this upload took longer than the 1.0 s allowed"
        ),
        "{detail}"
    );
    server.assert_nothing_left(Duration::from_secs(15)).await;
}

/// A component built against interface 1.0.0 (before `time-left-ms`)
/// loads and renders on this 1.2 host; a renderer learns how much time
/// its call has left and opens other files of its ticket, within bounds.
#[tokio::test]
async fn older_minor_versions_load_and_renderers_know_their_deadline() {
    let dir = plugin_dir(&[&fixture("legacy"), &fixture("misbehave")]);
    let server = Server::start_with(options(&dir).env("PD2_PLUGINS__TIMEOUT_MS", 1500)).await;
    let token = server.token("1");
    let ticket = create_ticket(
        &server,
        &token,
        &[
            ("a.legacy", b"old"),
            ("deadline.txt", b"x"),
            ("opener.txt", b"y"),
        ],
        None,
    )
    .await;
    let id = ticket["id"].as_str().unwrap();
    let get = |path: &str| {
        server
            .get(&format!("/ticket/@me/{id}/preview/{path}"), &token)
            .send()
    };
    let old = get("a.legacy").await.unwrap();
    assert_eq!(old.status(), 200);
    assert_eq!(old.text().await.unwrap(), "legacy ok: old");
    let left: u64 = get("deadline.txt")
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .expect("milliseconds");
    assert!(left > 0 && left <= 1500, "{left} ms left");

    // 1.2.0's `open-file`: other files of the same ticket, at most 64 per
    // render, none by a path longer than any ticket path.
    let opened = get("opener.txt").await.unwrap().text().await.unwrap();
    assert_eq!(
        opened,
        "Some(\"deadline.txt text/plain; charset=utf-8 [120]\"), long false, then 63 more, missing false",
    );
}
