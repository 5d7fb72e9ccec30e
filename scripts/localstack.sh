#!/usr/bin/env bash
# LocalStack (community 4.14.0, from PyPI) on the host, as a second emulator beside moto.
#   scripts/localstack.sh install   venv .tools/localstack on Python >= 3.13 with tools/localstack/requirements.txt
#   scripts/localstack.sh start     start it on 127.0.0.1:$LOCALSTACK_PORT (default 4566), state in a temp dir
#   scripts/localstack.sh stop      stop what `start` started
#   scripts/localstack.sh test      install, start on a free port, run the end-to-end cases LocalStack
#                                   supports (TESTS, a go test -run regex), stop; what `make test-localstack` runs
#
# It runs on loopback only and calls nothing outside: no Docker, no DNS server, no
# telemetry, no certificate download, no license or catalog lookup (LocalStack's
# platform API is pointed at a closed loopback port). Only the first `install`
# reaches PyPI. A missing Python >= 3.13 is a failure with CI=true and a skip
# otherwise (LOCALSTACK_PYTHON names one explicitly). 3.13, not 3.12: LocalStack
# 4.14.0's S3, SQS, SNS, EventBridge and Step Functions providers import
# warnings.deprecated (new in 3.13); on 3.12 it starts, reports them available, and
# fails to load each on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=.tools/localstack
REQS=tools/localstack/requirements.txt
RUN=.tools/localstack-run # pid and state folder of `start`
START=$SECONDS

# The end-to-end cases LocalStack supports (docs/development.md "LocalStack" lists them): cookies,
# odd names, parallel executions, a hostile producer, bad input, the finisher, the
# restarts (SIGKILL, SIGTERM, a stop while AWS is slow, messages put during a restart),
# the callback answers where the emulators and AWS differ,
# the batch up to START_FAILED, a rule that starts a state machine, what LocalStack lacks
# (RedriveExecution, target dead-letter queues: pinned), and the callback,
# publisher and emulator integration tests.
TESTS=${TESTS:-'^(TestE2ECookiesFiftyPeople|TestE2EAwkwardNamesStayUnderThePrefix|TestE2ETenExecutionsAtOnce|TestE2EHostileProducerCannotRewriteAnotherExecution|TestE2EBadInputGetsItsDefinedFate|TestE2EFinisherCompletesATaskFromOneEvent|TestE2ECallbackAnswersOfTheEmulator|TestE2ESigkillMidExecutionThenRestart|TestE2ESigtermWithJobsInFlightExitsZeroAndLosesNothing|TestE2ERestartStrandsNoMessage|TestE2EStopFitsTheShutdownTimeoutWhenAWSIsSlow|TestE2EDeadLettersInspectedAndRedriven|TestE2ELocalStack.*|TestIntegrationCallbacksAgainstTheEmulator|TestIntegrationPublishedEventsParseBackFromTheQueue|TestEmulatorAnswers)$'}
PACKAGES=${PACKAGES:-./cmd/worker/ ./internal/callback/ ./internal/event/ ./internal/awstest/}

say() { printf 'localstack [%3ds] %s\n' $((SECONDS - START)) "$*" >&2; }
missing() {
  if [ "${CI:-}" = true ]; then
    echo "localstack: $* (CI=true, so this fails)" >&2
    exit 1
  fi
  echo "localstack: skipped: $*" >&2
  exit 0
}

# python313 prints a Python >= 3.13 interpreter: $LOCALSTACK_PYTHON, python3.13 (the
# version the pins were verified with) then later ones on PATH, python3, then pyenv's
# versions, 3.13 first. A pyenv shim on PATH that is not the active version exits
# non-zero, so every candidate is run, not only looked up.
python313() {
  local c
  local -a cands=()
  [ -n "${LOCALSTACK_PYTHON:-}" ] && cands+=("$LOCALSTACK_PYTHON")
  cands+=(python3.13 python3.14 python3.15 python3)
  local pyroot=${PYENV_ROOT:-$HOME/.pyenv}
  command -v pyenv >/dev/null 2>&1 && pyroot=$(pyenv root)
  for c in $(ls -d "$pyroot"/versions/3.13.* 2>/dev/null | sort -rV) $(ls -d "$pyroot"/versions/3.* 2>/dev/null | sort -V); do
    cands+=("$c/bin/python3")
  done
  for c in "${cands[@]}"; do
    if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 13))' >/dev/null 2>&1; then
      "$c" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}

install() {
  local stamp=$VENV/.requirements
  if [ -x "$VENV/bin/python" ] && cmp -s "$REQS" "$stamp" &&
    "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
    return 0
  fi
  local py
  py=$(python313) || missing "no Python >= 3.13 found (tried \$LOCALSTACK_PYTHON, python3.13 and later, python3 and pyenv's versions); LocalStack 4.14.0 needs one"
  say "installing LocalStack into $VENV with $py ($("$py" --version 2>&1))"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$stamp"
}

free_port() { "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# launch PORT STATE starts LocalStack in its own process group (setsid) with its
# state, temp files and log under STATE, and prints its pid. It runs through
# tools/localstack/launch.py, which fixes the heartbeat race LocalStack's Step
# Functions shares with moto (tools/moto/server.py), then starts the runtime as
# `python -m localstack.runtime.main` would.
launch() {
  local port=$1 state=$2
  mkdir -p "$state/tmp" "$state/fs" "$state/config"
  env -i PATH="$PATH" HOME="$state" TMPDIR="$state/tmp" LANG=C.UTF-8 \
    OVERRIDE_IN_DOCKER=0 \
    GATEWAY_SERVER=hypercorn \
    GATEWAY_LISTEN="127.0.0.1:$port" \
    LOCALSTACK_HOST="127.0.0.1:$port" \
    SQS_ENDPOINT_STRATEGY=path \
    DNS_ADDRESS=0 \
    SERVICES=s3,sqs,sns,events,stepfunctions,sts,iam \
    EAGER_SERVICE_LOADING=1 \
    PERSISTENCE=0 \
    FILESYSTEM_ROOT="$state/fs" \
    CONFIG_DIR="$state/config" \
    DISABLE_EVENTS=1 \
    LOCALSTACK_TELEMETRY=0 \
    DO_NOT_TRACK=1 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    API_ENDPOINT=http://127.0.0.1:9/v1 \
    ANALYTICS_API=http://127.0.0.1:9/v1 \
    LOCALSTACK_AUTH_TOKEN= \
    setsid "$ROOT/$VENV/bin/python" "$ROOT/tools/localstack/launch.py" >"$state/localstack.log" 2>&1 </dev/null &
  echo $!
}

wait_ready() {
  local port=$1 pid=$2 log=$3 health
  for _ in $(seq 1 240); do
    health=$(curl -fsS "http://127.0.0.1:$port/_localstack/health" 2>/dev/null || true)
    if grep -q '"stepfunctions": "running"' <<<"$health"; then
      return 0
    fi
    if grep -q '": "error"' <<<"$health"; then
      echo "LocalStack failed to load a service: $health; its log:" >&2
      tail -n 60 "$log" >&2
      return 1
    fi
    kill -0 "$pid" 2>/dev/null || { echo "LocalStack exited at start; its log:" >&2; tail -n 40 "$log" >&2; return 1; }
    sleep 0.5
  done
  echo "LocalStack not ready after 120 s; its log:" >&2
  tail -n 40 "$log" >&2
  return 1
}

# halt PID stops a LocalStack process group. LocalStack does not reliably stop on
# SIGTERM (it logs it and starts a shutdown that can hang), so a SIGTERM gets 3 s
# before SIGKILL of the whole group (any child it started lives in it).
halt() {
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 1 30); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

start() {
  install
  if [ -f "$RUN/pid" ] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
    echo "LocalStack already running (pid $(cat "$RUN/pid")) on http://127.0.0.1:$(cat "$RUN/port")"
    return 0
  fi
  local port=${LOCALSTACK_PORT:-4566} state pid
  state=$(mktemp -d "${TMPDIR:-/tmp}/localstack.XXXXXX")
  pid=$(launch "$port" "$state")
  mkdir -p "$RUN"
  echo "$pid" >"$RUN/pid"
  echo "$port" >"$RUN/port"
  echo "$state" >"$RUN/state"
  wait_ready "$port" "$pid" "$state/localstack.log" || { stop; exit 1; }
  echo "LocalStack ready on http://127.0.0.1:$port (log $state/localstack.log)"
  echo "  e.g. AWS_ENDPOINT_URL=http://127.0.0.1:$port bin/worker bootstrap --glue-optional"
}

stop() {
  [ -f "$RUN/pid" ] || return 0
  halt "$(cat "$RUN/pid")"
  rm -rf "$(cat "$RUN/state")"
  rm -rf "$RUN"
}

test_() {
  install
  local port state pid rc=0
  port=$(free_port)
  state=$(mktemp -d "${TMPDIR:-/tmp}/localstack.XXXXXX")
  say "starting LocalStack on 127.0.0.1:$port (state $state)"
  pid=$(launch "$port" "$state")
  # shellcheck disable=SC2064 # expand now: these are this run's
  trap "halt $pid; if [ -z \"\${KEEP:-}\" ]; then rm -rf '$state'; else echo 'kept $state' >&2; fi" EXIT
  wait_ready "$port" "$pid" "$state/localstack.log"
  say "ready; go test -run '$TESTS' $PACKAGES"
  # shellcheck disable=SC2086 # PACKAGES is a list
  TASKBRIDGE_TEST_EMULATOR=localstack TASKBRIDGE_TEST_ENDPOINT="http://127.0.0.1:$port" \
    TASKBRIDGE_TEST_LOCALSTACK_LOG="$state/localstack.log" \
    go test -race -count=1 -timeout 20m -tags localstack -run "$TESTS" ${GOTESTFLAGS:-} $PACKAGES || rc=$?
  if [ $rc -ne 0 ]; then
    echo "LocalStack log (last 60 lines of $state/localstack.log):" >&2
    tail -n 60 "$state/localstack.log" >&2
  fi
  say "done (exit $rc)"
  return $rc
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  test) test_ ;;
  *) echo "usage: $0 install|start|stop|test" >&2; exit 2 ;;
esac
