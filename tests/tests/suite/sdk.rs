//! The SDK as a newcomer meets it: the README's example plugin, copied into
//! a folder outside this repository, builds natively (its unit tests pass)
//! and for wasm32-wasip2, and the server loads and runs the component.

use std::{path::Path, process::Command};

use pd2_ticket_tests::{
    clean_cargo_env, plugin_target_dir, server_binary, temp_dir, workspace_root,
};

/// The README's fenced block of `lang` whose first line is `first`.
fn readme_block(readme: &str, lang: &str, first: &str) -> String {
    let fence = format!("```{lang}\n");
    readme
        .split(&fence)
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(code, _)| code))
        .find(|code| code.starts_with(first))
        .unwrap_or_else(|| panic!("README has no ```{lang} block starting with {first:?}"))
        .to_owned()
}

fn cargo(dir: &Path, args: &[&str]) {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    clean_cargo_env(&mut command);
    let status = command
        .args(args)
        .current_dir(dir)
        // Shared with the suite's other plugin builds (and across runs):
        // only the first builds the dependencies.
        .env("CARGO_TARGET_DIR", plugin_target_dir())
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo {args:?} failed in {}",
        dir.display()
    );
}

#[test]
fn the_readme_plugin_builds_outside_the_repository_and_loads() {
    let sdk = workspace_root().join("plugin-sdk");
    let readme = std::fs::read_to_string(sdk.join("README.md")).expect("SDK README");
    let dir = temp_dir("sdk-outside");
    assert!(!dir.starts_with(workspace_root()), "outside the repository");

    let manifest = readme_block(&readme, "toml", "# Cargo.toml").replace(
        r#"pd2-plugin-sdk = { path = "../plugin-sdk" }"#,
        &format!(
            "pd2-plugin-sdk = {{ path = {:?} }}",
            sdk.display().to_string()
        ),
    );
    assert!(manifest.contains(&sdk.display().to_string()), "{manifest}");
    let lib = readme_block(&readme, "rust", "// src/lib.rs");
    let tests = readme_block(&readme, "rust", "#[cfg(test)]");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/lib.rs"), format!("{lib}\n{tests}")).unwrap();

    cargo(&dir, &["test", "--quiet"]);
    cargo(
        &dir,
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
    );
    let wasm = plugin_target_dir().join("wasm32-wasip2/release/max_files.wasm");
    assert!(wasm.is_file(), "{} was not built", wasm.display());

    let run = |args: &[&str]| {
        let out = Command::new(server_binary())
            .args(args)
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .output()
            .expect("pd2-ticket");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let wasm = wasm.display().to_string();
    let (code, out) = run(&["plugin", "check", &wasm]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("name:        max-files"), "{out}");
    std::fs::write(dir.join("Empty.java"), "   \n").unwrap();
    std::fs::write(dir.join("Main.java"), "class Main {}").unwrap();
    let (code, out) = run(&["plugin", "validate", &wasm, "Main.java"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["plugin", "validate", &wasm, "Empty.java"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("the file is empty"), "{out}");
}
