#!/usr/bin/env bash
# make image-check: the project's Dockerfile built and its image run for real, with
# podman (Debian's package; no Docker engine needed).
#
#  1. podman and runc from Debian's packages (installed when missing), with this
#     check's own configuration (tools/imagecheck/{storage,containers}.conf through
#     CONTAINERS_STORAGE_CONF and CONTAINERS_CONF): the vfs storage driver (no
#     overlay or fuse needed), runc, and no default ulimits (setting them needs
#     CAP_SYS_RESOURCE, which a CI container may lack).
#  2. The Dockerfile's base images: pulled when a registry answers; where none does,
#     local stand-ins under the same names (tools/imagecheck/*.Containerfile): a Go
#     toolchain image from the machine's Go on a Debian bookworm rootfs (debootstrap
#     from the Debian mirror that apt's sources name) and a distroless-like static base (CA certificates,
#     tzdata, the nonroot user 65532).
#  3. The image built from the Dockerfile and run read-only as 65532 on the host
#     network against moto on a free loopback port: bootstrap, run (with --init, as
#     compose's init: true and ECS's initProcessEnabled), a cookies execution
#     (start --wait), the image's health check, SIGTERM -> exit 0 within the
#     shutdown timeout.
#  4. A derived image with an exec job (tools/imagecheck/exec, docs/operations.md "Your own
#     image"): a command that leaves an orphaned child. With --init no zombie is
#     left; without it (the control) the child stays a zombie of the worker.
# Idempotent: images, the rootfs and Go's build cache are kept between runs.
# KEEP=1 keeps the work folder (logs) after a success too.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS
say() { printf 'image-check [%3ds] %s\n' $((SECONDS - START)) "$*"; }
die() {
  echo "image-check: $*" >&2
  exit 1
}

# Where stand-ins and their inputs are kept between runs (not in the work tree).
CACHE=${IMAGE_CHECK_CACHE:-/var/cache/taskbridge-image-check}
IMAGE=localhost/taskbridge/worker:image-check
DERIVED=localhost/taskbridge/worker-exec:image-check
SHUTDOWN=10 # WORKER_SHUTDOWN_TIMEOUT of the run, seconds
# The base images as the Dockerfile names them (this script names no registry): the
# build stage's and the final stage's. The stand-ins below are made for these two.
GO_BASE=$(awk 'toupper($1) == "FROM" && toupper($3) == "AS" && $4 == "build" { print $2 }' Dockerfile)
STATIC_BASE=$(awk 'toupper($1) == "FROM" { base = $2 } END { print base }' Dockerfile)
[[ $GO_BASE == */golang:1.26-bookworm && $STATIC_BASE == */distroless/static-debian12:nonroot ]] ||
  die "the Dockerfile's FROM lines changed ($GO_BASE, $STATIC_BASE); update the stand-ins (tools/imagecheck) and this check"
# The Debian mirror that debootstrap reads: the one apt's sources name on this
# machine (deb822 URIs: or one-line deb entries), its .../debian archive.
debian_mirror() {
  local uri
  uri=$({
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ for (i = 2; i <= NF; i++) print $i }'
    grep -hsE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      awk '{ for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }'
  } | grep -E '/debian/?$' | head -1)
  [ -n "$uri" ] || die "apt's sources (/etc/apt/sources.list, /etc/apt/sources.list.d) name no Debian archive (…/debian) for debootstrap"
  echo "${uri%/}"
}

# 1. podman.
# What each package gives: a command, or a file (catatonit is podman's --init).
need=()
for want in podman:podman runc:runc /usr/libexec/podman/catatonit:catatonit debootstrap:debootstrap \
  ps:procps curl:curl jq:jq python3:python3; do
  what=${want%:*}
  if [[ $what == /* ]]; then [ -e "$what" ] && continue; else command -v "$what" >/dev/null && continue; fi
  need+=("${want##*:}")
done
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv) # the emulator's venv
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (apt-get)"
  apt-get update -qq
  # With podman's recommendations (its network backend among them): the set this
  # check was proven with.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export CONTAINERS_STORAGE_CONF=$ROOT/tools/imagecheck/storage.conf
export CONTAINERS_CONF=$ROOT/tools/imagecheck/containers.conf
say "$(podman --version), $(runc --version | head -1), storage $(podman info --format '{{.Store.GraphDriverName}}')"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/image-check.XXXXXX")
CONTAINERS=()
PIDS=()
cleanup() {
  local rc=$?
  for c in "${CONTAINERS[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ] || [ -n "${KEEP:-}" ]; then
    echo "image-check: work folder kept: $WORK (moto.log, worker logs)" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT

# 2. Base images: the real one if a registry answers, else the stand-in (kept while
# its recipe is the current one).
RECIPE=2
stand_in_label() { podman image inspect --format '{{index .Labels "org.taskbridge.stand-in"}}' "$1" 2>/dev/null; }
is_stand_in() { [ -n "$(stand_in_label "$1")" ]; }
is_current_stand_in() { [ "$(stand_in_label "$1")" = "$RECIPE" ]; }
bookworm_rootfs() {
  [ -s "$CACHE/bookworm.tar" ] && [ -d "$CACHE/rootfs/etc" ] && return 0
  local mirror
  mirror=$(debian_mirror)
  say "debootstrap bookworm (minbase, ca-certificates, tzdata) from $mirror (apt's sources)"
  rm -rf "$CACHE/rootfs" "$CACHE/bookworm.tar"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include=ca-certificates,tzdata bookworm "$CACHE/rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log"; die "debootstrap failed"; }
  rm -rf "$CACHE/rootfs"/var/cache/apt/archives/*.deb "$CACHE/rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$CACHE/rootfs" -cf "$CACHE/bookworm.tar.part" . && mv "$CACHE/bookworm.tar.part" "$CACHE/bookworm.tar"
}
stand_in_golang() {
  local goroot version
  goroot=$(go env GOROOT)
  version=$(go env GOVERSION)
  [[ $version == go1.26* ]] || die "no registry answers for $GO_BASE and the machine's Go is $version, not 1.26"
  bookworm_rootfs
  # One tar, one layer: the rootfs, Go at /usr/local/go, an empty GOPATH (1777).
  local ctx=$WORK/golang-context
  mkdir -p "$ctx" "$WORK/gopath/go/src" "$WORK/gopath/go/bin"
  chmod -R 1777 "$WORK/gopath/go"
  cp "$CACHE/bookworm.tar" "$ctx/golang.tar"
  tar --numeric-owner --owner=0 --group=0 -C "$(dirname "$goroot")" -rf "$ctx/golang.tar" \
    --transform "s#^$(basename "$goroot")#usr/local/go#" "$(basename "$goroot")"
  tar --numeric-owner --owner=0 --group=0 -C "$WORK/gopath" -rf "$ctx/golang.tar" go
  podman build -q --layers=false --build-arg "GOVERSION=${version#go}" --build-arg "RECIPE=$RECIPE" \
    -f tools/imagecheck/golang.Containerfile -t "$GO_BASE" "$ctx" >/dev/null
}
stand_in_static() {
  bookworm_rootfs
  local fs=$WORK/static-rootfs
  mkdir -p "$fs"/etc/ssl/certs "$fs"/usr/share "$fs"/home/nonroot "$fs"/root "$fs"/tmp
  tar -C "$CACHE/rootfs" -cf - etc/ssl/certs/ca-certificates.crt usr/share/zoneinfo etc/os-release usr/lib/os-release | tar -C "$fs" -xf -
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$fs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$fs/etc/group"
  printf 'hosts: files dns\n' >"$fs/etc/nsswitch.conf"
  chmod 1777 "$fs/tmp"
  chmod 700 "$fs/root"
  chown 65532:65532 "$fs/home/nonroot"
  mkdir -p "$WORK/static-context"
  tar --numeric-owner -C "$fs" -cf "$WORK/static-context/static.tar" .
  podman build -q --layers=false --build-arg "RECIPE=$RECIPE" -f tools/imagecheck/distroless.Containerfile -t "$STATIC_BASE" "$WORK/static-context" >/dev/null
}
base_image() {
  local name=$1 build=$2
  if podman image exists "$name" && ! is_stand_in "$name"; then
    say "base $name: the real image (kept)"
    return 0
  fi
  if timeout 120 podman pull -q "$name" >"$WORK/pull.log" 2>&1; then
    say "base $name: pulled"
    return 0
  fi
  if is_current_stand_in "$name"; then
    say "base $name: no registry answers; the stand-in (kept)"
    return 0
  fi
  say "base $name: no registry answers ($(tail -1 "$WORK/pull.log" | cut -c1-100)); building the stand-in"
  "$build"
  say "base $name: stand-in built"
}
base_image "$GO_BASE" stand_in_golang
base_image "$STATIC_BASE" stand_in_static

# 3. The project's image, as the Dockerfile says (docker format: HEALTHCHECK kept).
# The build stage fetches modules from the Go proxy with the machine's CA
# certificates mounted in (a network that intercepts TLS has its own CA); the final
# stage is untouched. --layers=false: vfs copies a whole layer per step, and the
# cache mounts keep the module and build caches between runs anyway.
podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
podman build --format docker --network host --pull=never --layers=false \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg VERSION=image-check -t "$IMAGE" . >"$WORK/build.log" 2>&1 &&
  podman image exists "$IMAGE" ||
  { tail -30 "$WORK/build.log"; die "podman build of the Dockerfile failed"; }
say "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1/1e6}'), user $(podman image inspect --format '{{.Config.User}}' "$IMAGE"))"

# The emulator: moto with its Step Functions races fixed (the tests' server), on a
# free loopback port; the containers share the host's network.
scripts/emulator.sh install
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
.venv/bin/python3 tools/moto/server.py -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
ENDPOINT=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -fsS "$ENDPOINT/moto-api/data.json" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS -X POST "$ENDPOINT/moto-api/config" -H 'Content-Type: application/json' \
  -d '{"stepfunctions":{"execute_state_machine":true}}' >/dev/null || die "moto did not start; see $WORK/moto.log"
say "moto on $ENDPOINT"

# Every container: read-only root, user 65532, host network, the emulator's settings.
RUN=(podman run --read-only --user 65532:65532 --network host
  -e "AWS_ENDPOINT_URL=$ENDPOINT" -e AWS_REGION=us-east-1 -e AWS_ACCESS_KEY_ID=testing -e AWS_SECRET_ACCESS_KEY=testing
  -e "WORKER_SHUTDOWN_TIMEOUT=${SHUTDOWN}s" -e WORKER_LOG_FORMAT=json)
start_worker() { # name image metrics-port [podman run options...]
  local name=$1 image=$2 port=$3
  shift 3
  CONTAINERS+=("$name")
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  # Its stderr: podman's complaint that there is no systemd to schedule the image's
  # HEALTHCHECK (the check runs it with podman healthcheck run).
  "${RUN[@]}" -d --name "$name" -e "WORKER_METRICS_ADDR=127.0.0.1:$port" "$@" "$image" run >/dev/null 2>>"$WORK/podman.log"
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  podman logs "$name" 2>&1 | tail -20
  die "$name did not serve /healthz"
}

OUT=$("${RUN[@]}" --rm "$IMAGE" bootstrap --output json 2>"$WORK/bootstrap.log") ||
  { cat "$WORK/bootstrap.log"; die "bootstrap failed"; }
say "bootstrap: state machines $(jq -c '.stateMachines | keys' <<<"$OUT"), $(jq '.queues | length' <<<"$OUT") queues"

METRICS=$(free_port)
start_worker tb-image-check "$IMAGE" "$METRICS" --init
say "run: serving (/healthz on 127.0.0.1:$METRICS)"
OUT=$(timeout 240 "${RUN[@]}" --rm "$IMAGE" start --count 3 --wait 2>"$WORK/start.log") ||
  { cat "$WORK/start.log"; podman logs tb-image-check 2>&1 | tail -20; die "the cookies execution did not succeed"; }
[ "$(jq -r .numberOfPeople <<<"$OUT")" = 3 ] || die "unexpected cookies output: $OUT"
say "cookies (start --wait): $OUT"
podman healthcheck run tb-image-check >/dev/null || die "the image's health check failed"
podman exec tb-image-check /worker healthcheck || die "worker healthcheck did not exit 0"
say "health check: the image's HEALTHCHECK and /worker healthcheck exit 0"

T0=$(date +%s.%N)
podman kill --signal TERM tb-image-check >/dev/null
RC=$(timeout $((SHUTDOWN + 5)) podman wait tb-image-check) || die "the worker did not exit within $((SHUTDOWN + 5)) s of SIGTERM"
ELAPSED=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
podman logs tb-image-check >"$WORK/worker.log" 2>&1
[ "$RC" = 0 ] || { tail -20 "$WORK/worker.log"; die "the worker exited $RC on SIGTERM"; }
say "SIGTERM: exit 0 after ${ELAPSED} s (shutdown timeout ${SHUTDOWN} s)"

# 4. A derived image with an exec job whose command leaves an orphaned child.
CTX=$WORK/exec-context
cp -r tools/imagecheck/exec "$CTX"
CGO_ENABLED=0 go build -trimpath -o "$CTX/orphan" ./tools/imagecheck/orphan
podman build --format docker --pull=never --layers=false --build-arg "WORKER_IMAGE=$IMAGE" -t "$DERIVED" "$CTX" >"$WORK/derived-build.log" 2>&1 &&
  podman image exists "$DERIVED" ||
  { cat "$WORK/derived-build.log"; die "podman build of the derived image failed"; }
EXEC=(-e WORKER_STACK=imagecheck)
OUT=$("${RUN[@]}" --rm "${EXEC[@]}" "$DERIVED" bootstrap --output json 2>"$WORK/derived-bootstrap.log") ||
  { cat "$WORK/derived-bootstrap.log"; die "bootstrap of the derived image's topology failed"; }
say "derived image $DERIVED: bootstrap of its topology: $(jq -c '.stateMachines | keys' <<<"$OUT")"

# zombies NAME: the zombie processes in the container NAME, from the host's /proc.
zombies() {
  local pid
  pid=$(podman inspect --format '{{.State.Pid}}' "$1")
  ps -e -o pid=,ppid=,stat=,comm= | awk -v root="$pid" '
    { ppid[$1] = $2; stat[$1] = $3; comm[$1] = $4 }
    END {
      for (p in ppid) {
        for (q = p; q != "" && q != 0; q = ppid[q]) if (q == root) { if (stat[p] ~ /^Z/) print p, comm[p]; break }
      }
    }'
}
orphan_run() { # name [podman run options...]: writes the zombies left after one exec job to $WORK/name.zombies
  local name=$1 out
  shift
  start_worker "$name" "$DERIVED" "$(free_port)" "${EXEC[@]}" "$@"
  out=$(timeout 120 "${RUN[@]}" --rm "${EXEC[@]}" "$DERIVED" start --wait 2>"$WORK/$name-start.log") ||
    { cat "$WORK/$name-start.log" >&2; podman logs "$name" 2>&1 | tail -20 >&2; die "the orphan execution did not succeed"; }
  jq -e .orphanPid <<<"$out" >/dev/null || die "unexpected output of the exec job: $out"
  sleep 1 # the worker kills the leftover group right after the command exits
  zombies "$name" >"$WORK/$name.zombies"
  podman kill --signal TERM "$name" >/dev/null
  [ "$(timeout $((SHUTDOWN + 5)) podman wait "$name")" = 0 ] || die "$name did not exit 0 on SIGTERM"
}
orphan_run tb-image-check-init --init
Z=$(cat "$WORK/tb-image-check-init.zombies")
[ -z "$Z" ] || die "with --init the exec job's orphan is left a zombie: $Z"
say "exec job with --init (compose init: true, ECS initProcessEnabled): no zombie"
orphan_run tb-image-check-noinit
Z=$(cat "$WORK/tb-image-check-noinit.zombies")
[ -n "$Z" ] || die "control: without an init the orphan should stay a zombie, but none was found"
say "control, without an init: the worker (PID 1) leaves a zombie: $Z"
say "ok"
