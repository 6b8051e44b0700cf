//! Authentication and authorization through the real server: token checks,
//! the owner/other/admin/anonymous matrix on every ticket route, Discord
//! login and refresh against a fake Discord, and the stored JWT secret.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mongodb::bson::doc;
use pd2_ticket_tests::{
    Server, ServerOptions, assert_error, create_ticket, discord::FakeDiscord, json,
};
use serde_json::{Value, json};

const SECRET: &str = "test-secret-0123456789";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(id: &str, exp: i64) -> Value {
    json!({
        "id": id, "username": format!("u{id}"), "global_name": null, "avatar": null,
        "is_admin": false, "display_name": format!("u{id}"),
        "display_avatar": "https://cdn.discordapp.com/embed/avatars/0.png",
        "exp": exp, "iat": now() - 10,
    })
}

fn sign(claims: &Value, alg: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn decode_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn bad_tokens_are_refused_on_every_route() {
    let server = Server::start_with(ServerOptions::default().secret(SECRET)).await;
    let good = server.token("1");
    let ticket = create_ticket(&server, &good, &[("a.txt", b"a")], None).await;
    let id = ticket["id"].as_str().unwrap();

    let mut no_iat = claims("1", now() + 3600);
    no_iat.as_object_mut().unwrap().remove("iat");
    let mut no_exp = claims("1", now() + 3600);
    no_exp.as_object_mut().unwrap().remove("exp");
    let alg_none = {
        use base64::Engine;
        let enc = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
        };
        format!(
            "{}.{}.",
            enc(&json!({"alg": "none", "typ": "JWT"})),
            enc(&claims("1", now() + 3600))
        )
    };
    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some(format!("Basic {good}"))),
        ("empty bearer", Some("Bearer ".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(&claims("1", now() + 3600), Algorithm::HS256, "other")
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(&claims("1", now() - 7200), Algorithm::HS256, SECRET)
            )),
        ),
        (
            "HS512",
            Some(format!(
                "Bearer {}",
                sign(&claims("1", now() + 3600), Algorithm::HS512, SECRET)
            )),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "no iat",
            Some(format!(
                "Bearer {}",
                sign(&no_iat, Algorithm::HS256, SECRET)
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(&no_exp, Algorithm::HS256, SECRET)
            )),
        ),
    ];
    let routes: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::GET, "/ticket".into()),
        (reqwest::Method::POST, "/ticket".into()),
        (reqwest::Method::GET, "/ticket/@me".into()),
        (reqwest::Method::GET, format!("/ticket/1/{id}")),
        (reqwest::Method::PUT, format!("/ticket/1/{id}")),
        (reqwest::Method::DELETE, format!("/ticket/1/{id}")),
        (reqwest::Method::GET, format!("/ticket/1/{id}/files/a.txt")),
        (reqwest::Method::GET, format!("/ticket/1/{id}/download")),
        (reqwest::Method::GET, "/user/1".into()),
    ];
    for (what, header) in &bad {
        for (method, path) in &routes {
            let mut request = server.http.request(method.clone(), server.url(path));
            if let Some(h) = header {
                request = request.header("authorization", h);
            }
            if *method == reqwest::Method::PUT {
                request = request.json(&json!({"remark": "hacked"}));
            }
            let response = request.send().await.unwrap();
            let (status, body) = json(response).await;
            assert_eq!(
                (status, body["detail"].as_str()),
                (403, Some("Invalid authentication credentials")),
                "{what}: {method} {path}"
            );
        }
    }
    // Nothing was changed or deleted by any of them.
    let (status, body) = json(
        server
            .get(&format!("/ticket/@me/{id}"), &good)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["remark"].as_str()), (200, Some("")));
}

/// The authorization matrix of SPEC §2 on every ticket route.
#[tokio::test]
async fn owner_other_admin_matrix() {
    let server = Server::start_with(ServerOptions::default().secret(SECRET).admins(&["900"])).await;
    let alice = server.token_named("100", Some("alice"));
    let bob = server.token_named("200", Some("bob"));
    let admin = server.token_named("900", Some("admin"));
    // A token whose claim says admin, for a user the config does not list.
    let mut fake_admin_claims = claims("200", now() + 3600);
    fake_admin_claims["is_admin"] = json!(true);
    let fake_admin = sign(&fake_admin_claims, Algorithm::HS256, SECRET);

    let private = create_ticket(&server, &alice, &[("p.txt", b"secret")], None).await;
    let public = create_ticket(
        &server,
        &alice,
        &[("q.txt", b"open")],
        Some(r#"{"is_public":true}"#),
    )
    .await;
    let private = private["id"].as_str().unwrap().to_owned();
    let public = public["id"].as_str().unwrap().to_owned();

    let get = |path: String, token: &str| server.get(&path, token).send();
    let status = |r: reqwest::Response| r.status().as_u16();

    // Reads of the private ticket.
    for (who, token, expect) in [
        ("alice", &alice, 200),
        ("bob", &bob, 404),
        ("admin", &admin, 200),
        ("fake admin", &fake_admin, 404),
    ] {
        for path in [
            format!("/ticket/100/{private}"),
            format!("/ticket/100/{private}/files/p.txt"),
            format!("/ticket/100/{private}/download"),
        ] {
            let response = get(path.clone(), token).await.unwrap();
            assert_eq!(status(response), expect, "{who} GET {path}");
        }
    }
    // Reads of the public ticket: everyone.
    for (who, token) in [("alice", &alice), ("bob", &bob), ("admin", &admin)] {
        for path in [
            format!("/ticket/100/{public}"),
            format!("/ticket/100/{public}/files/q.txt"),
            format!("/ticket/100/{public}/download"),
        ] {
            assert_eq!(
                status(get(path.clone(), token).await.unwrap()),
                200,
                "{who} GET {path}"
            );
        }
    }
    // Somebody else's ticket through @me, or a path naming the wrong user: 404.
    for (token, path) in [
        (&bob, format!("/ticket/@me/{public}")),
        (&bob, format!("/ticket/@me/{private}")),
        (&alice, format!("/ticket/200/{private}")),
        (&admin, format!("/ticket/@me/{private}")),
    ] {
        assert_error(
            get(path.clone(), token).await.unwrap(),
            404,
            "Ticket not found",
        )
        .await;
    }

    // Changes: only the author, by any path.
    let put = |path: String, token: String| {
        server
            .put(&path, &token)
            .json(&json!({"remark": "hacked", "is_public": true}))
            .send()
    };
    let delete = |path: String, token: String| server.delete(&path, &token).send();
    for ticket in [&private, &public] {
        for (token, path) in [
            (&bob, format!("/ticket/100/{ticket}")),
            (&bob, format!("/ticket/@me/{ticket}")),
            (&bob, format!("/ticket/200/{ticket}")),
            (&admin, format!("/ticket/100/{ticket}")),
            (&admin, format!("/ticket/@me/{ticket}")),
            (&fake_admin, format!("/ticket/100/{ticket}")),
        ] {
            assert_error(
                put(path.clone(), token.clone()).await.unwrap(),
                403,
                "Permission denied",
            )
            .await;
            assert_error(
                delete(path.clone(), token.clone()).await.unwrap(),
                403,
                "Permission denied",
            )
            .await;
        }
        // The author naming another user in the path: not found.
        assert_error(
            put(format!("/ticket/200/{ticket}"), alice.clone())
                .await
                .unwrap(),
            404,
            "Ticket not found",
        )
        .await;
        assert_error(
            delete(format!("/ticket/200/{ticket}"), alice.clone())
                .await
                .unwrap(),
            404,
            "Ticket not found",
        )
        .await;
    }
    // Nothing changed.
    let (_, body) = json(get(format!("/ticket/@me/{private}"), &alice).await.unwrap()).await;
    assert_eq!(
        (body["remark"].as_str(), body["is_public"].as_bool()),
        (Some(""), Some(false))
    );

    // Lists: others see only public tickets, the owner and admins all.
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, list) = json(get("/ticket/100".into(), &bob).await.unwrap()).await;
    assert_eq!(ids(list), vec![public.clone()]);
    let (_, list) = json(get("/ticket/100".into(), &fake_admin).await.unwrap()).await;
    assert_eq!(ids(list), vec![public.clone()]);
    let (_, list) = json(get("/ticket/100".into(), &admin).await.unwrap()).await;
    assert_eq!(ids(list), vec![public.clone(), private.clone()]);
    let (_, list) = json(get("/ticket/@me".into(), &alice).await.unwrap()).await;
    assert_eq!(ids(list), vec![public.clone(), private.clone()]);
    let (_, list) = json(get("/ticket".into(), &bob).await.unwrap()).await;
    assert_eq!(ids(list), Vec::<String>::new());

    // The author can change and delete, through @me or the explicit id.
    let response = put(format!("/ticket/@me/{private}"), alice.clone())
        .await
        .unwrap();
    assert_eq!(status(response), 201);
    assert_eq!(
        status(
            delete(format!("/ticket/100/{private}"), alice.clone())
                .await
                .unwrap()
        ),
        204
    );
    assert_eq!(
        status(
            delete(format!("/ticket/@me/{public}"), alice.clone())
                .await
                .unwrap()
        ),
        204
    );
    assert_eq!(server.stored().await, Default::default());
}

#[tokio::test]
async fn discord_login_issues_token_and_stores_user() {
    let discord = FakeDiscord::start().await;
    let server = Server::start_with(
        ServerOptions::default()
            .discord(&discord.base)
            .admins(&["77"]),
    )
    .await;
    let start = now();
    let response = server
        .http
        .post(server.url("/oauth"))
        .json(&json!({"code": "ok-77"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], json!("Bearer"));
    let token = body["access_token"].as_str().unwrap().to_owned();

    let claims = decode_claims(&token);
    assert_eq!(claims["id"], json!("77"));
    assert_eq!(claims["username"], json!("user77"));
    assert_eq!(claims["global_name"], json!("User 77"));
    assert_eq!(claims["avatar"], json!("avatar77"));
    assert_eq!(claims["is_admin"], json!(true));
    assert_eq!(claims["display_name"], json!("User 77"));
    assert_eq!(
        claims["display_avatar"],
        json!("https://cdn.discordapp.com/avatars/77/avatar77.png")
    );
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        (exp - (start + 604_800)).abs() < 30,
        "JWT expires with the Discord token"
    );
    assert!(claims["iat"].as_i64().unwrap() >= start - 5);

    // The code exchange sent what Discord requires.
    let sent = &discord.requests()[0];
    assert_eq!(sent["grant_type"], "authorization_code");
    assert_eq!(sent["code"], "ok-77");
    assert_eq!(sent["client_id"], "client-1");
    assert_eq!(sent["client_secret"], "secret-1");
    assert_eq!(sent["redirect_uri"], "http://localhost:3000/callback");

    // The token works, the user exists, and Discord tokens never leak.
    let response = server.get("/user/@me", &token).send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("\"display_name\":\"User 77\""), "{text}");
    assert!(!text.contains("at-77") && !text.contains("rt-77"), "{text}");
    let ticket = create_ticket(&server, &token, &[("x.c", b"1")], None).await;
    assert!(!ticket.to_string().contains("rt-77"));
    let stored = server
        .count(
            "users",
            mongodb::bson::doc! {"_id": "77", "discord.refresh_token": "rt-77"},
        )
        .await;
    assert_eq!(stored, 1, "refresh token kept for later refreshes");
}

#[tokio::test]
async fn discord_failures_are_authorize_failed() {
    let discord = FakeDiscord::start().await;
    let server = Server::start_with(ServerOptions::default().discord(&discord.base)).await;
    let login = |body: Value| server.http.post(server.url("/oauth")).json(&body).send();
    for code in ["wrong", "noscope-5", "badjson", "down", "slow"] {
        let started = Instant::now();
        assert_error(
            login(json!({"code": code})).await.unwrap(),
            401,
            "Authorize failed",
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{code} respects the Discord timeout"
        );
    }
    // Bodies that are not a login request.
    let (status, _) = json(login(json!({})).await.unwrap()).await;
    assert_eq!(status, 422);
    let (status, _) = json(login(json!({"code": 5})).await.unwrap()).await;
    assert_eq!(status, 422);
    let raw = server
        .http
        .post(server.url("/oauth"))
        .header("content-type", "application/json")
        .body("code=1")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let empty = server
        .http
        .post(server.url("/oauth"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    assert_eq!(server.count("users", mongodb::bson::doc! {}).await, 0);
}

#[tokio::test]
async fn refresh_keeps_fresh_tokens_and_renews_old_ones() {
    let discord = FakeDiscord::start().await;
    let server = Server::start_with(
        ServerOptions::default()
            .discord(&discord.base)
            .secret(SECRET),
    )
    .await;
    let refresh = |token: String| server.put("/oauth", &token).send();

    // A week left: handed back unchanged, Discord not asked.
    let (_, body) = json(
        server
            .http
            .post(server.url("/oauth"))
            .json(&json!({"code": "ok-10"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let week = body["access_token"].as_str().unwrap().to_owned();
    let asked = discord.requests().len();
    let (status, body) = json(refresh(week.clone()).await.unwrap()).await;
    assert_eq!(
        (status, body["access_token"].as_str()),
        (200, Some(week.as_str()))
    );
    assert_eq!(discord.requests().len(), asked);

    // An hour left: renewed with the stored refresh token.
    let (_, body) = json(
        server
            .http
            .post(server.url("/oauth"))
            .json(&json!({"code": "short-11"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let hour = body["access_token"].as_str().unwrap().to_owned();
    let (status, body) = json(refresh(hour.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let renewed = body["access_token"].as_str().unwrap();
    assert_ne!(renewed, hour);
    assert!(decode_claims(renewed)["exp"].as_i64().unwrap() > now() + 6 * 86_400);
    let last = discord.requests().last().cloned().unwrap();
    assert_eq!(
        (last["grant_type"].as_str(), last["refresh_token"].as_str()),
        ("refresh_token", "rt-11")
    );
    assert_eq!(
        server
            .get("/ticket", renewed)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Expired yet genuine: accepted for refresh (and only for refresh).
    let expired = sign(&claims("11", now() - 86_400), Algorithm::HS256, SECRET);
    assert_eq!(
        server
            .get("/ticket", &expired)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let (status, _) = json(refresh(expired).await.unwrap()).await;
    assert_eq!(status, 200);
    // Within `auth.refresh_window_days` (14) of its expiry, not after: a
    // token left on a shared machine ten years ago stays dead (issue 21).
    let within = sign(&claims("11", now() - 13 * 86_400), Algorithm::HS256, SECRET);
    let (status, _) = json(refresh(within).await.unwrap()).await;
    assert_eq!(status, 200);
    for ago in [15 * 86_400, 10 * 365 * 86_400] {
        let stale = sign(&claims("11", now() - ago), Algorithm::HS256, SECRET);
        assert_error(
            refresh(stale).await.unwrap(),
            403,
            "Invalid authentication credentials",
        )
        .await;
    }

    // Forged, or refused by Discord, or never logged in with Discord.
    let forged = sign(&claims("11", now() - 10), Algorithm::HS256, "nope");
    assert_error(
        refresh(forged).await.unwrap(),
        403,
        "Invalid authentication credentials",
    )
    .await;
    assert_error(
        server.http.put(server.url("/oauth")).send().await.unwrap(),
        403,
        "Invalid authentication credentials",
    )
    .await;
    let (_, _) = json(
        server
            .http
            .post(server.url("/oauth"))
            .json(&json!({"code": "short-revoked"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let revoked = sign(&claims("revoked", now() - 10), Algorithm::HS256, SECRET);
    assert_error(refresh(revoked).await.unwrap(), 401, "Authorize failed").await;
    server.token("12"); // created by the operator tool, no Discord grant
    let cli_user = sign(&claims("12", now() + 60), Algorithm::HS256, SECRET);
    assert_error(refresh(cli_user).await.unwrap(), 401, "Authorize failed").await;
}

#[tokio::test]
async fn generated_secret_is_stored_and_shared() {
    let first = Server::start().await;
    let token = first.token_named("31", Some("carol"));
    assert_eq!(
        token.split('.').count(),
        3,
        "stdout holds only the JWT: {token:?}"
    );
    assert_eq!(
        first
            .count("settings", mongodb::bson::doc! {"_id": "jwt_secret"})
            .await,
        1
    );
    assert_eq!(
        first
            .count(
                "users",
                mongodb::bson::doc! {"_id": "31", "username": "carol"}
            )
            .await,
        1
    );
    assert_eq!(
        first.get("/ticket", &token).send().await.unwrap().status(),
        200
    );

    // Another instance on the same database accepts it; so does a restart.
    let options = ServerOptions::default().database(&first.db_uri, &first.database);
    let second = Server::start_with(options.clone()).await;
    assert_eq!(
        second.get("/ticket", &token).send().await.unwrap().status(),
        200
    );
    drop(first);
    let restarted = Server::start_with(options).await;
    assert_eq!(
        restarted
            .get("/ticket", &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A token from a server with a different secret is refused.
    let other = Server::start().await;
    let foreign = other.token("31");
    assert_eq!(
        restarted
            .get("/ticket", &foreign)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

/// One rule for a valid token whose user has no record (a restored
/// database, a token signed elsewhere with the shared secret): the token
/// proves the user, so nothing answers `User not found` for the caller's
/// own id, and their first upload records them for everyone else.
#[tokio::test]
async fn a_valid_token_for_an_unrecorded_user_is_that_user() {
    let server = Server::start_with(ServerOptions::default().secret(SECRET)).await;
    let ghost = sign(&claims("771", now() + 3600), Algorithm::HS256, SECRET);
    let other = server.token("772");
    assert_eq!(server.count("users", doc! { "_id": "771" }).await, 0);

    let (status, body) = json(server.get("/ticket/@me", &ghost).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) = json(server.get("/ticket/771", &ghost).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) = json(server.get("/user/@me", &ghost).send().await.unwrap()).await;
    assert_eq!(
        (status, body["username"].as_str()),
        (200, Some("u771")),
        "{body}"
    );
    // Others do not know the user yet.
    let (status, _) = json(server.get("/user/771", &other).send().await.unwrap()).await;
    assert_eq!(status, 404);

    let ticket = create_ticket(
        &server,
        &ghost,
        &[("a.txt", b"a")],
        Some(r#"{"is_public": true}"#),
    )
    .await;
    assert_eq!(ticket["author"]["display_data"]["username"], "u771");
    let id = ticket["id"].as_str().unwrap();
    // Now the author is a user like any other.
    let (status, body) = json(server.get("/user/771", &other).send().await.unwrap()).await;
    assert_eq!((status, body["username"].as_str()), (200, Some("u771")));
    let (status, body) = json(server.get("/ticket/771", &other).send().await.unwrap()).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)));
    let (status, _) = json(
        server
            .get(&format!("/ticket/771/{id}"), &other)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}
