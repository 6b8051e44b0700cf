//! Plugins through the real server and CLI: real components in wasmtime,
//! including ones that loop, hoard memory, panic, return too much or
//! garbage, or were built for another interface version.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use pd2_ticket_tests::{
    Server, ServerOptions, Stored, assert_error, create_ticket, first_party_plugins,
    fixture_plugins, json, plugin_dir, server_binary, upload,
};
use serde_json::{Value, json};

fn misbehave() -> PathBuf {
    fixture_plugins().join("misbehave.wasm")
}
fn future() -> PathBuf {
    fixture_plugins().join("future.wasm")
}
fn plain_text() -> PathBuf {
    first_party_plugins().join("plain-text.wasm")
}

fn options(dir: &Path) -> ServerOptions {
    ServerOptions::default()
        .env("PD2_PLUGINS__DIR", dir.display())
        // Long enough that copying out 16 MiB (`big.txt`) fails on its size,
        // not on the clock, with a debug build on a loaded machine.
        .env("PD2_PLUGINS__TIMEOUT_MS", 1500)
        .admins(&["900"])
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(server_binary())
        .args(args)
        .current_dir(pd2_ticket_tests::temp_dir("cli"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `plugin bench` times the hook asked for (by default the renderer), and
/// a hook that fails is a failed benchmark, never a fast one.
#[test]
fn cli_bench_times_the_hook_asked_for_and_fails_with_it() {
    let dir = pd2_ticket_tests::temp_dir("bench-input");
    let (notes, panics) = (dir.join("notes.txt"), dir.join("panic.txt"));
    std::fs::write(&notes, "some notes\n").unwrap();
    std::fs::write(&panics, "boom\n").unwrap();
    let bench = |plugin: &Path, input: &Path, hook: Option<&str>| {
        let mut args = vec![
            "plugin",
            "bench",
            plugin.to_str().unwrap(),
            input.to_str().unwrap(),
            "--iterations",
            "3",
        ];
        if let Some(hook) = hook {
            args.extend(["--hook", hook]);
        }
        cli(&args)
    };
    // By default the renderer; a renderer that panics fails the benchmark
    // (it was "benched" at 23 µs through its ticket validator).
    let (code, out, _) = bench(&misbehave(), &notes, None);
    assert_eq!(code, 0);
    assert!(out.contains("misbehave render (direct): 3 calls"), "{out}");
    let (code, _, err) = bench(&misbehave(), &panics, None);
    assert_ne!(code, 0);
    assert!(
        err.contains("misbehave failed during the benchmark"),
        "{err}"
    );
    // Another hook, by name.
    let (code, out, _) = bench(&misbehave(), &notes, Some("validate-ticket"));
    assert_eq!(code, 0);
    assert!(
        out.contains("misbehave validate-ticket (direct): 3 calls"),
        "{out}"
    );
    // A hook the plugin does not have is named with those it has.
    let (code, _, err) = bench(&plain_text(), &notes, Some("validate-file"));
    assert_ne!(code, 0);
    assert!(
        err.contains("plain-text does not implement validate-file (it implements: render)"),
        "{err}"
    );
}

#[test]
fn cli_checks_renders_and_validates_without_a_database() {
    let (code, out, _) = cli(&["plugin", "check", misbehave().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("name:        misbehave"), "{out}");
    assert!(
        out.contains("hooks:       render, validate-file, validate-ticket"),
        "{out}"
    );

    let (code, _, err) = cli(&["plugin", "check", future().to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("pd2:plugin@2.0.0") && err.contains("accepts pd2:plugin@1.x"),
        "{err}"
    );

    let dir = pd2_ticket_tests::temp_dir("cli-input");
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, "this is not wasm").unwrap();
    let (code, _, err) = cli(&["plugin", "check", garbage.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("not a WebAssembly file"), "{err}");
    // A component that exports nothing of ours (a crate without
    // `export_plugin!`): refused with what a plugin crate needs.
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
    let (code, _, err) = cli(&["plugin", "check", empty.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("does not use pd2:plugin@1.x")
            && err.contains("export_plugin!")
            && err.contains("cdylib"),
        "{err}"
    );

    let input = dir.join("notes.txt");
    std::fs::write(&input, "a\tb <i>").unwrap();
    let (code, out, err) = cli(&[
        "plugin",
        "render",
        plain_text().to_str().unwrap(),
        input.to_str().unwrap(),
        "--settings",
        "tab_width = 1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.trim(), "text/html; charset=utf-8");
    assert!(out.contains("<td>a b &lt;i&gt;</td>"), "{out}");

    let evil = dir.join("evil.txt");
    std::fs::write(&evil, "EVIL payload").unwrap();
    let (code, out, _) = cli(&[
        "plugin",
        "validate",
        misbehave().to_str().unwrap(),
        input.to_str().unwrap(),
        evil.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("accept") && out.contains("reject") && out.contains("starts with EVIL"),
        "{out}"
    );
}

/// `plugin check --dir` says when the plugin's name is taken there (the
/// server would refuse the file), and `--ticket DIR` makes a folder the
/// ticket of a local render: ticket paths below it, other files read there.
#[test]
fn cli_check_warns_of_a_taken_name_and_render_takes_a_ticket_folder() {
    let dir = plugin_dir(&[&first_party_plugins().join("file-policy.wasm")]);
    let impostor = fixture_plugins().join("impostor.wasm");
    let (code, out, err) = cli(&[
        "plugin",
        "check",
        impostor.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("name:        file-policy"),
        "the manifest still shows: {out}"
    );
    assert!(
        err.contains("the name \"file-policy\" is taken") && err.contains("file-policy.wasm"),
        "{err}"
    );
    // The file itself is no rival.
    let own = dir.join("file-policy.wasm");
    let (code, _, err) = cli(&[
        "plugin",
        "check",
        own.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");

    let hw = pd2_ticket_tests::temp_dir("cli-ticket");
    std::fs::create_dir_all(hw.join("docs")).unwrap();
    std::fs::create_dir_all(hw.join("shots")).unwrap();
    std::fs::copy(
        pd2_ticket_tests::workspace_root().join("tests/fixtures/images/photo.png"),
        hw.join("shots/run 1.png"),
    )
    .unwrap();
    std::fs::write(
        hw.join("docs/README.md"),
        "# HW\n\n![run](../shots/run%201.png)\n\n[main](../src/Main.java#L3)\n",
    )
    .unwrap();
    let markdown = first_party_plugins().join("markdown-preview.wasm");
    let readme = hw.join("docs/README.md");
    let render = |ticket: Option<&Path>| {
        let mut args = vec![
            "plugin",
            "render",
            markdown.to_str().unwrap(),
            readme.to_str().unwrap(),
        ];
        if let Some(ticket) = ticket {
            args.extend(["--ticket", ticket.to_str().unwrap()]);
        }
        cli(&args)
    };
    let (code, out, err) = render(Some(&hw));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("src=\"data:image/png;base64,"),
        "the image was read from the ticket: {out}"
    );
    assert!(
        out.contains(r#"href="../src/Main.java#L3" data-pd2-path="src/Main.java""#),
        "{out}"
    );
    // Without it, the file's own folder is the ticket: `../shots` leaves it.
    let (code, out, _) = render(None);
    assert_eq!(code, 0);
    assert!(!out.contains("data:image/png"), "{out}");
    // An input outside the ticket folder is refused, naming both.
    let other = pd2_ticket_tests::temp_dir("cli-elsewhere");
    let (code, _, err) = render(Some(&other));
    assert_ne!(code, 0);
    assert!(err.contains("is not inside --ticket"), "{err}");
}

async fn preview(server: &Server, token: &str, id: &str, path: &str) -> reqwest::Response {
    server
        .get(&format!("/ticket/@me/{id}/preview/{path}"), token)
        .send()
        .await
        .unwrap()
}

async fn plugins(server: &Server, token: &str) -> Value {
    let (status, body) = json(server.get("/plugins", token).send().await.unwrap()).await;
    assert_eq!(status, 200);
    body
}

/// Each failure mode fails only its own call: the next renderer answers,
/// and the server keeps serving other requests meanwhile.
#[tokio::test]
async fn misbehaving_renderers_fail_only_their_call() {
    let dir = plugin_dir(&[&misbehave(), &plain_text()]);
    let server = Server::start_with(options(&dir)).await;
    let admin = server.token("900");
    let names = [
        "loop.txt",
        "sleep.txt",
        "alloc.txt",
        "panic.txt",
        "big.txt",
        "badtype.txt",
        "decline.txt",
        "ok.txt",
    ];
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (*n, b"text\n".as_slice()))
        .chain([("data.bin", b"\x00".as_slice())])
        .collect();
    let ticket = create_ticket(&server, &admin, &files, None).await;
    let id = ticket["id"].as_str().unwrap().to_owned();

    // While a plugin spins until its time limit, other requests are served.
    let slow = {
        let (http, url, token) = (
            server.http.clone(),
            server.url(&format!("/ticket/@me/{id}/preview/loop.txt")),
            admin.clone(),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(token).send().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..5 {
        assert_eq!(
            server
                .http
                .get(server.url("/ping"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let file = server
            .get(&format!("/ticket/@me/{id}/files/ok.txt"), &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(file.status(), 200);
    }
    assert!(
        !slow.is_finished(),
        "the looping call should still be running"
    );
    let looped = slow.await.unwrap().unwrap();
    assert_eq!(looped.status(), 200);
    assert_eq!(
        looped.headers()["x-preview-plugin"],
        "plain-text",
        "fell through to the next renderer"
    );

    for name in [
        "sleep.txt",
        "alloc.txt",
        "panic.txt",
        "big.txt",
        "badtype.txt",
        "decline.txt",
    ] {
        let response = preview(&server, &admin, &id, name).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.headers()["x-preview-plugin"],
            "plain-text",
            "{name}"
        );
    }
    let ok = preview(&server, &admin, &id, "ok.txt").await;
    assert_eq!(ok.headers()["x-preview-plugin"], "misbehave");
    assert_eq!(ok.text().await.unwrap(), "<p>misbehave: text\n</p>");
    assert_error(
        preview(&server, &admin, &id, "data.bin").await,
        415,
        "No preview available",
    )
    .await;

    let listed = plugins(&server, &admin).await;
    let entry = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "misbehave")
        .unwrap()
        .clone();
    assert_eq!(entry["stats"]["failures"], json!(6), "{entry}"); // loop, sleep, alloc, panic, big, badtype
    assert!(
        server.log_text().contains("rendering ok.txt"),
        "plugin log lines reach the server log"
    );
    assert!(server.log_text().contains("plugin call failed"));
    // Spinning in wasm and sleeping in the host both end at the time limit
    // (on a loaded machine another misbehaving call, the huge output, may
    // reach it too: it still fails only its own call, counted above).
    let timeouts = server
        .log_text()
        .matches("exceeded its 1.5s time limit")
        .count();
    assert!((2..=3).contains(&timeouts), "{}", server.log_text());
}

#[tokio::test]
async fn previews_have_safe_headers_cache_and_visibility() {
    let dir = plugin_dir(&[&plain_text()]);
    let server = Server::start_with(options(&dir)).await;
    let alice = server.token("1");
    let bob = server.token("2");
    let ticket = create_ticket(
        &server,
        &alice,
        &[("docs/read me.txt", b"<script>alert(1)</script>")],
        None,
    )
    .await;
    let id = ticket["id"].as_str().unwrap();

    let first = preview(&server, &alice, id, "docs/read%20me.txt").await;
    assert_eq!(first.status(), 200);
    let h = first.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        h["content-security-policy"],
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-preview-plugin"], "plain-text");
    // Whether it came from the cache is for admins only: to anyone else it
    // would tell whether another user's private file has the same bytes.
    assert!(h.get("x-preview-cache").is_none(), "{h:?}");
    // Alice's: kept by her browser only, and asked for again each time.
    assert_eq!(h["cache-control"], "private, no-cache");
    assert_eq!(h["vary"], "Authorization");
    let etag = h["etag"].to_str().unwrap().to_owned();
    let body = first.text().await.unwrap();
    assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));

    let second = preview(&server, &alice, id, "docs/read%20me.txt").await;
    assert_eq!(second.headers()["etag"], etag.as_str());
    assert_eq!(second.text().await.unwrap(), body);
    assert_eq!(server.count("previews", mongodb::bson::doc! {}).await, 1);
    // Asking again with the ETag costs a 304 without the body.
    let again = server
        .get(
            &format!("/ticket/@me/{id}/preview/docs/read%20me.txt"),
            &alice,
        )
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    // An admin sees the cache.
    let admin = server.token("900");
    let seen = server
        .get(
            &format!("/ticket/1/{id}/preview/docs/read%20me.txt"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), 200);
    assert_eq!(seen.headers()["x-preview-cache"], "hit");
    // Bob's own copy of the same bytes at the same path is rendered for
    // him: the cache is per author, so how fast (or whether a render slot
    // was needed) tells him nothing about alice's private file.
    let copy = create_ticket(
        &server,
        &bob,
        &[("docs/read me.txt", b"<script>alert(1)</script>")],
        None,
    )
    .await;
    let copy_id = copy["id"].as_str().unwrap();
    let his = preview(&server, &bob, copy_id, "docs/read%20me.txt").await;
    assert_eq!(his.status(), 200);
    assert_eq!(his.text().await.unwrap(), body);
    assert_eq!(server.count("previews", mongodb::bson::doc! {}).await, 2);

    // Same visibility rules as files/.
    assert_error(
        preview(&server, &bob, id, "docs/read%20me.txt").await,
        404,
        "Ticket not found",
    )
    .await;
    assert_error(
        preview(&server, &alice, id, "..%2Fx.txt").await,
        403,
        "Permission denied",
    )
    .await;
    assert_error(
        preview(&server, &alice, id, "nope.txt").await,
        404,
        "Ticket file not found",
    )
    .await;
    assert_error(
        server
            .http
            .get(server.url(&format!("/ticket/@me/{id}/preview/x.txt")))
            .send()
            .await
            .unwrap(),
        403,
        "Invalid authentication credentials",
    )
    .await;
}

#[tokio::test]
async fn validators_reject_and_fail_closed_leaving_nothing() {
    let dir = plugin_dir(&[&misbehave()]);
    let server = Server::start_with(options(&dir)).await;
    let t = server.token("1");

    let (status, body) = json(
        upload(
            &server,
            &t,
            &[
                ("ok.txt", b"fine"),
                ("evil.txt", b"EVIL inside"),
                ("x.bin", b"EVIL but not matched"),
            ],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"], "File rejected by policy");
    assert_eq!(
        body["rejections"],
        json!([{"file": "evil.txt", "plugin": "misbehave", "message": "starts with EVIL"}])
    );

    let (status, body) = json(upload(&server, &t, &[("forbidden.txt", b"x")], None).await).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["rejections"],
        json!([{"file": null, "plugin": "misbehave", "message": "forbidden.txt is not allowed"}])
    );

    let (status, body) = json(
        upload(
            &server,
            &t,
            &[("ok.txt", b"fine"), ("crash.txt", b"x")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["detail"], "Plugin unavailable: misbehave");
    assert_eq!(body["plugin"], "misbehave");

    assert_eq!(
        server.wait_until_empty(Duration::from_secs(10)).await,
        Stored::default()
    );
    let (status, _) = json(
        upload(
            &server,
            &t,
            &[("ok.txt", b"fine"), ("x.bin", b"EVIL")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
}

async fn wait_for_plugins(server: &Server, token: &str, want: &[&str]) -> Value {
    let start = Instant::now();
    loop {
        let body = plugins(server, token).await;
        let mut names: Vec<String> = body["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        if names == want {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "plugins {names:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn hot_reload_adds_replaces_and_removes() {
    let dir = plugin_dir(&[]);
    let server = Server::start_with(options(&dir)).await;
    let admin = server.token("900");
    let user = server.token("1");
    let ticket = create_ticket(&server, &user, &[("a.txt", b"hello")], None).await;
    let id = ticket["id"].as_str().unwrap();
    assert_error(
        preview(&server, &user, id, "a.txt").await,
        415,
        "No preview available",
    )
    .await;

    // Add.
    std::fs::copy(plain_text(), dir.join("p.wasm")).unwrap();
    wait_for_plugins(&server, &user, &["plain-text"]).await;
    assert_eq!(
        preview(&server, &user, id, "a.txt").await.headers()["x-preview-plugin"],
        "plain-text"
    );

    // A broken file and a future version are reported and skipped.
    std::fs::write(dir.join("broken.wasm"), b"\0asm garbage").unwrap();
    std::fs::copy(future(), dir.join("future.wasm")).unwrap();
    let start = Instant::now();
    let body = loop {
        let body = plugins(&server, &admin).await;
        if body["errors"].as_array().unwrap().len() == 2
            || start.elapsed() > Duration::from_secs(20)
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("broken.wasm")
            && errors.contains("future.wasm")
            && errors.contains("pd2:plugin@2.0.0"),
        "{errors}"
    );
    assert_eq!(
        body["plugins"][0]["name"], "plain-text",
        "working plugins stay loaded"
    );
    let public = plugins(&server, &user).await;
    assert!(
        public.get("errors").is_none() && public["plugins"][0].get("file").is_none(),
        "{public}"
    );

    // Replace p.wasm with another build: the new one serves, the cache misses.
    let tmp = dir.join(".p.tmp");
    std::fs::copy(misbehave(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("p.wasm")).unwrap();
    wait_for_plugins(&server, &user, &["misbehave"]).await;
    let replaced = preview(&server, &user, id, "a.txt").await;
    assert_eq!(replaced.headers()["x-preview-plugin"], "misbehave");

    // Remove.
    std::fs::remove_file(dir.join("p.wasm")).unwrap();
    wait_for_plugins(&server, &user, &[]).await;
    assert_error(
        preview(&server, &user, id, "a.txt").await,
        415,
        "No preview available",
    )
    .await;
}
