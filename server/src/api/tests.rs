//! In-process tests of the route layer: warp's test client over the real
//! filters, handlers and services, with a real SecantusDB behind the store
//! (no binary, no sockets for HTTP). They pin the error mapping (status
//! and `detail` per failure) and the authorization matrix; the black-box
//! suite in `tests/` still covers the same through the real binary.

use std::time::Duration;

use pd2_ticket_tests::DbServer;
use serde_json::Value;
use warp::{Filter, http::StatusCode, reply::Response};

use crate::{
    auth::DisplayData,
    config::Config,
    service::{Context, Ctx},
    store::UserProfile,
};

const ADMIN: &str = "9";

struct Fixture {
    ctx: Ctx,
    // Dropped last: kills the database.
    _db: DbServer,
    _plugins: tempdir::Dir,
}

mod tempdir {
    /// An empty plugin directory, removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("pd2-inproc-{}", rand::random::<u64>()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Fixture {
    async fn start(limits: impl FnOnce(&mut Config)) -> Self {
        let db = DbServer::start();
        let plugins = tempdir::Dir::new();
        let mut config = Config::default();
        config.mongodb.uri = db.uri.clone();
        config.mongodb.database = "inproc".into();
        config.auth.jwt_secret = "in-process-test-secret-0123456789abcdef".into();
        config.discord.admins = vec![ADMIN.into()];
        config.plugins.dir = plugins.0.to_string_lossy().into_owned();
        config.plugins.cache_dir = plugins.0.join("cache").to_string_lossy().into_owned();
        limits(&mut config);
        let ctx = Context::new(config).await.expect("context");
        ctx.store.ensure_indexes().await.expect("indexes");
        ctx.store.tickets.number_legacy().await.expect("numbering");
        ctx.plugins.watch(Duration::from_millis(200));
        Self {
            ctx,
            _db: db,
            _plugins: plugins,
        }
    }

    fn routes(
        &self,
    ) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + use<> {
        super::routes(self.ctx.clone())
    }

    async fn token(&self, id: &str) -> String {
        let profile = UserProfile {
            id: id.into(),
            username: format!("user{id}"),
            global_name: None,
            avatar: None,
        };
        self.ctx
            .tokens
            .issue(DisplayData::new(&profile, id == ADMIN), 3600)
            .await
            .expect("token")
    }

    async fn send(&self, request: warp::test::RequestBuilder) -> (StatusCode, Value) {
        let response = request.reply(&self.routes()).await;
        let status = response.status();
        let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = warp::test::request().method("GET").path(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request).await
    }

    /// `method path` with `token`, as a request to send or to `reply`.
    fn request(method: &str, path: &str, token: &str) -> warp::test::RequestBuilder {
        warp::test::request()
            .method(method)
            .path(path)
            .header("authorization", format!("Bearer {token}"))
    }

    async fn upload(
        &self,
        token: &str,
        files: &[(&str, &[u8])],
        data: &str,
    ) -> (StatusCode, Value) {
        let boundary = "in-process-boundary";
        let mut body = Vec::new();
        for (name, content) in files {
            body.extend(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend(b"\r\n");
        }
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{data}\r\n--{boundary}--\r\n")
                .as_bytes(),
        );
        let request = Self::request("POST", "/ticket", token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("content-length", body.len())
            .body(body);
        self.send(request).await
    }
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or("<no detail>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_gets_its_status_and_detail() {
    let f = Fixture::start(|c| {
        c.limits.max_files = 2;
        c.limits.max_file_size = 16;
    })
    .await;
    let me = f.token("1").await;
    let cases: Vec<(&str, (StatusCode, Value), StatusCode, &str)> = vec![
        (
            "no token",
            f.get("/ticket", None).await,
            StatusCode::FORBIDDEN,
            "Invalid authentication credentials",
        ),
        (
            "a forged token",
            f.get("/ticket", Some("abc.def.ghi")).await,
            StatusCode::FORBIDDEN,
            "Invalid authentication credentials",
        ),
        (
            "no such route",
            f.get("/nowhere", Some(&me)).await,
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            "a malformed ticket id",
            f.get("/ticket/@me/not-an-id", Some(&me)).await,
            StatusCode::NOT_FOUND,
            "Ticket not found",
        ),
        (
            "a ticket that does not exist",
            f.get("/ticket/@me/0123456789abcdef0123", Some(&me)).await,
            StatusCode::NOT_FOUND,
            "Ticket not found",
        ),
        (
            "a non-numeric length",
            f.get("/ticket?length=ten", Some(&me)).await,
            StatusCode::BAD_REQUEST,
            "Query parameter `length` must be an integer",
        ),
        (
            "an unknown user",
            f.get("/user/404404", Some(&me)).await,
            StatusCode::NOT_FOUND,
            "User not found",
        ),
        (
            "an upload without files",
            f.upload(&me, &[], "{}").await,
            StatusCode::BAD_REQUEST,
            "Missing file",
        ),
        (
            "duplicate names",
            f.upload(&me, &[("a.txt", b"1"), ("A.txt", b"2")], "{}")
                .await,
            StatusCode::BAD_REQUEST,
            "Duplicate file name: \"A.txt\" (the same file as \"a.txt\" on Windows and macOS)",
        ),
        (
            "an illegal name",
            f.upload(&me, &[("../up.txt", b"1")], "{}").await,
            StatusCode::BAD_REQUEST,
            "Illegal file name: \"../up.txt\"",
        ),
        (
            "too many files",
            f.upload(&me, &[("a", b"1"), ("b", b"2"), ("c", b"3")], "{}")
                .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many files (at most 2)",
        ),
        (
            "a file over the limit",
            f.upload(&me, &[("big.txt", &[b'x'; 17])], "{}").await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "File is too large",
        ),
        (
            "bad options",
            f.upload(&me, &[("a.txt", b"1")], r#"{"is_public": "maybe"}"#)
                .await,
            StatusCode::BAD_REQUEST,
            "Invalid `data` field: `is_public` must be true or false, not \"maybe\" at line 1 column 22",
        ),
    ];
    for (case, (status, body), want_status, want_detail) in cases {
        assert_eq!(
            (status, detail(&body)),
            (want_status, want_detail),
            "{case}"
        );
    }
    // Nothing of the refused uploads was kept.
    let (status, list) = f.get("/ticket", Some(&me)).await;
    assert_eq!((status, list), (StatusCode::OK, serde_json::json!([])));
}

/// Who sees and changes what, through every ticket route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_through_the_routes() {
    let f = Fixture::start(|_| {}).await;
    let (author, other, admin) = (f.token("1").await, f.token("2").await, f.token(ADMIN).await);
    let (status, private) = f
        .upload(
            &author,
            &[("Main.java", b"class Main {}")],
            r#"{"remark": "private"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{private}");
    let (status, public) = f
        .upload(
            &author,
            &[("Main.java", b"class Main {}")],
            r#"{"is_public": true}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{public}");
    let private = private["id"].as_str().expect("id").to_owned();
    let public = public["id"].as_str().expect("id").to_owned();

    // (who, path user, ticket, GET status, files/ status)
    let reads = [
        (&author, "1", &private, 200, 200),
        (&author, "@me", &private, 200, 200),
        (&other, "1", &private, 404, 404),
        (&other, "@me", &private, 404, 404),
        (&admin, "1", &private, 200, 200),
        (&other, "1", &public, 200, 200),
        (&other, "2", &public, 404, 404),
    ];
    for (who, user, ticket, get, file) in reads {
        let (status, _) = f.get(&format!("/ticket/{user}/{ticket}"), Some(who)).await;
        assert_eq!(status.as_u16(), get, "GET /ticket/{user}/{ticket}");
        let path = format!("/ticket/{user}/{ticket}/files/Main.java");
        let response = Fixture::request("GET", &path, who).reply(&f.routes()).await;
        assert_eq!(response.status().as_u16(), file, "GET {path}");
        if file == 200 {
            assert_eq!(response.body().as_ref(), b"class Main {}");
        }
    }

    // Lists: private tickets for the author and admins only.
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    assert_eq!(count(&f.get("/ticket", Some(&author)).await.1), 2);
    assert_eq!(count(&f.get("/ticket/1", Some(&other)).await.1), 1);
    assert_eq!(count(&f.get("/ticket/1", Some(&admin)).await.1), 2);

    // Changes: the author only, admins included in the refusal.
    let put = |who: &str, user: &str, ticket: &str| {
        Fixture::request("PUT", &format!("/ticket/{user}/{ticket}"), who)
            .header("content-type", "application/json")
            .body(r#"{"remark": "changed"}"#)
    };
    for (who, user, want, want_detail) in [
        (
            &other,
            "1",
            StatusCode::FORBIDDEN,
            Some("Permission denied"),
        ),
        (
            &admin,
            "1",
            StatusCode::FORBIDDEN,
            Some("Permission denied"),
        ),
        (
            &author,
            "2",
            StatusCode::NOT_FOUND,
            Some("Ticket not found"),
        ),
        (&author, "1", StatusCode::CREATED, None),
    ] {
        let (status, body) = f.send(put(who, user, &public)).await;
        assert_eq!(status, want, "PUT as {user}: {body}");
        if let Some(want_detail) = want_detail {
            assert_eq!(detail(&body), want_detail);
        } else {
            assert_eq!(body["remark"], "changed");
        }
    }
    let delete =
        |who: &str, ticket: &str| Fixture::request("DELETE", &format!("/ticket/1/{ticket}"), who);
    let (status, _) = f.send(delete(&admin, &private)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let response = delete(&author, &private).reply(&f.routes()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = f.get(&format!("/ticket/1/{private}"), Some(&author)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Lists page by ticket numbers: pages are newest first, gaps from
/// deleted tickets are skipped, and offsets past the end are empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_over_gaps() {
    let f = Fixture::start(|_| {}).await;
    let me = f.token("1").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let (status, body) = f
            .upload(
                &me,
                &[("a.txt", format!("{i}").as_bytes())],
                &format!(r#"{{"remark": "{i}"}}"#),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    // Delete 5, 4 and 1: the numbers of the rest have gaps.
    for i in [5, 4, 1] {
        let response = Fixture::request("DELETE", &format!("/ticket/@me/{}", ids[i]), &me)
            .reply(&f.routes())
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let remarks = |v: Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t["remark"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let page = |offset: u32, length: u32| {
        let me = me.clone();
        let f = &f;
        async move {
            remarks(
                f.get(
                    &format!("/ticket?offset={offset}&length={length}"),
                    Some(&me),
                )
                .await
                .1,
            )
        }
    };
    assert_eq!(page(0, 10).await, ["6", "3", "2", "0"]);
    assert_eq!(page(0, 2).await, ["6", "3"]);
    assert_eq!(page(1, 2).await, ["3", "2"]);
    assert_eq!(page(3, 2).await, ["0"]);
    assert!(page(4, 2).await.is_empty());
}
