//! Crash points for the tests that kill the server between two steps of a
//! write (`tests/tests/suite/versions.rs`): with `TEST_PD2_CRASH_AT` naming a
//! point, the process aborts there, as a power cut would stop it. Read
//! once; unset (always, outside those tests) it costs a comparison. (Not
//! `PD2_…`: that prefix is the configuration's, which refuses unknown keys.)

use std::sync::OnceLock;

pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("TEST_PD2_CRASH_AT").ok());
    if at.as_deref() == Some(name) {
        eprintln!("TEST_PD2_CRASH_AT={name}: aborting");
        std::process::abort();
    }
}
