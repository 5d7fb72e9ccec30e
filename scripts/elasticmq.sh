#!/usr/bin/env bash
# ElasticMQ (an SQS-compatible server from Maven Central) for `make bench-elasticmq`:
# installs the version pinned in tools/elasticmq/pom.xml into .tools/elasticmq, starts
# it on a free loopback port, runs the command given with TASKBRIDGE_ELASTICMQ_ENDPOINT
# set, and stops it. Needs Java 11+ and Maven.
#   scripts/elasticmq.sh go test -tags elasticmq -run '^$' -bench . ./internal/consumer
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.tools/elasticmq
if [ ! -f "$DIR/installed" ] || ! cmp -s tools/elasticmq/pom.xml "$DIR/installed"; then
  rm -rf "$DIR/lib"
  mvn -q -B -f tools/elasticmq/pom.xml dependency:copy-dependencies -DoutputDirectory="$PWD/$DIR/lib"
  cp tools/elasticmq/pom.xml "$DIR/installed"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ELASTICMQ_PORT=$port java -Dconfig.file=tools/elasticmq/elasticmq.conf -cp "$DIR/lib/*" org.elasticmq.server.Main >"$DIR/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$port/?Action=ListQueues" >/dev/null 2>&1; then
    TASKBRIDGE_ELASTICMQ_ENDPOINT="http://127.0.0.1:$port" "$@"
    exit $?
  fi
  kill -0 $pid 2>/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
  sleep 0.2
done
echo "ElasticMQ did not start; see $DIR/server.log" >&2
exit 1
