#!/usr/bin/env bash
# make test: go vet, every package's tests with -race, then cmd/worker's end-to-end
# tests in E2E_SHARDS processes at once (default 2).
#
# The end-to-end tests are most of the run, and most of their time is spent waiting
# on the emulator's clocks (visibility timeouts, batch windows, long polls), so
# shards overlap well even on 2 cores. Each shard is its own test process with its
# own moto server (internal/awstest) and worker build. The tests of one file always
# share a shard: a file's tests share scripts and look for their own processes by
# name. Files with a build tag (chaos, soak, fleet, localstack) are not part of it.
#   E2E_SHARDS=1 scripts/test.sh   runs them one after another, as before
#   TEST_TIMEOUT=30m               the timeout of each go test process
set -euo pipefail
cd "$(dirname "$0")/.."
shards=${E2E_SHARDS:-2}
timeout=${TEST_TIMEOUT:-30m}
e2e=./cmd/worker

go vet ./...
mapfile -t pkgs < <(go list ./... | grep -vx "$(go list "$e2e")")
rc=0
# A failure here still lets the end-to-end shards run: one run reports everything.
go test -race -count=1 -timeout "$timeout" "${pkgs[@]}" || rc=1

# Every test of the package, then each one's file: shard = the file's turn.
mapfile -t listed < <(go test -race -list '.*' "$e2e" | grep -E '^(Test|Example|Fuzz)')
declare -A shard_of_file shard_of_test
n=0
for f in $(grep -L '^//go:build' cmd/worker/*_test.go | sort); do
  shard_of_file[$f]=$((n % shards))
  n=$((n + 1))
done
for name in "${listed[@]}"; do
  file=$(grep -lE "^func ${name}\(" cmd/worker/*_test.go | head -n1 || true)
  shard_of_test[$name]=${shard_of_file[$file]:-0}
done

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
for ((i = 0; i < shards; i++)); do
  names=()
  for name in "${listed[@]}"; do
    [ "${shard_of_test[$name]}" = "$i" ] && names+=("$name")
  done
  [ ${#names[@]} -gt 0 ] || continue
  regex="^($(IFS='|'; echo "${names[*]}"))\$"
  echo "e2e shard $((i + 1))/$shards: ${#names[@]} tests"
  go test -race -count=1 -timeout "$timeout" -run "$regex" "$e2e" >"$logs/shard$i.log" 2>&1 &
  pids+=("$!:$i")
done
for p in "${pids[@]}"; do
  if ! wait "${p%%:*}"; then rc=1; fi
  echo "--- e2e shard $((${p##*:} + 1))/$shards"
  cat "$logs/shard${p##*:}.log"
done
exit $rc
