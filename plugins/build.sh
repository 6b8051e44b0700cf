#!/usr/bin/env bash
# Builds every plugin crate under plugins/ for wasm32-wasip2 and copies the
# components to plugins/dist/<name>.wasm, where the server loads them.
#   plugins/build.sh                 all first-party plugins
#   plugins/build.sh DIR OUT         every crate of the workspace in DIR into OUT
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(cd "${1:-$here}" && pwd)"
out="${2:-$here/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "==> adding the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2 >&2
fi

cd "$workspace"
cargo build --quiet --target wasm32-wasip2 --release --workspace
# Where cargo put them: CARGO_TARGET_DIR when set (e.g. a shared CI cache).
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out"
built=0
for manifest in */Cargo.toml; do
  name="$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)"
  artifact="$target/wasm32-wasip2/release/${name//-/_}.wasm"
  # Library crates (shared code) produce no component.
  [ -f "$artifact" ] || continue
  built=$((built + 1))
  # Copy then rename: the server never sees a half-written file.
  cp "$artifact" "$out/.$name.wasm.tmp"
  mv "$out/.$name.wasm.tmp" "$out/$name.wasm"
  echo "$out/$name.wasm" >&2
done
if [ "$built" -eq 0 ]; then
  echo "plugins/build.sh: no component found under $target/wasm32-wasip2/release" >&2
  exit 1
fi
