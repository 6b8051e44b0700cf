//! Embeds the web app: every file under `web/` becomes an entry of the
//! asset table (`api::web`), so adding a module is adding a file.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

fn main() {
    interface_version();
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    // A directory is scanned whole: any file added, changed or removed.
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    collect(&web, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for file in files {
        let name = file
            .strip_prefix(&web)
            .expect("under web/")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        writeln!(
            table,
            "    ({name:?}, include_bytes!({:?})),",
            file.display().to_string()
        )
        .expect("writing to a String");
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("web_assets.rs");
    std::fs::write(out, table).expect("writing the asset table");
}

/// Files below `dir`, skipping hidden ones (editor and OS droppings).
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// The plugin interface's version, from the WIT package line the SDK
/// reads too (`plugin-sdk/build.rs`): the host needs only this of the SDK,
/// and depending on the SDK would build its guest bindings (wit-bindgen and
/// a second wasmparser) into every server build.
fn interface_version() {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/wit/plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit).expect("read plugin-sdk/wit/plugin.wit");
    let version = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("package pd2:plugin@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("plugin.wit declares `package pd2:plugin@X.Y.Z;`");
    // Not `PD2_…`: cargo sets it for the test binaries too, and the
    // configuration refuses unknown `PD2_` variables.
    println!("cargo:rustc-env=PLUGIN_INTERFACE_VERSION={version}");
}
