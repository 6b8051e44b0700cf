#!/usr/bin/env bash
# Quick start: builds the plugins and the server, and runs it with ./config.toml.
# Without PD2_MONGODB__URI it provisions a local SecantusDB in .venv, keeps
# its data in .data/db, and stops it again when the server exits.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/db.sh

# The quick start builds the binary in the tests' profile (dev, with the
# code generator and the hot libraries optimised: see Cargo.toml), so the
# first run takes about half a release build and `./test.sh` after it
# reuses most of it (cranelift among it; a few dozen crates, tokio and the
# server among them, are built again with the test targets' features);
# production builds `--release` (docs/operations.md). The
# plugins build beside it while the database is provisioned.
# A run stopped by a signal exits through its EXIT trap too, so the
# database and builds it started do not outlive it.
trap 'exit 130' INT TERM
plugins_log="$(mktemp -t pd2-plugins.XXXXXX)"
plugins/build.sh >"$plugins_log" 2>&1 &
plugins=$!
cargo build -p pd2-ticket &
server=$!
trap 'kill "$plugins" "$server" 2>/dev/null || true; rm -f "$plugins_log"' EXIT

if [ -z "${PD2_MONGODB__URI:-}" ]; then
  pd2_ensure_secantusdb
  port="${PD2_DEV_DB_PORT:-27017}"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "==> using the database already listening on 127.0.0.1:$port" >&2
  else
    mkdir -p .data
    pd2_start_secantusdb "$port" .data/db .data/secantusdb.log
    trap 'kill "$plugins" "$server" 2>/dev/null || true; pd2_stop_secantusdb; rm -f "$plugins_log"' EXIT
    echo "==> SecantusDB on 127.0.0.1:$port (data in .data/db)" >&2
  fi
  export PD2_MONGODB__URI="mongodb://127.0.0.1:$port"
fi

if ! wait "$plugins"; then
  echo "==> building the plugins failed:" >&2
  cat "$plugins_log" >&2
  exit 1
fi
cat "$plugins_log" >&2
wait "$server"
./target/debug/pd2-ticket "${@:-serve}"
