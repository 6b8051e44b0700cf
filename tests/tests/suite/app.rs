//! Our web app (`/`, `/app/*`, `/meta`, the `/docs` console): its headers
//! over HTTP, and the whole of it in a real browser: headless Chromium
//! driven by playwright-core (`tests/browser/app.test.mjs`) against the
//! real binary, SecantusDB and the fake Discord.

use std::{path::PathBuf, process::Command};

use pd2_ticket_tests::{Server, ServerOptions, discord::FakeDiscord, json, workspace_root};
use serde_json::json;

const SECRET: &str = "web-app-secret-0123456789";

async fn app_server(discord: &FakeDiscord) -> Server {
    Server::start_with(
        ServerOptions::shipped()
            .discord(&discord.base)
            .secret(SECRET)
            .admins(&["4242"]),
    )
    .await
}

#[tokio::test]
async fn the_app_is_served_with_its_own_policy_beside_the_api() {
    let discord = FakeDiscord::start().await;
    let server = app_server(&discord).await;
    let page = server.get_anonymous("/").await;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self'; script-src 'self';")
            && !csp.contains("script-src 'self' 'unsafe-inline'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<script type=\"module\" src=\"/app/app.js\"></script>"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "no inline script");

    let again = pd2_ticket_tests::http_client()
        .build()
        .expect("http client")
        .get(server.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    for (path, kind) in [
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/docs.js", "text/javascript; charset=utf-8"),
        ("/app/dom.js", "text/javascript; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
        ("/app/icon.svg", "image/svg+xml"),
        ("/app/api.js", "text/javascript; charset=utf-8"),
        ("/app/pages/ticket.js", "text/javascript; charset=utf-8"),
    ] {
        let r = server.get_anonymous(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
    }
    // The table is the folder: every file of `server/web` is served, byte
    // for byte (index.html at `/`).
    let web = pd2_ticket_tests::workspace_root().join("server/web");
    let mut stack = vec![web.clone()];
    let mut served = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path
                .strip_prefix(&web)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let url = if name == "index.html" {
                "/".to_owned()
            } else {
                format!("/app/{name}")
            };
            let r = server.get_anonymous(&url).await;
            assert_eq!(r.status(), 200, "{url}");
            assert_eq!(
                r.bytes().await.unwrap(),
                std::fs::read(&path).unwrap(),
                "{url}"
            );
            served += 1;
        }
    }
    assert!(served >= 10, "{served} files");
    for outside in [
        "/app/../Cargo.toml",
        "/app/index.html",
        "/app/pages/",
        "/app/pages",
    ] {
        let r = server.get_anonymous(outside).await;
        assert_eq!(r.status(), 404, "{outside}");
    }
    let (status, body) = json(server.get_anonymous("/app/nothing.js").await).await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));

    let (status, meta) = json(server.get_anonymous("/meta").await).await;
    assert_eq!(status, 200);
    let authorize = meta["discord"]["authorize_url"].as_str().unwrap();
    assert!(
        authorize
            .starts_with("https://discord.com/oauth2/authorize?client_id=client%2D1&redirect_uri=")
            && authorize.ends_with("&response_type=code&scope=identify"),
        "{authorize}"
    );
    assert_eq!(meta["limits"]["max_file_size"], 1024 * 1024);
    assert!(meta["limits"]["max_files"].as_u64().unwrap() > 0);

    // The API keeps its answers.
    let (status, body) = json(server.get_anonymous("/ticket").await).await;
    assert_eq!(
        (status, body),
        (403, json!({"detail": "Invalid authentication credentials"}))
    );
    let docs = server.get_anonymous("/docs").await;
    assert!(
        docs.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    let docs = docs.text().await.unwrap();
    assert!(docs.contains("<script type=\"module\" src=\"/app/docs.js\"></script>"));
    assert!(docs.contains("data-method=\"get\" data-path=\"/ticket\""));
}

/// `node` and the browser, or why the test cannot run.
fn browser_tools() -> (PathBuf, PathBuf) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let chromium = PathBuf::from(chromium);
    assert!(
        chromium.exists(),
        "{} is missing: ./test.sh installs Debian's chromium (apt-get install chromium)",
        chromium.display()
    );
    let dir = workspace_root().join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the browser tests");
        assert!(status.success(), "npm ci in tests/browser failed");
    }
    (chromium, dir)
}

fn expired_token(id: &str) -> String {
    pd2_ticket_tests::signed_token(SECRET, id, -3 * 86_400)
}

/// Every flow of the app as a person does it: log in through Discord's
/// callback, upload a folder and watch the progress reach 100 %, read the
/// highlighted Java, the README with its image and link, the PNG, a line
/// link, keyboard navigation; share, publish, edit, a policy rejection
/// named next to the file, a second user's view, delete, the admin page,
/// the API console, and an expired login leading back to sign-in.
/// Screenshots of a failing step land in `target/browser-artifacts`.
#[tokio::test]
async fn the_web_app_in_a_real_browser() {
    let (chromium, dir) = browser_tools();
    let discord = FakeDiscord::start().await;
    let server = app_server(&discord).await;
    let second = server.token_named("5151", Some("bob"));
    let artifacts = workspace_root().join("target/browser-artifacts");
    // A terminal waiting for its code to be approved in the browser.
    let terminal = pd2_ticket_tests::pd2::Terminal::new(&server.base);
    let login = terminal.start_login().await;
    let mut command = tokio::process::Command::new("node");
    command
        .arg("app.test.mjs")
        .current_dir(&dir)
        .env("BASE_URL", &server.base)
        .env("LOGIN_CODE", "ok-4242")
        .env("TOKEN_B", second)
        .env("EXPIRED_TOKEN", expired_token("6161"))
        .env("DEVICE_URL", &login.url)
        .env("DEVICE_CODE", &login.user_code)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        // The student folders it makes, and Chromium's profile, among the
        // test's other folders (removed by a later run).
        .env("TMPDIR", pd2_ticket_tests::temp_dir("browser"))
        .kill_on_drop(true);
    if let Ok(shots) = std::env::var("APP_SCREENSHOTS") {
        command.env("SCREENSHOTS", shots);
    }
    let out = command.output().await.expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "browser steps failed (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
    // The last steps ran, and the ones that replay issue 21's holes.
    for step in [
        "ok    the API console tries a route of each kind with the token",
        "ok    a sign-in link made by somebody else does not swap the account",
        "ok    Download saves a file under the name the zip gives it",
        "ok    a shared browser never hands one user's private file to the next",
        "ok    a terminal is signed in by approving its code",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    // The terminal got its token from the approval, and it works.
    let done = login.finish(std::time::Duration::from_secs(60)).await;
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    let listed = terminal.run(&["--json", "list"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.json().as_array().is_some_and(|t| !t.is_empty()),
        "{}",
        listed.stdout
    );
}
