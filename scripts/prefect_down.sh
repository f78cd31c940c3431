#!/usr/bin/env bash
# `make prefect-down`: stop what scripts/prefect_up.sh started (deployments first: they pause their schedules
# on the server as they shut down), each with its whole process group, and remove the pid files.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=runs/prefect

stop() {  # name: TERM the process group led by the pid in runs/prefect/<name>.pid, KILL it after 15 s
  local file="$RUN_DIR/$1.pid" pid
  if [[ ! -f "$file" ]]; then
    echo "$1: not running (no $file)"
    return
  fi
  pid=$(cat "$file")
  if kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 -- "-$pid" 2>/dev/null; then
      echo "$1 (pid $pid) did not stop on TERM; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    echo "$1 (pid $pid) stopped"
  else
    echo "$1 (pid $pid) was not running"
  fi
  rm -f "$file"
}

stop serve
stop server
