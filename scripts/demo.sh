#!/usr/bin/env bash
# make demo: the cookies workflow end to end on a local moto server.
# Installs the emulator if missing, starts it, bootstraps the stack, runs the worker,
# starts an execution with 10 names, prints the report and the totals, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOTO_PORT="${MOTO_PORT:-5000}"
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export WORKER_STACK="${WORKER_STACK:-taskbridge}"
export WORKER_METRICS_ADDR="${WORKER_METRICS_ADDR:-127.0.0.1:9090}"
export WORKER_LOG_FORMAT="${WORKER_LOG_FORMAT:-console}"
export WORKER_POLL_WAIT="${WORKER_POLL_WAIT:-5s}"

worker_pid=""
cleanup() {
  if [ -n "$worker_pid" ]; then kill -TERM "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null || true; fi
  scripts/emulator.sh stop
}
trap cleanup EXIT

scripts/emulator.sh start
bin/worker bootstrap
mkdir -p .moto
bin/worker run >.moto/worker.log 2>&1 &
worker_pid=$!

# worker_died stops the demo at once when the worker has exited (a port taken, a bad
# setting), with the end of its log, instead of waiting for the execution's timeout.
worker_died() {
  local rc=0
  wait "$worker_pid" || rc=$?
  worker_pid=""
  echo "demo: the worker exited (status $rc); the end of .moto/worker.log:" >&2
  tail -n 20 .moto/worker.log >&2
  echo "demo: WORKER_METRICS_ADDR ($WORKER_METRICS_ADDR) taken? set another, e.g. WORKER_METRICS_ADDR=127.0.0.1:9191 make demo" >&2
  exit 1
}
for _ in $(seq 1 150); do # up to 30 s for /healthz
  kill -0 "$worker_pid" 2>/dev/null || worker_died
  bin/worker healthcheck >/dev/null 2>&1 && break
  sleep 0.2
done
kill -0 "$worker_pid" 2>/dev/null || worker_died
echo "worker running (pid $worker_pid, log .moto/worker.log, metrics http://$WORKER_METRICS_ADDR/metrics)"
bin/worker start --count "${COUNT:-10}" --wait --report &
start_pid=$!
while kill -0 "$start_pid" 2>/dev/null; do
  if ! kill -0 "$worker_pid" 2>/dev/null; then
    kill "$start_pid" 2>/dev/null || true
    worker_died
  fi
  sleep 1
done
wait "$start_pid"
