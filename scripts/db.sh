# Shared by run.sh and test.sh: a local SecantusDB (MongoDB wire protocol)
# installed into the project's own virtualenv. Source it; don't run it.

PD2_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PD2_VENV="$PD2_ROOT/.venv"

# Installs SecantusDB into .venv unless it is already there.
pd2_ensure_secantusdb() {
  if [ ! -x "$PD2_VENV/bin/secantusd-py" ]; then
    echo "==> installing SecantusDB into $PD2_VENV" >&2
    python3 -m venv "$PD2_VENV"
    "$PD2_VENV/bin/pip" install --quiet --disable-pip-version-check SecantusDB
  fi
}

# pd2_start_secantusdb PORT STORAGE_DIR LOG_FILE: starts the server in the
# background, waits until it accepts connections, and sets PD2_DB_PID.
pd2_start_secantusdb() {
  local port="$1" storage="$2" log="$3"
  mkdir -p "$storage"
  "$PD2_VENV/bin/secantusd-py" --host 127.0.0.1 --port "$port" \
    --storage-path "$storage" --log-level WARNING >"$log" 2>&1 &
  PD2_DB_PID=$!
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$PD2_DB_PID" 2>/dev/null; then
      echo "SecantusDB failed to start; its log ($log):" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "SecantusDB did not listen on port $port within 60 s" >&2
  return 1
}

pd2_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Stops the server started by pd2_start_secantusdb: asked to stop, then, if
# it has not within 10 s (a database that stopped answering), killed.
pd2_stop_secantusdb() {
  [ -n "${PD2_DB_PID:-}" ] || return 0
  kill "$PD2_DB_PID" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$PD2_DB_PID" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$PD2_DB_PID" 2>/dev/null || true
}
