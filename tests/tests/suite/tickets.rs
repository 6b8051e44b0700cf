//! Ticket lifecycle through the real server: upload, list, read, update,
//! delete, with the original front end's quirks and every error of the spec.

use pd2_ticket_tests::{Server, ServerOptions, assert_error, create_ticket, json, upload};
use serde_json::json;

#[tokio::test]
async fn ping_and_version_need_no_token() {
    let server = Server::start().await;
    let (status, body) = json(server.http.get(server.url("/ping")).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!("pong")));
    let (status, body) = json(
        server
            .http
            .get(server.url("/version"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, json!("v2.0.0")));
    assert_error(
        server
            .http
            .get(server.url("/nowhere"))
            .send()
            .await
            .unwrap(),
        404,
        "Not Found",
    )
    .await;
}

#[tokio::test]
async fn upload_then_read_back_everything() {
    let server = Server::start().await;
    let alice = server.token_named("1001", Some("alice"));
    let ticket = create_ticket(
        &server,
        &alice,
        &[
            ("src\\main\\App.java", b"class App {}\n"),
            ("README.md", b"# hi\n"),
            ("empty.txt", b""),
        ],
        Some(r#"{"is_public": "true", "remark": "please look"}"#),
    )
    .await;

    let id = ticket["id"].as_str().unwrap();
    assert_eq!(id.len(), 20);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // Backslashes became folders; upload order kept.
    assert_eq!(
        ticket["files"],
        json!(["src/main/App.java", "README.md", "empty.txt"])
    );
    assert_eq!(ticket["is_public"], json!(true));
    assert_eq!(ticket["remark"], json!("please look"));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let created = ticket["create_time"].as_i64().unwrap();
    assert!(
        (now_ms - created).abs() < 60_000,
        "create_time {created} is unix ms"
    );
    assert_eq!(
        ticket["author"]["display_data"],
        json!({
            "id": "1001", "username": "alice", "global_name": null, "avatar": null,
            "is_admin": false, "display_name": "alice",
            "display_avatar": "https://cdn.discordapp.com/embed/avatars/0.png"
        })
    );

    // The same full ticket through @me and through the explicit id.
    for path in [format!("/ticket/@me/{id}"), format!("/ticket/1001/{id}")] {
        let (status, body) = json(server.get(&path, &alice).send().await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(body, ticket);
    }

    // List items carry no author.
    let (status, list) = json(server.get("/ticket", &alice).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([{ "id": id, "files": ticket["files"], "is_public": true,
                 "remark": "please look", "create_time": created,
                 "version": 1, "versions": 1 }])
    );

    let file = server
        .get(&format!("/ticket/@me/{id}/files/src/main/App.java"), &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"class App {}\n");
    let empty = server
        .get(&format!("/ticket/@me/{id}/files/empty.txt"), &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.bytes().await.unwrap().len(), 0);
}

#[tokio::test]
async fn upload_options_default_and_accept_booleans() {
    let server = Server::start().await;
    let t = server.token("1");
    let plain = create_ticket(&server, &t, &[("a.c", b"int main;")], None).await;
    assert_eq!(
        (plain["is_public"].clone(), plain["remark"].clone()),
        (json!(false), json!(""))
    );
    let real_bool = create_ticket(
        &server,
        &t,
        &[("a.c", b"x")],
        Some(r#"{"is_public": true}"#),
    )
    .await;
    assert_eq!(real_bool["is_public"], json!(true));
    let string_false = create_ticket(
        &server,
        &t,
        &[("a.c", b"x")],
        Some(r#"{"is_public": "false", "remark": "r"}"#),
    )
    .await;
    assert_eq!(string_false["is_public"], json!(false));

    let (status, body) = json(upload(&server, &t, &[("a.c", b"x")], Some("{not json")).await).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("data"), "{body}");
    let (status, _) = json(
        upload(
            &server,
            &t,
            &[("a.c", b"x")],
            Some(r#"{"is_public": "maybe"}"#),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        server.stored().await.tickets,
        3,
        "rejected uploads stored nothing"
    );
}

#[tokio::test]
async fn upload_errors_name_the_file_and_store_nothing() {
    let server = Server::start().await;
    let t = server.token("1");

    assert_error(
        upload(&server, &t, &[], Some(r#"{"remark": "x"}"#)).await,
        400,
        "Missing file",
    )
    .await;

    let hostile = [
        "../escape.txt",
        "/etc/passwd",
        "a/../../b",
        "C:\\Windows\\x.exe",
        "what?.txt",
        "star*.c",
        "pipe|.c",
        "quote\".c",
        "less<.c",
        "home~/x.c",
        "tab\t.c",
        "trailing/",
        "a//b.c",
        "./dot.c",
    ];
    for name in hostile {
        let response = upload(&server, &t, &[("ok.c", b"fine"), (name, b"evil")], None).await;
        let (status, body) = json(response).await;
        assert_eq!(status, 400, "{name:?} → {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("Illegal file name"),
            "{name:?} → {detail}"
        );
    }
    // A raw control character breaks the part header itself: still a 400.
    let (status, _) = json(upload(&server, &t, &[("ctrl\u{1}.c", b"x")], None).await).await;
    assert_eq!(status, 400);
    let long_segment = format!("{}.c", "a".repeat(254));
    let (status, _) = json(upload(&server, &t, &[(long_segment.as_str(), b"x")], None).await).await;
    assert_eq!(status, 400);
    let long_path = vec!["abcdefghij"; 100].join("/");
    let (status, _) = json(upload(&server, &t, &[(long_path.as_str(), b"x")], None).await).await;
    assert_eq!(status, 400);

    let (status, body) =
        json(upload(&server, &t, &[("dir/a.c", b"1"), ("dir\\a.c", b"2")], None).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], json!("Duplicate file name: \"dir/a.c\""));

    let (status, body) = json(
        server
            .post("/ticket", &t)
            .json(&json!({"files": []}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // The good first file of each rejected upload was removed again.
    let left = server
        .wait_until_empty(std::time::Duration::from_secs(10))
        .await;
    assert_eq!(left, Default::default(), "leftovers after rejected uploads");
}

#[tokio::test]
async fn lists_are_newest_first_and_paged() {
    let server = Server::start().await;
    let t = server.token("7");
    let mut ids = Vec::new();
    for i in 0..12 {
        let name = format!("f{i}.txt");
        let ticket = create_ticket(&server, &t, &[(name.as_str(), b"x")], None).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let page = |q: &'static str| {
        let server = &server;
        let t = t.clone();
        async move {
            let (status, body) =
                json(server.get(&format!("/ticket{q}"), &t).send().await.unwrap()).await;
            assert_eq!(status, 200, "{q}: {body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("").await, ids[..10]);
    assert_eq!(page("?offset=10").await, ids[10..]);
    assert_eq!(page("?offset=2&length=3").await, ids[2..5]);
    assert_eq!(page("?offset=-5&length=2").await, ids[..2]);
    assert_eq!(page("?length=0").await, ids[..1]);
    assert_eq!(page("?length=-3").await, ids[..1]);
    assert_eq!(page("?length=1000").await, ids);
    assert_eq!(page("?offset=50").await, Vec::<String>::new());
    for bad in ["?offset=abc", "?length=1.5", "?length="] {
        let response = server
            .get(&format!("/ticket{bad}"), &t)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    // The same paging on /ticket/{user_id}.
    let (status, body) = json(server.get("/ticket/@me?length=2", &t).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
}

/// Ticket numbers are reserved in blocks per process; a restart leaves the
/// rest of a block unused. Lists step over such gaps: every ticket is
/// listed once, newest first, on each page.
#[tokio::test]
async fn lists_stay_whole_and_in_order_across_restarts() {
    let mut first = Server::start().await;
    let options = ServerOptions::default().database(&first.db_uri, &first.database);
    let t = first.token("7");
    let mut ids = Vec::new();
    // Blocks of 1, 2 and 4 numbers: the fourth upload leaves 3 unused.
    for i in 0..4 {
        let name = format!("a{i}.txt");
        let ticket = create_ticket(&first, &t, &[(name.as_str(), b"x")], None).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    first.terminate();
    let second = Server::start_with(options).await;
    for i in 0..3 {
        let name = format!("b{i}.txt");
        let ticket = create_ticket(&second, &t, &[(name.as_str(), b"x")], None).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut paged = Vec::new();
    for offset in (0..ids.len()).step_by(2) {
        let (status, body) = json(
            second
                .get(&format!("/ticket?offset={offset}&length=2"), &t)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        paged.extend(
            body.as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(paged, ids);
}

#[tokio::test]
async fn update_changes_only_given_fields() {
    let server = Server::start().await;
    let t = server.token("5");
    let ticket = create_ticket(
        &server,
        &t,
        &[("a.py", b"print(1)")],
        Some(r#"{"remark":"old"}"#),
    )
    .await;
    let id = ticket["id"].as_str().unwrap();
    let put = |body: serde_json::Value| {
        server
            .put(&format!("/ticket/@me/{id}"), &t)
            .json(&body)
            .send()
    };

    let (status, body) = json(put(json!({"is_public": true})).await.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(
        (body["is_public"].clone(), body["remark"].clone()),
        (json!(true), json!("old"))
    );
    assert_eq!(body["author"]["display_data"]["id"], json!("5"));

    let (status, body) = json(put(json!({"remark": "new"})).await.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(
        (body["is_public"].clone(), body["remark"].clone()),
        (json!(true), json!("new"))
    );

    let (status, body) = json(put(json!({})).await.unwrap()).await;
    assert_eq!((status, body["remark"].clone()), (201, json!("new")));

    let (status, _) = json(put(json!({"is_public": "yes"})).await.unwrap()).await;
    assert_eq!(status, 422);
    let raw = server
        .put(&format!("/ticket/@me/{id}"), &t)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    let (_, got) = json(
        server
            .get(&format!("/ticket/@me/{id}"), &t)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (got["is_public"].clone(), got["remark"].clone()),
        (json!(true), json!("new"))
    );
}

#[tokio::test]
async fn delete_removes_record_and_bytes() {
    let server = Server::start().await;
    let t = server.token("9");
    let big = vec![7u8; 600 * 1024]; // three GridFS chunks
    let keep = create_ticket(&server, &t, &[("keep.bin", b"k")], None).await;
    let gone = create_ticket(&server, &t, &[("a.bin", &big), ("b.txt", b"b")], None).await;
    let before = server.stored().await;
    assert_eq!((before.tickets, before.files), (2, 3));
    assert!(before.chunks >= 5, "{before:?}");

    let id = gone["id"].as_str().unwrap();
    let response = server
        .delete(&format!("/ticket/@me/{id}"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.bytes().await.unwrap().len(), 0);

    let after = server.stored().await;
    assert_eq!(
        (after.tickets, after.files, after.chunks),
        (1, 1, 1),
        "only `keep` remains"
    );
    assert_error(
        server
            .get(&format!("/ticket/@me/{id}"), &t)
            .send()
            .await
            .unwrap(),
        404,
        "Ticket not found",
    )
    .await;
    let again = server
        .delete(&format!("/ticket/@me/{id}"), &t)
        .send()
        .await
        .unwrap();
    assert_error(again, 404, "Ticket not found").await;
    let kept = keep["id"].as_str().unwrap();
    let file = server
        .get(&format!("/ticket/@me/{kept}/files/keep.bin"), &t)
        .send()
        .await
        .unwrap();
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"k");
}

#[tokio::test]
async fn malformed_ticket_ids_are_not_found_everywhere() {
    let server = Server::start().await;
    let t = server.token("3");
    for bad in [
        "short",
        "ABCDEF0123456789ABCD",
        "0123456789abcdef012g",
        "0123456789abcdef01234",
    ] {
        for path in [
            format!("/ticket/@me/{bad}"),
            format!("/ticket/@me/{bad}/files/a.txt"),
            format!("/ticket/@me/{bad}/download"),
        ] {
            assert_error(
                server.get(&path, &t).send().await.unwrap(),
                404,
                "Ticket not found",
            )
            .await;
        }
        let put = server
            .put(&format!("/ticket/@me/{bad}"), &t)
            .json(&json!({"remark": "x"}))
            .send()
            .await
            .unwrap();
        assert_error(put, 404, "Ticket not found").await;
        let delete = server
            .delete(&format!("/ticket/@me/{bad}"), &t)
            .send()
            .await
            .unwrap();
        assert_error(delete, 404, "Ticket not found").await;
    }
}

#[tokio::test]
async fn users_route_shows_display_data_only() {
    let server =
        Server::start_with(pd2_ticket_tests::ServerOptions::default().admins(&["42"])).await;
    let admin = server.token_named("42", Some("root"));
    let t = server.token_named("8", Some("bob"));
    let (status, body) = json(server.get("/user/42", &t).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"id": "42", "username": "root", "global_name": null, "avatar": null,
               "is_admin": true, "display_name": "root",
               "display_avatar": "https://cdn.discordapp.com/embed/avatars/0.png"})
    );
    let (status, body) = json(server.get("/user/@me", &admin).send().await.unwrap()).await;
    assert_eq!((status, body["id"].clone()), (200, json!("42")));
    assert_error(
        server.get("/user/999", &t).send().await.unwrap(),
        404,
        "User not found",
    )
    .await;
    assert_error(
        server.get("/ticket/999", &t).send().await.unwrap(),
        404,
        "User not found",
    )
    .await;
}

#[tokio::test]
async fn cors_lets_the_configured_front_end_in() {
    let origin = "http://localhost:3000";
    let server = Server::start_with(
        pd2_ticket_tests::ServerOptions::default()
            .env("PD2_SERVER__CORS_ORIGINS", format!("[\"{origin}\"]")),
    )
    .await;
    let t = server.token("1");

    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/ticket"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);

    let ok = server
        .get("/ticket", &t)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], origin);
    // Errors carry the header too, so the front end can read `detail`.
    let denied = server
        .http
        .get(server.url("/ticket"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.headers()["access-control-allow-origin"], origin);

    let other = server
        .get("/ticket", &t)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert_eq!(other.status(), 403);
}
