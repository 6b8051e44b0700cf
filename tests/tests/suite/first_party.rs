//! The first-party plugins through the real server, with the repository's
//! default `config.toml` (its `[plugins.settings.*]` tables).

use pd2_ticket_tests::{
    Server, ServerOptions, Stored, first_party_plugins, json, upload, workspace_root,
};
use serde_json::Value;

/// The shipped configuration; user 1 is an admin, who is shown
/// `X-Preview-Cache`.
async fn default_server() -> Server {
    Server::start_with(ServerOptions::shipped().admins(&["1"])).await
}

/// Uploads one file and fetches its preview, asserting the status, content
/// type and rendering plugin; returns the preview's headers and body.
async fn preview_of(
    server: &Server,
    token: &str,
    path: &str,
    data: &[u8],
    content_type: &str,
    plugin: &str,
) -> (reqwest::header::HeaderMap, bytes::Bytes) {
    let ticket = pd2_ticket_tests::create_ticket(server, token, &[(path, data)], None).await;
    let response = preview_response(server, token, ticket["id"].as_str().unwrap(), path).await;
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], content_type, "{path}");
    assert_eq!(headers["x-preview-plugin"], plugin, "{path}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox"),
        "{path}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    (headers, response.bytes().await.unwrap())
}

fn rejection<'a>(body: &'a Value, file: &str) -> &'a Value {
    body["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"] == file)
        .unwrap_or_else(|| panic!("no rejection for {file}: {body}"))
}

#[tokio::test]
async fn default_policy_names_rule_and_file_and_stores_nothing() {
    let server = default_server().await;
    let t = server.token("1");
    let elf = b"\x7fELF\x02\x01\x01\x00rest of a compiled program";
    let (status, body) = json(
        upload(
            &server,
            &t,
            &[
                ("src/Main.java", b"class Main {}"),
                ("build/Main.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x3d"),
                ("lib/Tool.java", elf),
                ("data/big.csv", &vec![b'1'; 300 * 1024]),
            ],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"], "File rejected by policy");
    assert_eq!(body["rejections"].as_array().unwrap().len(), 3, "{body}");
    let class = rejection(&body, "build/Main.class");
    assert_eq!(class["plugin"], "file-policy");
    assert!(
        class["message"]
            .as_str()
            .unwrap()
            .contains("denied_extensions"),
        "{class}"
    );
    let disguised = rejection(&body, "lib/Tool.java")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        disguised.contains("ELF") && disguised.contains("reject_disguised_binaries"),
        "{disguised}"
    );
    let csv = rejection(&body, "data/big.csv")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(csv.contains("max_size_by_extension"), "{csv}");
    assert_eq!(
        server
            .wait_until_empty(std::time::Duration::from_secs(10))
            .await,
        Stored::default()
    );

    let (status, _) = json(
        upload(
            &server,
            &t,
            &[("src/Main.java", b"class Main {}"), ("Makefile", b"all:")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn png_preview_is_a_bounded_png_thumbnail() {
    let server = default_server().await;
    let t = server.token("1");
    let photo = std::fs::read(workspace_root().join("tests/fixtures/images/photo.png")).unwrap();
    let ticket = pd2_ticket_tests::create_ticket(
        &server,
        &t,
        &[("img/photo.png", &photo), ("notes.txt", b"<b>hi</b>")],
        None,
    )
    .await;
    let id = ticket["id"].as_str().unwrap();

    let response = server
        .get(&format!("/ticket/@me/{id}/preview/img/photo.png"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-preview-plugin"], "image-preview");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let png = response.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(
        (width, height),
        (512, 384),
        "800×600 scaled to 512 on the long side"
    );

    let again = server
        .get(&format!("/ticket/@me/{id}/preview/img/photo.png"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["x-preview-cache"], "hit");

    // Text goes to plain-text, escaped, with no script anywhere.
    let text = server
        .get(&format!("/ticket/@me/{id}/preview/notes.txt"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(text.headers()["x-preview-plugin"], "plain-text");
    let html = text.text().await.unwrap();
    assert!(
        html.contains("&lt;b&gt;hi&lt;/b&gt;") && !html.contains("<script"),
        "{html}"
    );
}

#[tokio::test]
async fn java_preview_is_highlighted_html_without_script() {
    let server = default_server().await;
    let t = server.token("1");
    let java = "public class Main {\n  // </script><script>alert(1)</script>\n  String s = \"<img onerror=x>\";\n}\n";
    let (_, body) = preview_of(
        &server,
        &t,
        "src/Main.java",
        java.as_bytes(),
        "text/html; charset=utf-8",
        "code-preview",
    )
    .await;
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        html.contains("<span class=\"kw\">public</span> <span class=\"kw\">class</span> <span class=\"ty\">Main</span>"),
        "highlighted: {html}"
    );
    assert!(
        html.contains("<tr id=\"L4\"><td class=\"n\"><a href=\"#L4\">4</a></td>"),
        "line numbers with anchors"
    );
    let lower = html.to_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains("<img"),
        "{html}"
    );
}

#[tokio::test]
async fn markdown_preview_is_sanitized_html() {
    let server = default_server().await;
    let t = server.token("1");
    let md = "# Homework\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))\n\n```java\nclass A {}\n```\n";
    let (_, body) = preview_of(
        &server,
        &t,
        "README.md",
        md.as_bytes(),
        "text/html; charset=utf-8",
        "markdown-preview",
    )
    .await;
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        html.contains("<h1 id=\"homework\">Homework</h1>") && html.contains("<table"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"kw\">class</span>"),
        "fenced code highlighted: {html}"
    );
    let lower = html.to_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains("javascript:"),
        "{html}"
    );
}

/// Every text file gets a preview: a script without an extension is
/// highlighted by its shebang, any other text falls to `plain-text`; a
/// binary still gets none.
#[tokio::test]
async fn every_text_file_gets_a_preview() {
    let server = default_server().await;
    let token = server.token("1");
    let (_, body) = preview_of(
        &server,
        &token,
        "run",
        b"#!/usr/bin/env python3\nprint('hi')\n",
        "text/html; charset=utf-8",
        "code-preview",
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains("<span class=\"fn\">print</span>"));
    let (_, body) = preview_of(
        &server,
        &token,
        "notes/TODO",
        b"fix the <loop>\n",
        "text/html; charset=utf-8",
        "plain-text",
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains("fix the &lt;loop&gt;"));
    let ticket =
        pd2_ticket_tests::create_ticket(&server, &token, &[("blob", b"\x00\x01\x02")], None).await;
    let id = ticket["id"].as_str().unwrap();
    let response = server
        .get(&format!("/ticket/@me/{id}/preview/blob"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

/// Eight cold previews of 1,000-line Java files at once on this 2-core
/// machine: every one is a `200` (highlighted as far as time allowed, the
/// rest plain with a notice), none a `415` from the time limit.
#[tokio::test]
async fn eight_concurrent_cold_previews_all_answer() {
    let server = default_server().await;
    let names: Vec<String> = (0..8).map(|i| format!("src/Big{i}.java")).collect();
    let sources: Vec<Vec<u8>> = (0..8)
        .map(|v| {
            let mut lines = vec![format!("// variant {v}"), "public class Big {".to_owned()];
            for i in 0..997 {
                lines.push(format!(
                    "    int f{i}(int x) {{ return x * {i} + \"s\".length(); }} // comment {i}"
                ));
            }
            lines.push("}".to_owned());
            lines.join("\n").into_bytes()
        })
        .collect();
    // Eight students (each may have 4 previews rendering at once).
    let mut requests = Vec::new();
    for (i, (name, source)) in names.iter().zip(&sources).enumerate() {
        let student = server.token(&format!("{}", 10 + i));
        let ticket =
            pd2_ticket_tests::create_ticket(&server, &student, &[(name.as_str(), source)], None)
                .await;
        let id = ticket["id"].as_str().unwrap().to_owned();
        requests.push(server.get(&format!("/ticket/@me/{id}/preview/{name}"), &student));
    }
    let requests: Vec<_> = requests
        .into_iter()
        .map(|request| tokio::spawn(request.send()))
        .collect();
    for (name, request) in names.iter().zip(requests) {
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.headers()["x-preview-plugin"],
            "code-preview",
            "{name}"
        );
        let html = response.text().await.unwrap();
        assert!(
            html.contains("<tr id=\"L999\">"),
            "{name}: every line is there"
        );
        assert!(
            !html.contains("Highlighted the first"),
            "{name}: highlighted completely"
        );
    }
}

fn png(rgb: [u8; 3]) -> Vec<u8> {
    pd2_ticket_tests::images::png(2, 2, |_, _| rgb)
}

/// The preview of one file of an existing ticket of the requester,
/// asserting it is a `200`.
async fn preview_response(server: &Server, token: &str, id: &str, path: &str) -> reqwest::Response {
    let response = server
        .get(&format!("/ticket/@me/{id}/preview/{path}"), token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response
}

/// A preview's HTML and its `X-Preview-Cache` (empty unless an admin asked).
async fn get_preview(server: &Server, token: &str, id: &str, path: &str) -> (String, String) {
    let response = preview_response(server, token, id, path).await;
    let cache = response
        .headers()
        .get("x-preview-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.text().await.unwrap(), cache)
}

/// A README's relative image is the ticket's own file, inlined; two
/// tickets with the same README beside different images each get their
/// own (the cache covers the image too); links to ticket files carry the
/// path.
#[tokio::test]
async fn markdown_inlines_images_of_its_own_ticket() {
    use base64::Engine;
    let server = default_server().await;
    let token = server.token("1");
    let readme = b"# Lab\n\n![result](img/shot.png)\n\nSee [Main](src/Main.java#L2).\n";
    let (red, blue) = (png([255, 0, 0]), png([0, 0, 255]));
    let mut ids = Vec::new();
    for shot in [&red, &blue] {
        let files: [(&str, &[u8]); 3] = [
            ("README.md", readme),
            ("img/shot.png", shot),
            ("src/Main.java", b"class Main {}\n"),
        ];
        let ticket = pd2_ticket_tests::create_ticket(&server, &token, &files, None).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    for (id, shot) in ids.iter().zip([&red, &blue]) {
        let data_url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(shot)
        );
        for expected_cache in ["miss", "hit"] {
            let (html, cache) = get_preview(&server, &token, id, "README.md").await;
            assert_eq!(cache, expected_cache, "{id}");
            assert!(
                html.contains(&format!("<img src=\"{data_url}\" alt=\"result\" />")),
                "{id} ({cache}) shows its own image: {html}"
            );
            assert!(
                html.contains(
                    "<a href=\"src/Main.java#L2\" data-pd2-path=\"src/Main.java\">Main</a>"
                ),
                "{html}"
            );
        }
    }
}

/// Notebooks and tables get their own renderers.
#[tokio::test]
async fn notebook_and_csv_previews() {
    let server = default_server().await;
    let token = server.token("1");
    let notebook = serde_json::json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
        "cells": [
            {"cell_type": "markdown", "source": "## Setup"},
            {"cell_type": "markdown", "source": "The $i^{th}$ term: $$\\frac{a}{b}$$ and $\\text{<b>bold?</b>}$"},
            {"cell_type": "code", "execution_count": 1, "source": "print(1 + 1)",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "2\n"}]},
            {"cell_type": "code", "execution_count": 2, "source": "plot()",
             "outputs": [{"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}]}
        ]
    });
    let (_, body) = preview_of(
        &server,
        &token,
        "lab/analysis.ipynb",
        notebook.to_string().as_bytes(),
        "text/html; charset=utf-8",
        "notebook-preview",
    )
    .await;
    let html = String::from_utf8_lossy(&body);
    for expected in [
        "<h2 id=\"setup\">Setup</h2>",
        "<div class=\"prompt\">In&nbsp;[1]:</div>",
        "<span class=\"fn\">print</span>(<span class=\"nu\">1</span>",
        "<pre class=\"stream\">2\n</pre>",
        "<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"output\">",
        // Math as MathML, drawn by the browser without a script.
        "<msup><mi>i</mi>",
        "<mfrac>",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
    assert!(
        !html.contains("<b>bold"),
        "text in a formula is never markup: {html}"
    );
    let (_, body) = preview_of(
        &server,
        &token,
        "grades.csv",
        b"student;grade\nAnn;9.5\n\"B; <b>\";7\n",
        "text/html; charset=utf-8",
        "table-preview",
    )
    .await;
    let html = String::from_utf8_lossy(&body);
    assert!(
        html.contains("<th>student</th><th>grade</th>"),
        "; sniffed, header row: {html}"
    );
    assert!(
        html.contains("<td>B; &lt;b&gt;</td><td class=\"num\">7</td>"),
        "{html}"
    );
}

/// A renderer that runs out of time fails its call; the next one (here
/// the plain-text fallback) answers, so the TA still gets a `200`.
#[tokio::test]
async fn a_renderer_that_times_out_falls_through_to_plain_text() {
    let misbehave = pd2_ticket_tests::fixture_plugins().join("misbehave.wasm");
    let plain = first_party_plugins().join("plain-text.wasm");
    let dir = pd2_ticket_tests::plugin_dir(&[&misbehave, &plain]);
    let server = Server::start_with(
        ServerOptions::default()
            .env("PD2_PLUGINS__DIR", dir.display())
            .env("PD2_PLUGINS__TIMEOUT_MS", 1000)
            .admins(&["900"]),
    )
    .await;
    let token = server.token("1");
    let ticket =
        pd2_ticket_tests::create_ticket(&server, &token, &[("loop.txt", b"spin <forever>")], None)
            .await;
    let id = ticket["id"].as_str().unwrap();
    let (html, _) = get_preview(&server, &token, id, "loop.txt").await;
    assert!(html.contains("spin &lt;forever&gt;"), "{html}");
    let stats = server
        .get("/plugins", &server.token("900"))
        .send()
        .await
        .unwrap();
    let stats: Value = stats.json().await.unwrap();
    let misbehave = stats["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "misbehave"))
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(
        misbehave.to_string().contains("time limit"),
        "the timeout is on record: {misbehave}"
    );
}
