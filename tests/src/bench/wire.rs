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
    // The 3,047-line, 79 KB C++ source of issue 24 (TinyXML-2).
    let cpp = project_files("tinyxml2");
    let (cpp_name, cpp_source) = largest(&cpp, ".cpp");
    let ticket = create_ticket(
        &server,
        &token,
        &[(name.as_str(), source), (cpp_name.as_str(), cpp_source)],
        None,
    )
    .await;
    let id = ticket["id"].as_str().expect("id");
    println!(
        "\n## Compression on the wire: `{cpp_name}` ({} bytes, 3,047 lines) and `{name}` ({} bytes), 50 requests each (shipped config)\n",
        cpp_source.len(),
        source.len()
    );
    println!("| answer | encoding | bytes on the wire | × source | p50 ms | at 1.6 Mbit/s |");
    println!("|---|---|---|---|---|---|");
    for (label, url, source_len) in [
        (
            "C++ preview",
            format!("/ticket/@me/{id}/preview/{cpp_name}"),
            cpp_source.len(),
        ),
        (
            "Java preview",
            format!("/ticket/@me/{id}/preview/{name}"),
            source.len(),
        ),
        (
            "C++ file",
            format!("/ticket/@me/{id}/files/{cpp_name}"),
            cpp_source.len(),
        ),
        ("app.js", "/app/app.js".to_owned(), 0),
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
            let ratio = if source_len > 0 {
                format!("{:.2}", size as f64 / source_len as f64)
            } else {
                "–".to_owned()
            };
            println!(
                "| {label} | {} | {size} | {ratio} | {:.2} | {:.2} s |",
                accept.unwrap_or("none"),
                p50.as_secs_f64() * 1000.0,
                link.as_secs_f64()
            );
        }
    }
}
