#!/usr/bin/env bash
# Runs every test: unit tests, the plugins' native tests, and the black-box
# tests, which start the real binary against a real SecantusDB (installed
# into .venv on first use) with real plugins in wasmtime.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/db.sh

# Everything this run starts in the background is stopped on the way out,
# and a run stopped by a signal exits through the EXIT trap too.
wasm="" side="" storage="" logs=()
# Each process is stopped before its children are listed, so none starts
# another one unseen, then killed (and continued, to receive it).
kill_tree() {
  local child
  kill -STOP "$1" 2>/dev/null || return 0
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null || true
  kill -CONT "$1" 2>/dev/null || true
}
cleanup() {
  # A second Ctrl-C must not cut the cleanup short.
  trap '' INT TERM
  for job in $wasm $side; do kill_tree "$job"; done
  pd2_stop_secantusdb
  rm -rf ${storage:+"$storage"} ${logs[@]+"${logs[@]}"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pd2_ensure_secantusdb
# The OpenAPI test validates the served document with the reference
# validator.
if [ ! -x "$PD2_VENV/bin/openapi-spec-validator" ]; then
  "$PD2_VENV/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator
fi
export OPENAPI_SPEC_VALIDATOR="$PD2_VENV/bin/openapi-spec-validator"
export SECANTUSD="$PD2_VENV/bin/secantusd-py"

# The web app's browser tests drive Debian's Chromium with playwright-core
# (from the npm registry; it never downloads a browser of its own).
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian's chromium for the browser tests" >&2
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get install -y -q chromium >/dev/null \
    || { "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q chromium >/dev/null; }
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The wasm builds (the first-party plugins, and the misbehaving fixtures
# the suite loads, in the plugins' target dir and profile so shared
# dependencies build once) run beside the host build: its last minutes
# compile one crate at a time and leave a core idle.
wasm_log="$(mktemp -t pd2-wasm.XXXXXX)"
logs+=("$wasm_log")
(
  plugins/build.sh \
    && CARGO_TARGET_DIR="$PWD/plugins/target" plugins/build.sh tests/fixtures tests/fixtures/dist
) >"$wasm_log" 2>&1 &
wasm=$!
# Every test target, and the plain binaries the suite runs (the server,
# `pd2`) in the same invocation: built side by side, not by the first test
# that needs them while the others wait.
cargo build --workspace --all-targets --quiet
wasm_status=0
wait "$wasm" || wasm_status=$?
wasm=""
if [ "$wasm_status" -ne 0 ]; then
  echo "==> building the plugins failed:" >&2
  cat "$wasm_log" >&2
  exit 1
fi
# Built: the suite runs the binaries and plugins as they are
# (tests/src/lib.rs) instead of asking cargo for each again; unless cargo
# options were given (`./test.sh --release`, features), which the build
# above did not use: then the suite builds what it runs itself. Test
# names after `--` are fine.
if [ "$#" -eq 0 ] || [ "$1" = "--" ]; then
  export TEST_PREBUILT=1
fi

# The database, started only now: idle, it still takes a few percent of a
# core, which the builds above can use.
if [ -z "${TEST_MONGODB_URI:-}" ]; then
  port="$(pd2_free_port)"
  storage="$(mktemp -d -t pd2-test-db.XXXXXX)"
  pd2_start_secantusdb "$port" "$storage/db" "$storage/secantusdb.log"
  export TEST_MONGODB_URI="mongodb://127.0.0.1:$port"
fi

# While the suite runs (it mostly waits on servers, the database and the
# browser), the plugins' own native unit tests (their workspace is
# separate: it builds for wasm32-wasip2) and the SDK's documentation
# (what plugin authors read: no broken links) build beside it. The docs go
# to the main target dir, where the build above left what they need (the
# SDK's macros, built with this workspace's features); cargo holds a
# target dir's lock only while building, not while tests run.
side_log="$(mktemp -t pd2-side.XXXXXX)"
logs+=("$side_log")
(
  (cd plugins && cargo test --workspace --quiet) \
    && RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet -p pd2-plugin-sdk
) >"$side_log" 2>&1 &
side=$!
# Four tests at a time: each mostly waits on its server, the database or
# the browser (on 2 cores a run of the suite with three keeps them about
# half busy; the database, one Python process, is what they queue for), so
# the suite is quicker than with one per core: warm, 127 s with three,
# 104 s with four, 105 s with five. Every test waits for conditions, not
# for fixed short times (CONTRIBUTING.md).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
status=0
cargo test --workspace "$@" || status=$?
side_status=0
wait "$side" || side_status=$?
side=""
if [ "$side_status" -ne 0 ]; then
  echo "==> the plugins' unit tests or the SDK's docs failed:" >&2
  cat "$side_log" >&2
  status=1
fi
exit "$status"
