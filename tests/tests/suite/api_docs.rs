//! The OpenAPI document and the docs page: every route the server answers
//! is documented, every documented route is answered with a documented
//! status, and the document passes the reference validator.

use std::{collections::BTreeSet, process::Command};

use pd2_ticket_tests::{Server, ServerOptions, create_ticket, first_party_plugins, temp_dir};
use serde_json::{Value, json};

/// The routes of SPEC §2, §3 and §5, as `(method, template)`.
const SPEC_ROUTES: &[(&str, &str)] = &[
    ("post", "/oauth"),
    ("put", "/oauth"),
    ("post", "/device/code"),
    ("post", "/device/token"),
    ("delete", "/device/token"),
    ("get", "/device/requests/{user_code}"),
    ("post", "/device/requests/{user_code}/approve"),
    ("post", "/device/requests/{user_code}/deny"),
    ("get", "/device/sessions"),
    ("delete", "/device/sessions/{session_id}"),
    ("get", "/ticket"),
    ("post", "/ticket"),
    ("post", "/ticket/check"),
    ("get", "/ticket/{user_id}"),
    ("get", "/ticket/{user_id}/{ticket_id}"),
    ("put", "/ticket/{user_id}/{ticket_id}"),
    ("delete", "/ticket/{user_id}/{ticket_id}"),
    ("get", "/ticket/{user_id}/{ticket_id}/files/{file_path}"),
    ("get", "/ticket/{user_id}/{ticket_id}/download"),
    ("get", "/ticket/{user_id}/{ticket_id}/preview/{file_path}"),
    ("get", "/ticket/{user_id}/{ticket_id}/search"),
    ("post", "/ticket/{user_id}/{ticket_id}/versions"),
    ("get", "/ticket/{user_id}/{ticket_id}/versions"),
    ("get", "/ticket/{user_id}/{ticket_id}/diff"),
    ("get", "/ticket/{user_id}/{ticket_id}/diff/{file_path}"),
    (
        "get",
        "/compare/{user_id}/{ticket_id}/{other_user_id}/{other_ticket_id}",
    ),
    (
        "get",
        "/compare/{user_id}/{ticket_id}/{other_user_id}/{other_ticket_id}/{file_path}",
    ),
    ("post", "/ticket/{user_id}/{ticket_id}/comments"),
    ("get", "/ticket/{user_id}/{ticket_id}/comments"),
    ("put", "/ticket/{user_id}/{ticket_id}/comments/{comment_id}"),
    (
        "delete",
        "/ticket/{user_id}/{ticket_id}/comments/{comment_id}",
    ),
    (
        "post",
        "/ticket/{user_id}/{ticket_id}/comments/{comment_id}/resolve",
    ),
    (
        "post",
        "/ticket/{user_id}/{ticket_id}/comments/{comment_id}/unresolve",
    ),
    ("get", "/notifications"),
    ("get", "/notifications/unread"),
    ("get", "/user/{user_id}"),
    ("get", "/version"),
    ("get", "/ping"),
    ("get", "/plugins"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/meta"),
];

/// Routes that need no token (SPEC §2, plus `/health` for load balancers).
const PUBLIC: &[(&str, &str)] = &[
    ("post", "/oauth"),
    ("post", "/device/code"),
    ("post", "/device/token"),
    ("get", "/ping"),
    ("get", "/version"),
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/meta"),
];

async fn server() -> Server {
    Server::start_with(
        ServerOptions::default()
            .admins(&["1"])
            .env("PD2_PLUGINS__DIR", first_party_plugins().display()),
    )
    .await
}

async fn document(server: &Server) -> Value {
    let response = server.get_anonymous("/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("document is JSON")
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item[method].is_object() {
                ops.insert((method.to_owned(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn document_lists_exactly_the_spec_routes_with_auth() {
    let server = server().await;
    let doc = document(&server).await;
    let documented = operations(&doc);
    let spec: BTreeSet<(String, String)> = SPEC_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, spec, "documented routes differ from the spec's");

    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "A JWT from `POST /oauth`, a device sign-in (`POST /device/token`) or `pd2-ticket token`."})
    );
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let public = PUBLIC.contains(&(method.as_str(), path.as_str()));
        assert_eq!(secured, !public, "{method} {path}: security");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );
        // Every error answer documents the `{"detail"}` shape.
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert!(
                    schema.as_str().is_some_and(|s| s.ends_with("/ErrorBody")
                        || s.ends_with("/PolicyRejected")
                        || s.ends_with("/Health")),
                    "{method} {path} {status}: error body not documented: {response}"
                );
            }
        }
    }
    let ticket = &doc["components"]["schemas"]["TicketSummary"];
    for field in ["id", "files", "is_public", "remark", "create_time"] {
        assert!(
            ticket["properties"][field].is_object(),
            "TicketSummary.{field}"
        );
    }
}

#[tokio::test]
async fn document_passes_the_openapi_validator() {
    let server = server().await;
    let text = server
        .get_anonymous("/openapi.json")
        .await
        .text()
        .await
        .expect("body");
    let file = temp_dir("openapi").join("openapi.json");
    std::fs::write(&file, text).expect("write document");
    let validator = std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| {
        pd2_ticket_tests::workspace_root()
            .join(".venv/bin/openapi-spec-validator")
            .display()
            .to_string()
    });
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {validator}: {e} (run ./test.sh)"));
    assert!(
        out.status.success(),
        "validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Calls every documented operation with plausible arguments: each must be
/// answered by its route (never the router's 404/405) with a status the
/// document lists for it, and the metrics must file each under its template.
#[tokio::test]
async fn every_documented_route_is_served_with_a_documented_status() {
    let server = server().await;
    let doc = document(&server).await;
    let admin = server.token("1");
    let ticket = create_ticket(&server, &admin, &[("Main.java", b"class Main {}\n")], None).await;
    let id = ticket["id"].as_str().expect("id").to_owned();

    // Deleting last keeps the ticket for the routes that read it.
    let mut ops: Vec<(String, String)> = operations(&doc).into_iter().collect();
    ops.sort_by_key(|(m, _)| m == "delete");
    for (method, template) in ops {
        let path = template
            .replace("{comment_id}", "000000000000000000000000")
            .replace("{user_code}", "BCDF-GHJK")
            .replace("{session_id}", "00000000000000000000000000000000")
            .replace("{other_user_id}", "@me")
            .replace("{other_ticket_id}", &id)
            .replace("{user_id}", "@me")
            .replace("{ticket_id}", &id)
            .replace("{file_path}", "Main.java");
        let url = server.url(&path);
        let request = match method.as_str() {
            "get" => server.http.get(url),
            "delete" => server.http.delete(url),
            "put" => server.http.put(url).json(&json!({"remark": "checked"})),
            "post" if path == "/oauth" => server.http.post(url).json(&json!({"code": "x"})),
            "post" => server
                .http
                .post(url)
                .multipart(reqwest::multipart::Form::new().part(
                    "files",
                    reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("b.txt"),
                )),
            other => panic!("unexpected method {other}"),
        };
        let response = request.bearer_auth(&admin).send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert!(
            !body.contains("\"Not Found\"") && !body.contains("Method Not Allowed"),
            "{method} {path}: not routed ({status} {body})"
        );
        let documented = &doc["paths"][&template][&method]["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {template}: answered {status}, which is not documented ({body})"
        );
    }

    // Something the document does not know is labelled as such.
    let response = server.get("/nope", &admin).send().await.expect("request");
    assert_eq!(response.status(), 404);
    let metrics = server.metrics(&admin).await;
    let routes: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("pd2_http_requests_total{"))
        .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
        .collect();
    let mut expected: BTreeSet<&str> = SPEC_ROUTES.iter().map(|(_, p)| *p).collect();
    expected.insert("unmatched");
    assert_eq!(routes, expected, "metric route labels");
}

#[tokio::test]
async fn docs_page_is_readable_html_for_every_route() {
    let server = server().await;
    let response = server.get_anonymous("/docs").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("text/html")
    );
    let page = response.text().await.expect("page");
    for (method, path) in SPEC_ROUTES {
        assert!(
            page.contains(&format!(
                "<span class=\"m {method}\">{method}</span> <code>{path}</code>"
            )),
            "{method} {path} missing from /docs"
        );
    }
    assert!(page.contains("id=\"schema-TicketFull\""));
    // Readable without script; the one script ("Try it") is the binary's
    // own, so nothing is loaded from elsewhere.
    let scripts: Vec<&str> = page.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    assert!(
        scripts[0].starts_with(" type=\"module\" src=\"/app/docs.js\"></script>"),
        "{scripts:?}"
    );
}
