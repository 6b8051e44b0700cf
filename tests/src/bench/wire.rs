//! `bench --compression`: what a preview, a file and the app cost on the
//! wire with each encoding a browser accepts (issue 24), and what the
//! compression costs the server. The shipped config, first-party plugins;
//! the largest source of the real project fixture.

use std::time::{Duration, Instant};

use pd2_ticket_tests::{DbServer, create_ticket, largest, project_files};

use super::shapes::shipped_with;

pub async fn compression(db: &DbServer) {
    let server = shipped_with(db, "bench-wire", 2, &[]).await;
    let token = server.token("1");
    let project = project_files("java-design-patterns");
    let (name, source) = largest(&project, ".java");
    let ticket = create_ticket(&server, &token, &[(name.as_str(), source)], None).await;
    let id = ticket["id"].as_str().expect("id");
    println!(
        "\n## Compression on the wire: `{name}` ({} bytes), 50 requests each (shipped config)\n",
        source.len()
    );
    println!("| answer | encoding | bytes on the wire | p50 ms | at 1.6 Mbit/s |");
    println!("|---|---|---|---|---|");
    for (label, url) in [
        ("preview", format!("/ticket/@me/{id}/preview/{name}")),
        ("file", format!("/ticket/@me/{id}/files/{name}")),
        ("app.js", "/app/app.js".to_owned()),
    ] {
        for accept in [None, Some("gzip"), Some("br"), Some("zstd")] {
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..50 {
                let mut request = server.get(&url, &token);
                if let Some(accept) = accept {
                    request = request.header("accept-encoding", accept);
                }
                let started = Instant::now();
                let response = request.send().await.expect("answer");
                assert_eq!(response.status(), 200, "{url}");
                size = response.bytes().await.expect("body").len();
                times.push(started.elapsed());
            }
            times.sort();
            let p50 = times[times.len() / 2];
            let link = Duration::from_secs_f64(size as f64 * 8.0 / 1.6e6);
            println!(
                "| {label} | {} | {size} | {:.2} | {:.2} s |",
                accept.unwrap_or("none"),
                p50.as_secs_f64() * 1000.0,
                link.as_secs_f64()
            );
        }
    }
}
