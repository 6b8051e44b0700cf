//! Every black-box test, as one test binary: one link instead of one per
//! file, and the tests of all files share the test threads, so a slow file
//! no longer leaves a thread idle while the next file waits its turn
//! (BENCHMARKS.md, "Build times"). One module per concern; run one with
//! `cargo test -p pd2-ticket-tests --test suite versions::`.
//!
//! libtest starts tests in the order of their names: the web app's, with
//! the browser test, the longest (~30 s), is `app`, so it starts among the
//! first instead of last, when the whole suite would wait for it alone.

mod api_docs;
mod app;
mod auth;
mod cli;
mod comments;
mod compression;
mod connections;
mod database;
mod docs_links;
mod files;
mod first_party;
mod journal;
mod operations;
mod plugin_host;
mod plugins;
mod reading_room;
mod sdk;
mod tickets;
mod upload_shapes;
mod uploads;
mod versions;
