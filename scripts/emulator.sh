#!/usr/bin/env bash
# The local AWS emulator (moto server) for the demo and for manual runs.
#   scripts/emulator.sh install   create .venv with the pinned moto (tools/requirements.txt)
#   scripts/emulator.sh start     start it on 127.0.0.1:$MOTO_PORT (default 5000), Step Functions execution on
#   scripts/emulator.sh stop      stop the server this script started
# Tests do not need `start`: internal/awstest starts a server per test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${MOTO_PORT:-5000}"
VENV=.venv
STATE=.moto

install() {
  if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/pip" freeze 2>/dev/null | grep -xF "$(grep -v '^#' tools/requirements.txt | sed 's/\[server\]//')" >/dev/null; then
    return 0
  fi
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt
}

start() {
  install
  mkdir -p "$STATE"
  if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    echo "emulator already running (pid $(cat "$STATE/pid")) on port $PORT"
  else
    # moto_server with one race of its Step Functions heartbeats fixed (see the file).
    "$VENV/bin/python3" tools/moto/server.py -H 127.0.0.1 -p "$PORT" >"$STATE/moto.log" 2>&1 &
    echo $! >"$STATE/pid"
  fi
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$PORT/moto-api/data.json" >/dev/null 2>&1; then
      curl -fsS -X POST "http://127.0.0.1:$PORT/moto-api/config" \
        -H 'Content-Type: application/json' \
        -d '{"stepfunctions":{"execute_state_machine":true}}' >/dev/null
      echo "emulator ready on http://127.0.0.1:$PORT (log $STATE/moto.log)"
      return 0
    fi
    sleep 0.2
  done
  echo "emulator did not start; see $STATE/moto.log" >&2
  exit 1
}

stop() {
  if [ -f "$STATE/pid" ]; then
    kill "$(cat "$STATE/pid")" 2>/dev/null || true
    rm -f "$STATE/pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
