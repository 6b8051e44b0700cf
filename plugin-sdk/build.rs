//! Reads the interface version from the WIT package line, so it is written
//! in one place only.

fn main() {
    let wit = "wit/plugin.wit";
    println!("cargo:rerun-if-changed={wit}");
    let text = std::fs::read_to_string(wit).expect("read wit/plugin.wit");
    let version = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("package pd2:plugin@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/plugin.wit declares `package pd2:plugin@X.Y.Z;`");
    println!("cargo:rustc-env=PD2_INTERFACE_VERSION={version}");
}
