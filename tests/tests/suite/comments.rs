//! Review comments and notifications: who may do what, bounds, Markdown
//! rendered safe, threads carried across versions or outdated, and the
//! notifications and Discord direct messages (through the fake Discord),
//! against the real binary with the shipped config and a real SecantusDB.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId};
use pd2_ticket_tests::{
    Server, ServerOptions, assert_error, create_ticket, discord::FakeDiscord, eventually, json,
    post_form,
};
use serde_json::{Value, json};

const MAIN: &str = "public class Main {\n    static int twice(int x) {\n        return x * 2;\n    }\n\n    public static void main(String[] args) {\n        System.out.println(twice(21));\n    }\n}\n";

async fn comment(server: &Server, token: &str, ticket: &str, body: Value) -> (u16, Value) {
    json(
        server
            .post(
                &format!("/ticket/@me/{ticket}/comments").replace("@me", "100"),
                token,
            )
            .json(&body)
            .send()
            .await
            .expect("comment"),
    )
    .await
}

async fn threads(server: &Server, token: &str, ticket: &str, query: &str) -> Value {
    let (status, body) = json(
        server
            .get(&format!("/ticket/100/{ticket}/comments{query}"), token)
            .send()
            .await
            .expect("threads"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn who_may_comment_edit_delete_and_resolve() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (author, ta, stranger) = (
        server.token("100"),
        server.token("200"),
        server.token("300"),
    );
    let public = create_ticket(
        &server,
        &author,
        &[("Main.java", MAIN.as_bytes())],
        Some(r#"{"is_public": true}"#),
    )
    .await;
    let public = public["id"].as_str().expect("id").to_owned();
    let private = create_ticket(&server, &author, &[("Main.java", MAIN.as_bytes())], None).await;
    let private = private["id"].as_str().expect("id").to_owned();

    // The TA comments on lines 2-4 of the public ticket.
    let (status, thread) = comment(
        &server,
        &ta,
        &public,
        json!({"path": "Main.java", "line_start": 2, "line_end": 4, "body": "Why **twice**?"}),
    )
    .await;
    assert_eq!(status, 201, "{thread}");
    assert_eq!(thread["body_html"], "<p>Why <strong>twice</strong>?</p>\n");
    assert_eq!(thread["lines"], json!({"line_start": 2, "line_end": 4}));
    assert_eq!(thread["position"], json!({"line_start": 2, "line_end": 4}));
    assert_eq!(
        (thread["outdated"].as_bool(), thread["resolved"].as_bool()),
        (Some(false), Some(false))
    );
    let id = thread["id"].as_str().expect("id").to_owned();
    let base = format!("/ticket/100/{public}/comments/{id}");

    // Anyone who can read it may reply; nobody else learns comments exist.
    let (status, _) = comment(
        &server,
        &stranger,
        &public,
        json!({"reply_to": id, "body": "me too"}),
    )
    .await;
    assert_eq!(status, 201);
    for response in [
        server
            .get(&format!("/ticket/100/{private}/comments"), &stranger)
            .send()
            .await
            .expect("get"),
        server
            .post(&format!("/ticket/100/{private}/comments"), &stranger)
            .json(&json!({"body": "hi"}))
            .send()
            .await
            .expect("post"),
    ] {
        assert_error(response, 404, "Ticket not found").await;
    }

    // Editing: the comment's author only.
    assert_error(
        server
            .put(&base, &author)
            .json(&json!({"body": "x"}))
            .send()
            .await
            .expect("put"),
        403,
        "Permission denied",
    )
    .await;
    let (status, edited) = json(
        server
            .put(&base, &ta)
            .json(&json!({"body": "Why *twice*?"}))
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(
        (status, edited["body_html"].as_str()),
        (200, Some("<p>Why <em>twice</em>?</p>\n"))
    );
    assert!(edited["edit_time"].is_i64());

    // Resolving: the thread's author or the ticket's; not a stranger.
    assert_error(
        server
            .post(&format!("{base}/resolve"), &stranger)
            .send()
            .await
            .expect("post"),
        403,
        "Permission denied",
    )
    .await;
    assert_eq!(
        server
            .post(&format!("{base}/resolve"), &author)
            .send()
            .await
            .expect("post")
            .status(),
        204
    );
    assert_eq!(
        threads(&server, &ta, &public, "").await[0]["resolved"],
        true
    );
    assert_eq!(
        server
            .post(&format!("{base}/unresolve"), &ta)
            .send()
            .await
            .expect("post")
            .status(),
        204
    );
    assert_eq!(
        threads(&server, &ta, &public, "").await[0]["resolved"],
        false
    );

    // A reply is not resolved, nor replied to.
    let reply = threads(&server, &ta, &public, "").await[0]["replies"][0]["id"]
        .as_str()
        .expect("reply")
        .to_owned();
    let reply_path = format!("/ticket/100/{public}/comments/{reply}");
    assert_error(
        server
            .post(&format!("{reply_path}/resolve"), &ta)
            .send()
            .await
            .expect("post"),
        422,
        "Only a thread's first comment is resolved",
    )
    .await;
    let (status, body) = comment(
        &server,
        &ta,
        &public,
        json!({"reply_to": reply, "body": "nested"}),
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (422, Some("`reply_to` names a thread's first comment"))
    );

    // Deleting: the comment's author or the ticket's author; a stranger not.
    assert_error(
        server
            .delete(&base, &stranger)
            .send()
            .await
            .expect("delete"),
        403,
        "Permission denied",
    )
    .await;
    assert_eq!(
        server
            .delete(&reply_path, &stranger)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    assert_eq!(
        server
            .delete(&base, &author)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    assert_eq!(threads(&server, &ta, &public, "").await, json!([]));
    assert_error(
        server.delete(&base, &author).send().await.expect("delete"),
        404,
        "Comment not found",
    )
    .await;
    assert_error(
        server
            .put(&format!("/ticket/100/{public}/comments/nothex"), &ta)
            .json(&json!({"body": "x"}))
            .send()
            .await
            .expect("put"),
        404,
        "Comment not found",
    )
    .await;
}

#[tokio::test]
async fn bodies_and_anchors_are_bounded_and_checked() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let author = server.token("100");
    let t = create_ticket(
        &server,
        &author,
        &[
            ("Main.java", MAIN.as_bytes()),
            ("logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
        ],
        None,
    )
    .await;
    let t = t["id"].as_str().expect("id").to_owned();
    let long = "x".repeat(10_000);
    let (status, _) = comment(&server, &author, &t, json!({"body": long})).await;
    assert_eq!(status, 201, "exactly 10,000 characters");
    for (body, detail) in [
        (
            json!({"body": "y".repeat(10_001)}),
            "A comment is 1 to 10000 characters (10001 given)",
        ),
        (
            json!({"body": "  \n "}),
            "A comment is 1 to 10000 characters (0 given)",
        ),
        (json!({"body": "b", "line_start": 1}), "Lines need a `path`"),
        (
            json!({"body": "b", "path": "Main.java", "line_start": 3, "line_end": 2}),
            "Lines 3-2 are not a range of lines",
        ),
        (
            json!({"body": "b", "path": "Main.java", "line_start": 9, "line_end": 10}),
            "The file has 9 lines; line 10 is past its end",
        ),
        (
            json!({"body": "b", "path": "logo.png", "line_start": 1}),
            "Lines of a binary or very large file cannot be commented on; comment on the file",
        ),
    ] {
        let (status, got) = comment(&server, &author, &t, body).await;
        assert_eq!((status, got["detail"].as_str()), (422, Some(detail)));
    }
    let (status, got) = comment(
        &server,
        &author,
        &t,
        json!({"body": "b", "path": "nope.java"}),
    )
    .await;
    assert_eq!(
        (status, got["detail"].as_str()),
        (404, Some("Ticket file not found"))
    );
    let (status, got) = comment(&server, &author, &t, json!({"body": "b", "version": 2})).await;
    assert_eq!(
        (status, got["detail"].as_str()),
        (404, Some("Version not found"))
    );
    // The last line, and the whole file, and the whole ticket.
    for body in [
        json!({"body": "b", "path": "Main.java", "line_start": 9}),
        json!({"body": "b", "path": "logo.png"}),
        json!({"body": "b"}),
    ] {
        assert_eq!(comment(&server, &author, &t, body).await.0, 201);
    }

    // 1,000 comments a ticket (the rest stored directly, as many users would).
    let db = server.mongo().await;
    let filler: Vec<_> = (0..995)
        .map(|i| doc! { "_id": ObjectId::new(), "ticket_id": &t, "author_id": "100", "version": 1_i64, "body": format!("c{i}"), "create_time": i as i64 })
        .collect();
    db.collection::<mongodb::bson::Document>("comments")
        .insert_many(filler)
        .await
        .expect("filler");
    // 4 + 995 so far: the 1,000th is taken, the 1,001st is not.
    assert_eq!(
        comment(&server, &author, &t, json!({"body": "the 1000th"}))
            .await
            .0,
        201
    );
    let (status, got) = comment(&server, &author, &t, json!({"body": "one too many"})).await;
    assert_eq!(
        (status, got["detail"].as_str()),
        (409, Some("A ticket keeps at most 1000 comments"))
    );
}

#[tokio::test]
async fn a_fast_commenter_is_slowed_with_a_clear_429() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let author = server.token("100");
    let t = create_ticket(&server, &author, &[("a.txt", b"a\n")], None).await;
    let t = t["id"].as_str().expect("id").to_owned();
    for i in 0..20 {
        assert_eq!(
            comment(&server, &author, &t, json!({"body": format!("n{i}")}))
                .await
                .0,
            201
        );
    }
    let response = server
        .post(&format!("/ticket/100/{t}/comments"), &author)
        .json(&json!({"body": "21st"}))
        .send()
        .await
        .expect("post");
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_error(response, 429, "Too many comments: at most 20 a minute").await;
    // Another user is not slowed by it.
    let other = server.token("200");
    let t2 = create_ticket(&server, &other, &[("a.txt", b"a\n")], None).await;
    let t2 = t2["id"].as_str().expect("id");
    let (status, _) = json(
        server
            .post(&format!("/ticket/200/{t2}/comments"), &other)
            .json(&json!({"body": "fine"}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn markdown_is_rendered_safe_and_the_source_stays_text() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let author = server.token("100");
    let t = create_ticket(&server, &author, &[("a.txt", b"a\n")], None).await;
    let t = t["id"].as_str().expect("id").to_owned();
    let attack = "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)> ![pixel](https://tracker.example/p.png) [click](javascript:alert(3)) [docs](https://docs.example/a?b=1&c=2) `<b>`";
    let (status, thread) = comment(&server, &author, &t, json!({"body": attack})).await;
    assert_eq!(status, 201);
    let html = thread["body_html"].as_str().expect("html");
    for banned in ["<script", "<img", "javascript:", "onerror=alert(2)>"] {
        assert!(!html.contains(banned), "{banned} in {html}");
    }
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains(r#"<a href="https://tracker.example/p.png" rel="noopener noreferrer nofollow" target="_blank">image: pixel</a>"#), "{html}");
    assert!(html.contains(r#"<a href="https://docs.example/a?b=1&amp;c=2" rel="noopener noreferrer nofollow" target="_blank">docs</a>"#), "{html}");
    assert!(html.contains("<code>&lt;b&gt;</code>"), "{html}");
    assert_eq!(thread["body"], attack, "the source as written");
}

#[tokio::test]
async fn threads_follow_their_lines_into_later_versions_or_say_they_are_outdated() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let (author, ta) = (server.token("100"), server.token("200"));
    let t = create_ticket(
        &server,
        &author,
        &[("Main.java", MAIN.as_bytes()), ("notes.md", b"# notes\n")],
        Some(r#"{"is_public": true}"#),
    )
    .await;
    let t = t["id"].as_str().expect("id").to_owned();
    // On `twice` (lines 2-4), on the println (line 7), on the notes file.
    let (_, kept) = comment(
        &server,
        &ta,
        &t,
        json!({"path": "Main.java", "line_start": 2, "line_end": 4, "body": "ok"}),
    )
    .await;
    let (_, changed) = comment(
        &server,
        &ta,
        &t,
        json!({"path": "Main.java", "line_start": 7, "body": "print more"}),
    )
    .await;
    let (_, file) = comment(
        &server,
        &ta,
        &t,
        json!({"path": "notes.md", "body": "empty?"}),
    )
    .await;
    // v2: two lines added above `twice`, the println changed, notes gone.
    let v2 = MAIN
        .replace(
            "public class Main {\n",
            "public class Main {\n    // helpers\n    // more\n",
        )
        .replace(
            "System.out.println(twice(21));",
            "System.out.println(twice(21) + 1);",
        );
    let form = [("Main.java", v2.as_bytes())];
    let response = post_form(
        &server,
        &format!("/ticket/100/{t}/versions"),
        &author,
        &form,
        None,
    )
    .await
    .expect("version");
    assert_eq!(response.status(), 201);

    let now = threads(&server, &ta, &t, "").await;
    let find = |id: &Value| {
        now.as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == *id))
            .cloned()
            .expect("thread")
    };
    let kept = find(&kept["id"]);
    assert_eq!(
        kept["position"],
        json!({"line_start": 4, "line_end": 6}),
        "{kept}"
    );
    assert_eq!(
        (kept["outdated"].as_bool(), kept["version"].as_i64()),
        (Some(false), Some(1))
    );
    let changed = find(&changed["id"]);
    assert_eq!(
        (changed["outdated"].as_bool(), changed.get("position")),
        (Some(true), None),
        "{changed}"
    );
    assert_eq!(changed["lines"], json!({"line_start": 7, "line_end": 7}));
    assert_eq!(find(&file["id"])["outdated"], true);
    // At version 1 every thread is where it was written.
    let then = threads(&server, &ta, &t, "?version=1").await;
    assert!(
        then.as_array()
            .expect("threads")
            .iter()
            .all(|x| x["outdated"] == false),
        "{then}"
    );
    assert_error(
        server
            .get(&format!("/ticket/100/{t}/comments?version=3"), &ta)
            .send()
            .await
            .expect("get"),
        404,
        "Version not found",
    )
    .await;
}

#[tokio::test]
async fn notifications_and_direct_messages_reach_only_who_may_read() {
    let discord = FakeDiscord::start().await;
    let server = Server::start_with(
        ServerOptions::shipped()
            .discord(&discord.base)
            .env("PD2_DISCORD__BOT_TOKEN", "bot-secret")
            .env("PD2_DISCORD__REDIRECT_URI", "https://tickets.example/"),
    )
    .await;
    let (author, ta, other) = (
        server.token("100"),
        server.token("200"),
        server.token("300"),
    );
    let t = create_ticket(
        &server,
        &author,
        &[("Main.java", MAIN.as_bytes())],
        Some(r#"{"is_public": true}"#),
    )
    .await;
    let t = t["id"].as_str().expect("id").to_owned();
    let unread = |token: String| {
        let server = &server;
        async move {
            json(
                server
                    .get("/notifications/unread", &token)
                    .send()
                    .await
                    .expect("unread"),
            )
            .await
            .1["unread"]
                .as_u64()
        }
    };

    // The TA comments: the author is told, in the app and by Discord.
    let (_, thread) = comment(
        &server,
        &ta,
        &t,
        json!({"path": "Main.java", "line_start": 3, "body": "SECRET-REVIEW-TEXT"}),
    )
    .await;
    assert_eq!(unread(author.clone()).await, Some(1));
    assert_eq!(
        unread(ta.clone()).await,
        Some(0),
        "not for what you did yourself"
    );
    let (_, list) = json(
        server
            .get("/notifications", &author)
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(list["unread"], 1);
    assert_eq!(list["items"][0]["kind"], "comment");
    assert_eq!(list["items"][0]["ticket_id"], t.as_str());
    assert_eq!(list["items"][0]["path"], "Main.java");
    assert!(
        !list.to_string().contains("SECRET-REVIEW-TEXT"),
        "no comment text in notifications"
    );
    assert_eq!(unread(author.clone()).await, Some(0), "read once listed");
    eventually(
        "the author's direct message",
        Duration::from_secs(10),
        || async { discord.messages().iter().any(|m| m.recipient == "100") },
    )
    .await;
    let message = discord
        .messages()
        .into_iter()
        .find(|m| m.recipient == "100")
        .expect("dm");
    assert_eq!(message.authorization, "Bot bot-secret");
    assert!(
        message
            .content
            .contains(&format!("https://tickets.example/#/t/100/{t}")),
        "{}",
        message.content
    );
    assert!(
        !message.content.contains("SECRET-REVIEW-TEXT"),
        "{}",
        message.content
    );

    // The author replies: the TA hears of it. Another user replies too.
    let root = thread["id"].as_str().expect("id");
    comment(
        &server,
        &author,
        &t,
        json!({"reply_to": root, "body": "because"}),
    )
    .await;
    assert_eq!(unread(ta.clone()).await, Some(1));
    let (_, list) = json(
        server
            .get("/notifications", &ta)
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(list["items"][0]["kind"], "reply");
    comment(&server, &other, &t, json!({"reply_to": root, "body": "+1"})).await;

    // The ticket goes private: the other user, who commented, is told
    // nothing more of it, not even that a version came.
    server
        .put(&format!("/ticket/100/{t}"), &author)
        .json(&json!({"is_public": false}))
        .send()
        .await
        .expect("put");
    let before = discord.messages().len();
    let response = post_form(
        &server,
        &format!("/ticket/100/{t}/versions"),
        &author,
        &[("Main.java", b"class Main {}\n")],
        None,
    )
    .await
    .expect("version");
    assert_eq!(response.status(), 201);
    assert_eq!(unread(other.clone()).await, Some(0));
    let (_, list) = json(
        server
            .get("/notifications", &other)
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(
        list["items"],
        json!([]),
        "nothing of a ticket they cannot read"
    );
    // The TA (not an admin here) cannot read it either any more.
    assert_eq!(unread(ta.clone()).await, Some(0));
    // At most one direct message per user and ticket in five minutes: the
    // TA got one for the reply, none for the version.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_ta = discord
        .messages()
        .iter()
        .filter(|m| m.recipient == "200")
        .count();
    assert_eq!(to_ta, 1, "{:?}", discord.messages());
    assert!(
        discord.messages()[before..]
            .iter()
            .all(|m| m.recipient != "300"),
        "{:?}",
        discord.messages()
    );
}
