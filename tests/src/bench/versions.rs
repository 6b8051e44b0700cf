//! `bench --versions`: what versions cost (issue 25). Storage of 10
//! versions of a real 40-file folder where 2 files change each time;
//! upload time of a version against a fresh ticket; a file diff's latency
//! for TinyXML-2's 3,047-line source with 50 changed lines. Shipped
//! config, first-party plugins.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use pd2_ticket_tests::{DbServer, Server, create_ticket, project_files};

use super::shapes::shipped_with;

type Files = Vec<(String, Vec<u8>)>;

fn refs(files: &Files) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect()
}

async fn post_version(server: &Server, token: &str, id: &str, files: &Files) -> Duration {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
        );
    }
    let started = Instant::now();
    let response = server
        .post(&format!("/ticket/@me/{id}/versions"), token)
        .multipart(form)
        .send()
        .await
        .expect("version");
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    started.elapsed()
}

/// GridFS files and their bytes.
async fn stored_bytes(server: &Server) -> (u64, u64) {
    let files = server.mongo().await.collection::<Document>("files.files");
    let docs: Vec<Document> = files
        .find(doc! {})
        .projection(doc! { "length": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("files");
    let bytes = docs
        .iter()
        .map(|d| d.get_i64("length").unwrap_or(0) as u64)
        .sum();
    (docs.len() as u64, bytes)
}

/// `files` with the text files at `which` given one more line.
fn edited(files: &Files, which: &[usize], round: usize) -> Files {
    let mut out = files.clone();
    for &i in which {
        out[i]
            .1
            .extend(format!("\n// round {round}: fixed\n").into_bytes());
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub async fn versions(db: &DbServer) {
    let server = shipped_with(db, "bench-versions", 10, &[]).await;
    let token = server.token("1");
    // A real 40-file folder: the first 40 files of the design-patterns
    // project (sources, POMs, READMEs, PNG diagrams).
    let folder: Files = project_files("java-design-patterns")
        .into_iter()
        .take(40)
        .collect();
    let folder_bytes: u64 = folder.iter().map(|(_, b)| b.len() as u64).sum();
    let text: Vec<usize> = folder
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n.ends_with(".java") || n.ends_with(".md"))
        .map(|(i, _)| i)
        .collect();
    let created = create_ticket(&server, &token, &refs(&folder), None).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let mut current = folder.clone();
    let mut changed_bytes = 0u64;
    let mut version_times = Vec::new();
    for round in 1..10 {
        let which = [
            text[(2 * round) % text.len()],
            text[(2 * round + 1) % text.len()],
        ];
        current = edited(&current, &which, round);
        changed_bytes += which
            .iter()
            .map(|&i| current[i].1.len() as u64)
            .sum::<u64>();
        version_times.push(post_version(&server, &token, &id, &current).await);
    }
    let (files, bytes) = stored_bytes(&server).await;
    println!("\n## Versions (issue 25; shipped config, first-party plugins)\n");
    println!(
        "10 versions of a 40-file folder ({:.1} MB, the first 40 files of `java-design-patterns`), 2 files changed each time:\n",
        folder_bytes as f64 / 1e6
    );
    println!("| | GridFS files | bytes stored |");
    println!("|---|---|---|");
    println!("| one folder | {} | {folder_bytes} |", folder.len());
    println!(
        "| one folder + the 18 changed files | {} | {} |",
        folder.len() + 18,
        folder_bytes + changed_bytes
    );
    println!("| **stored for 10 versions** | **{files}** | **{bytes}** |");
    println!(
        "| 10 separate uploads without sharing | {} | {} |\n",
        folder.len() * 10,
        folder_bytes * 10
    );

    // Upload times: a version (2 files new), a fresh ticket of the same
    // folder (every content stored already), a fresh ticket of new bytes.
    let mut fresh_same = Vec::new();
    let mut fresh_new = Vec::new();
    let mut more_versions = Vec::new();
    for round in 10..17 {
        current = edited(
            &current,
            &[text[round % text.len()], text[(round + 3) % text.len()]],
            round,
        );
        more_versions.push(post_version(&server, &token, &id, &current).await);
        let started = Instant::now();
        create_ticket(&server, &token, &refs(&current), None).await;
        fresh_same.push(started.elapsed());
        let unique: Files = current
            .iter()
            .map(|(n, b)| {
                let mut b = b.clone();
                b.extend(format!("\n{round}-{n}\n").into_bytes());
                (n.clone(), b)
            })
            .collect();
        let started = Instant::now();
        create_ticket(&server, &token, &refs(&unique), None).await;
        fresh_new.push(started.elapsed());
    }
    println!("| upload of the 40-file folder | median ms (7 runs) |");
    println!("|---|---|");
    println!(
        "| a new version (2 files changed) | {:.1} |",
        ms(median(more_versions))
    );
    println!(
        "| a new ticket of the same folder (all stored already) | {:.1} |",
        ms(median(fresh_same))
    );
    println!(
        "| a new ticket of new bytes | {:.1} |\n",
        ms(median(fresh_new))
    );

    // A file diff: the 3,047-line source with 50 lines changed.
    let cpp = project_files("tinyxml2");
    let (name, source) = cpp
        .iter()
        .find(|(n, _)| n.ends_with(".cpp"))
        .expect("tinyxml2.cpp");
    let text = String::from_utf8_lossy(source).into_owned();
    let lines = text.split_inclusive('\n').count();
    let step = lines / 50;
    let edited: String = text
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            if i % step == 3 && i / step < 50 {
                format!("// changed {i}\r\n")
            } else {
                l.to_owned()
            }
        })
        .collect();
    let t = create_ticket(&server, &token, &[(name.as_str(), source)], None).await;
    let cpp_id = t["id"].as_str().expect("id").to_owned();
    post_version(
        &server,
        &token,
        &cpp_id,
        &vec![(name.clone(), edited.into_bytes())],
    )
    .await;
    let mut file_times = Vec::new();
    let mut list_times = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let r = server
            .get(&format!("/ticket/@me/{cpp_id}/diff/{name}"), &token)
            .send()
            .await
            .expect("diff");
        let _ = r.bytes().await;
        file_times.push(started.elapsed());
        let started = Instant::now();
        let r = server
            .get(&format!("/ticket/@me/{cpp_id}/diff"), &token)
            .send()
            .await
            .expect("diff");
        let _ = r.bytes().await;
        list_times.push(started.elapsed());
    }
    file_times.sort();
    list_times.sort();
    println!("| diff of `{name}` ({lines} lines, 50 changed), 30 requests | p50 ms | max ms |");
    println!("|---|---|---|");
    println!(
        "| `GET …/diff/{name}` (unified text) | {:.1} | {:.1} |",
        ms(file_times[15]),
        ms(file_times[29])
    );
    println!(
        "| `GET …/diff` (the listing, lines counted) | {:.1} | {:.1} |",
        ms(list_times[15]),
        ms(list_times[29])
    );
}
