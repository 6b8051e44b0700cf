//! Answers compressed on the wire as the client accepts (zstd, brotli,
//! gzip): previews, files, the app and JSON, each decompressing to exactly
//! the bytes sent without compression; never a range, a zip, an image or
//! a tiny answer; a repeat view is still a 304.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use pd2_ticket_tests::{Server, ServerOptions, create_ticket, largest, project_files};
use tokio::io::AsyncReadExt;

async fn decompress(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "zstd" => ZstdDecoder::new(bytes).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(bytes).read_to_end(&mut out).await,
        "gzip" => GzipDecoder::new(bytes).read_to_end(&mut out).await,
        other => panic!("unexpected encoding {other}"),
    }
    .expect("a valid stream");
    out
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .reduce(|a, b| format!("{a}, {b}"))
}

#[tokio::test]
async fn answers_are_compressed_as_the_client_accepts() {
    let server = Server::start_with(ServerOptions::shipped()).await;
    let token = server.token("71");
    // The largest source of a real project, and an image beside it.
    let project = project_files("java-design-patterns");
    let (java, source) = largest(&project, ".java");
    let (png, image) = project
        .iter()
        .find(|(name, _)| name.ends_with(".png"))
        .expect("a png");
    let ticket = create_ticket(
        &server,
        &token,
        &[(java.as_str(), source), (png.as_str(), image)],
        None,
    )
    .await;
    let id = ticket["id"].as_str().expect("id");
    let path = |kind: &str, file: &str| format!("/ticket/@me/{id}/{kind}/{file}");

    let get = |url: String, accept: Option<&'static str>| {
        let mut request = server.get(&url, &token);
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request.send()
    };
    for url in [
        path("preview", java),
        path("files", java),
        "/app/app.js".to_owned(),
        "/openapi.json".to_owned(),
    ] {
        let plain = get(url.clone(), None).await.expect("plain");
        assert_eq!(plain.status(), 200, "{url}");
        assert_eq!(header(&plain, "content-encoding"), None, "{url}");
        let etag = header(&plain, "etag");
        let plain = plain.bytes().await.expect("body");
        for (accept, encoding) in [
            ("gzip, deflate, br, zstd", "zstd"),
            ("gzip, deflate, br", "br"),
            ("gzip", "gzip"),
        ] {
            let response = get(url.clone(), Some(accept)).await.expect("compressed");
            assert_eq!(response.status(), 200, "{url}");
            assert_eq!(
                header(&response, "content-encoding").as_deref(),
                Some(encoding),
                "{url} for {accept}"
            );
            assert!(
                header(&response, "vary").is_some_and(|v| v.contains("Accept-Encoding")),
                "{url}"
            );
            let weak = header(&response, "etag");
            if let Some(etag) = &etag {
                assert_eq!(weak.as_deref(), Some(format!("W/{etag}").as_str()), "{url}");
                // A repeat view of the compressed form: 304.
                let again = server
                    .get(&url, &token)
                    .header("accept-encoding", accept)
                    .header("if-none-match", weak.as_deref().expect("etag"))
                    .send()
                    .await
                    .expect("repeat");
                assert_eq!(again.status(), 304, "{url}");
            }
            let wire = response.bytes().await.expect("body");
            assert!(
                wire.len() < plain.len(),
                "{url}: {} of {}",
                wire.len(),
                plain.len()
            );
            assert_eq!(
                decompress(encoding, &wire).await,
                plain,
                "{url} via {encoding}"
            );
        }
    }

    // Sent as they are: a range, the zip, an image, a tiny answer, and a
    // client that accepts no encoding of ours.
    let range = server
        .get(&path("files", java), &token)
        .header("accept-encoding", "zstd")
        .header("range", "bytes=0-99")
        .send()
        .await
        .expect("range");
    assert_eq!(range.status(), 206);
    assert_eq!(header(&range, "content-encoding"), None);
    assert_eq!(range.bytes().await.expect("bytes"), source[..100]);
    for (url, accept) in [
        (format!("/ticket/@me/{id}/download"), "zstd"),
        (path("files", png), "zstd"),
        ("/version".to_owned(), "zstd"),
        (path("files", java), "deflate, identity"),
    ] {
        let response = server
            .get(&url, &token)
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(header(&response, "content-encoding"), None, "{url}");
    }
}
