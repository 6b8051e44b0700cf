//! The first-party plugins through the real server, with the repository's
//! default `config.toml` (its `[plugins.settings.*]` tables).

use pd2_ticket_tests::{
    Server, ServerOptions, Stored, first_party_plugins, json, upload, workspace_root,
};
use serde_json::Value;

async fn default_server() -> Server {
    Server::start_with(
        ServerOptions::default()
            .env("PD2_CONFIG", workspace_root().join("config.toml").display())
            .env("PD2_PLUGINS__DIR", first_party_plugins().display()),
    )
    .await
}

fn rejection<'a>(body: &'a Value, file: &str) -> &'a Value {
    body["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"] == file)
        .unwrap_or_else(|| panic!("no rejection for {file}: {body}"))
}

#[tokio::test]
async fn default_policy_names_rule_and_file_and_stores_nothing() {
    let server = default_server().await;
    let t = server.token("1");
    let elf = b"\x7fELF\x02\x01\x01\x00rest of a compiled program";
    let (status, body) = json(
        upload(
            &server,
            &t,
            &[
                ("src/Main.java", b"class Main {}"),
                ("build/Main.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x3d"),
                ("lib/Tool.java", elf),
                ("data/big.csv", &vec![b'1'; 300 * 1024]),
            ],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"], "File rejected by policy");
    assert_eq!(body["rejections"].as_array().unwrap().len(), 3, "{body}");
    let class = rejection(&body, "build/Main.class");
    assert_eq!(class["plugin"], "file-policy");
    assert!(
        class["message"]
            .as_str()
            .unwrap()
            .contains("denied_extensions"),
        "{class}"
    );
    let disguised = rejection(&body, "lib/Tool.java")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        disguised.contains("ELF") && disguised.contains("reject_disguised_binaries"),
        "{disguised}"
    );
    let csv = rejection(&body, "data/big.csv")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(csv.contains("max_size_by_extension"), "{csv}");
    assert_eq!(
        server
            .wait_until_empty(std::time::Duration::from_secs(10))
            .await,
        Stored::default()
    );

    let (status, _) = json(
        upload(
            &server,
            &t,
            &[("src/Main.java", b"class Main {}"), ("Makefile", b"all:")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
}
