#!/usr/bin/env bash
# `make prefect-up`: start a local Prefect server and serve the deployments (flows/serve.py), both in the background.
# Settings come from prefect.toml (127.0.0.1:4200, SQLite under runs/prefect, analytics off). Logs and pid
# files go to runs/prefect/; each process leads its own session so scripts/prefect_down.sh stops it with its children.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
RUN_DIR=runs/prefect
mkdir -p "$RUN_DIR"
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false

alive() { [[ -f "$RUN_DIR/$1.pid" ]] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

wait_for() {  # name, seconds, test command...: poll until the test passes; fail with the log's tail if the process dies
  local name=$1 seconds=$2
  shift 2
  for _ in $(seq $((seconds * 2))); do
    "$@" && return 0
    if ! alive "$name"; then
      echo "$name exited; last lines of $RUN_DIR/$name.log:" >&2
      tail -n 30 "$RUN_DIR/$name.log" >&2
      rm -f "$RUN_DIR/$name.pid"
      return 1
    fi
    sleep 0.5
  done
  echo "$name not ready after $seconds s; see $RUN_DIR/$name.log" >&2
  return 1
}

API=$("$VENV/bin/python" -c 'from prefect.settings import PREFECT_API_URL; print(PREFECT_API_URL.value())')
healthy() { "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$API/health" 2>/dev/null; }

if alive server; then
  echo "Prefect server already running (pid $(cat "$RUN_DIR/server.pid"))"
else
  setsid "$VENV/bin/prefect" server start >"$RUN_DIR/server.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/server.pid"
fi
wait_for server 120 healthy

if alive serve; then
  echo "deployments already served (pid $(cat "$RUN_DIR/serve.pid"))"
else
  setsid "$VENV/bin/python" -m flows.serve >"$RUN_DIR/serve.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/serve.pid"
fi
wait_for serve 180 grep -q "being served" "$RUN_DIR/serve.log"

echo "Prefect UI: ${API%/api} (deployments: ${API%/api}/deployments); logs in $RUN_DIR/; stop with: make prefect-down"
