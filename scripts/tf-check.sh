#!/usr/bin/env bash
# make tf-check: the deploy/terraform module applied for real, through the root module
# that calls it (deploy/terraform/examples/root), and the worker run on what it made.
#
#  1. terraform init, validate, plan, apply of the root example against a moto server
#     on a free loopback port, with the official hashicorp/aws provider from the
#     machine's plugin folder (a filesystem mirror; never the registry).
#     tools/tfcheck/moto_stubbed.py stubs the few calls the provider makes that moto
#     lacks. Also: the module planned twice under for_each with an aliased provider,
#     and the plan-time refusals of a missing topology_file and of topology_file
#     without worker_topology.
#     Every rule target read back: an explicit retry policy and the events DLQ; the
#     CloudWatch alarms on FailedInvocations and the events DLQ's depth exist.
#     The root is applied with raise_queue_size_with_aws_cli on (the AWS CLI, pinned,
#     .tools/awscli, on terraform's PATH): every queue of the stack read back at
#     1 MiB, and a second plan is empty (the provider's 256 KiB default is not put
#     back).
#  2. The worker proof: bin/worker runs with the environment of the two ECS task
#     definitions as read back from the emulator (plus the emulator's endpoint and
#     credentials), serves a cookies execution of the state machine terraform made
#     and a batch of files dropped into the landing bucket (manifest + Glue run), and
#     its worker_queue_max_message_bytes shows every queue at 1 MiB.
#  3. parliament (pinned, .tools/parliament) over every IAM policy of the stack:
#     fails on a resource mismatch, an unknown action or a malformed policy.
#  4. terraform destroy.
# Nothing calls anything but loopback (and the package index pip is configured with,
# on the first run, for parliament and the AWS CLI).
# Missing terraform or provider: a failure with CI=true, a skip otherwise.
# KEEP=1 keeps the work folder (state, logs) for a look after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROVIDER_TYPE=hashicorp/aws # its registry host is the plugin folder's (<host>/hashicorp/aws/<version>)
PROVIDER_VERSION=5.100.0
export CHECKPOINT_DISABLE=1 # terraform: no version check call home
START=$SECONDS

say() { printf 'tf-check [%3ds] %s\n' $((SECONDS - START)) "$*"; }
missing() {
  if [ "${CI:-}" = true ]; then
    echo "tf-check: $* (CI=true, so this fails)" >&2
    exit 1
  fi
  echo "tf-check: skipped: $*" >&2
  exit 0
}

command -v terraform >/dev/null || missing "terraform is not installed (want 1.11, e.g. /usr/local/bin/terraform)"
# The provider's full address (<host>/hashicorp/aws) is the one the plugin folder
# holds: this script names no registry.
PLUGINS='' PROVIDER=''
for d in ${TF_PLUGINS:-/opt/tf-plugins $(find / -maxdepth 2 -name tf-plugins -type d 2>/dev/null)}; do
  for v in "$d"/*/"$PROVIDER_TYPE/$PROVIDER_VERSION"; do
    if [ -d "$v" ]; then
      PLUGINS=$d PROVIDER=${v#"$d"/} PROVIDER=${PROVIDER%/"$PROVIDER_VERSION"}
      break 2
    fi
  done
done
[ -n "$PLUGINS" ] ||
  missing "the $PROVIDER_TYPE $PROVIDER_VERSION provider is not in a terraform plugin folder (looked in ${TF_PLUGINS:-/opt/tf-plugins and /*/tf-plugins}; set TF_PLUGINS)"

scripts/emulator.sh install
make --no-print-directory build >/dev/null
PARLIAMENT=.tools/parliament
if ! "$PARLIAMENT/bin/pip" freeze 2>/dev/null | grep -qxF "$(grep -v '^#' tools/requirements-parliament.txt)"; then
  python3 -m venv "$PARLIAMENT"
  "$PARLIAMENT/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-parliament.txt
fi
# The AWS CLI that raise_queue_size_with_aws_cli runs: pinned, in its own venv, first
# on terraform's PATH (tf below), whatever `aws` the machine has.
AWSCLI_VENV=.tools/awscli
if ! "$AWSCLI_VENV/bin/pip" freeze 2>/dev/null | grep -qxF "$(grep -v '^#' tools/requirements-awscli.txt)"; then
  python3 -m venv "$AWSCLI_VENV"
  "$AWSCLI_VENV/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-awscli.txt
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tf-check.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ] || [ -n "${KEEP:-}" ]; then
    echo "tf-check: work folder kept: $WORK (moto.log, worker-*.log, terraform state)" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT

# The emulator: moto behind the stub layer, on a free loopback port.
MOTO_IAM_LOAD_MANAGED_POLICIES=true .venv/bin/python tools/tfcheck/moto_stubbed.py "$WORK/port" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
[ -s "$WORK/port" ] || { echo "tf-check: moto did not start; see $WORK/moto.log" >&2; exit 1; }
ENDPOINT=http://127.0.0.1:$(cat "$WORK/port")
curl -fsS -X POST "$ENDPOINT/moto-api/config" -H 'Content-Type: application/json' \
  -d '{"stepfunctions":{"execute_state_machine":true}}' >/dev/null
export AWS_ENDPOINT_URL=$ENDPOINT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
STACKPY=(.venv/bin/python tools/tfcheck/stack.py)
say "moto 5.2.5 (stubbed) on $ENDPOINT"

# The module and its root example as shipped, with two files added to the root in the
# copy: the emulator's provider settings and the check's module settings (an
# *_override.tf, merged by terraform) and the variables.
mkdir -p "$WORK/deploy"
cp -r deploy/terraform deploy/topology.json deploy/data-bucket.json deploy/asl deploy/glue "$WORK/deploy/"
MODULE="$WORK/deploy/terraform"
TF="$MODULE/examples/root"
rm -rf "$MODULE/.terraform" "$TF/.terraform" "$MODULE"/*.tfstate* "$TF"/*.tfstate* "$MODULE"/*_override.tf "$TF"/*_override.tf "$TF/terraform.tfvars"
cat >"$WORK/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$PLUGINS"
    include = ["$PROVIDER"]
  }
}
disable_checkpoint = true
RC
export TF_CLI_CONFIG_FILE=$WORK/terraformrc TF_IN_AUTOMATION=1 TF_INPUT=0
# The provider settings are the LocalStack example's (examples/root/localstack_override.tf.example),
# pointed at moto: the check proves them, real ARNs included. max_retries: moto
# answers an unimplemented call with a 500, which should fail fast here.
sed -e "s#http://127.0.0.1:4566#$ENDPOINT#" \
  -e 's#^\(  s3_use_path_style .*\)$#\1\n  max_retries                 = 2#' \
  deploy/terraform/examples/root/localstack_override.tf.example >"$TF/tfcheck_override.tf"
grep -q "$ENDPOINT" "$TF/tfcheck_override.tf" && grep -q max_retries "$TF/tfcheck_override.tf" ||
  { echo "tf-check: could not point examples/root/localstack_override.tf.example at moto" >&2; exit 1; }
# Module inputs the root example leaves at their defaults: a small batch, debug logs,
# and the queues raised to 1 MiB by the AWS CLI, on the emulator.
cat >>"$TF/tfcheck_override.tf" <<OVERRIDE

module "taskbridge" {
  batch_max_files               = 3
  log_level                     = "debug"
  raise_queue_size_with_aws_cli = true
  aws_cli_endpoint_url          = "$ENDPOINT"
}
OVERRIDE
read -r SUBNET SG < <("${STACKPY[@]}" net)
STACK=tfcheck
cat >"$TF/terraform.tfvars" <<VARS
region                 = "us-east-1"
stack                  = "$STACK"
data_bucket_name       = "$STACK-data-bucket"
landing_bucket_name    = "$STACK-landing-bucket"
image                  = "taskbridge/worker:tf-check"
vpc_subnet_ids         = ["$SUBNET"]
vpc_security_group_ids = ["$SG"]
batch_window           = "30s"
VARS
tf() { PATH="$ROOT/$AWSCLI_VENV/bin:$PATH" terraform -chdir="$TF" "$@" -no-color; }

tf init -input=false >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log"; exit 1; }
grep -qE "(Installed|Using previously-installed) $PROVIDER_TYPE v$PROVIDER_VERSION" "$WORK/init.log" ||
  { cat "$WORK/init.log"; echo "tf-check: init did not install $PROVIDER $PROVIDER_VERSION from $PLUGINS" >&2; exit 1; }
say "init: $PROVIDER v$PROVIDER_VERSION from the filesystem mirror $PLUGINS"
tf validate >/dev/null
say "validate: ok"

# A module, not a root: two stacks from one call with for_each, on an aliased provider.
MULTI="$WORK/multi"
mkdir -p "$MULTI"
sed -n '/^provider "aws" {/,/^}/p' "$TF/tfcheck_override.tf" | sed 's#^provider "aws" {#provider "aws" {\n  alias                       = "second"\n  region                      = "us-east-1"#' >"$MULTI/main.tf"
cat >>"$MULTI/main.tf" <<MULTITF

module "taskbridge" {
  source                 = "../deploy/terraform"
  for_each               = toset(["a", "b"])
  providers              = { aws = aws.second }
  stack                  = "$STACK-\${each.key}"
  data_bucket_name       = "$STACK-\${each.key}-data-bucket"
  landing_bucket_name    = "$STACK-\${each.key}-landing-bucket"
  image                  = "taskbridge/worker:tf-check"
  vpc_subnet_ids         = ["$SUBNET"]
  vpc_security_group_ids = ["$SG"]
}
MULTITF
terraform -chdir="$MULTI" init -input=false -no-color >"$WORK/multi-init.log" 2>&1 || { cat "$WORK/multi-init.log"; exit 1; }
terraform -chdir="$MULTI" plan -input=false -no-color >"$WORK/multi-plan.log" 2>&1 || { cat "$WORK/multi-plan.log"; exit 1; }
grep -q 'module.taskbridge\["b"\].aws_sfn_state_machine.this\["cookies"\] will be created' "$WORK/multi-plan.log" ||
  { cat "$WORK/multi-plan.log"; echo "tf-check: the for_each plan lacks the second stack" >&2; exit 1; }
say "for_each with an aliased provider: $(grep -E '^Plan:' "$WORK/multi-plan.log")"

# Refused at plan, each with its own message: a topology_file that does not exist,
# and a topology_file without worker_topology (the tasks would serve the embedded
# cookies topology).
refused() {
  local want=$1
  shift
  if tf plan -input=false "$@" >"$WORK/refused.log" 2>&1; then
    echo "tf-check: plan $* did not fail" >&2
    exit 1
  fi
  sed 's/^[│ ]*//' "$WORK/refused.log" | tr -s ' \n' ' ' | grep -qF "$want" ||
    { cat "$WORK/refused.log"; echo "tf-check: plan $* failed without saying: $want" >&2; exit 1; }
}
refused '"/nonexistent/topology.json" is not a file' -var topology_file=/nonexistent/topology.json -var worker_topology=/app/topology.json
refused 'topology_file is set but worker_topology is empty' -var "topology_file=$ROOT/deploy/topology.json"
say "plan refuses a missing topology_file and topology_file without worker_topology"
tf plan -input=false -out="$WORK/tfplan" >"$WORK/plan.log" 2>&1 || { cat "$WORK/plan.log"; exit 1; }
say "plan: $(grep -E '^Plan:' "$WORK/plan.log")"
# Any topology: the examples' topology files plan too (rules, queues and ASL from
# the file's folder).
for topo in examples/*/topology.json; do
  [ -f "$topo" ] || continue
  tf plan -input=false -var "topology_file=$ROOT/$topo" -var worker_topology=/app/topology.json >"$WORK/plan-$(basename "$(dirname "$topo")").log" 2>&1 ||
    { cat "$WORK/plan-$(basename "$(dirname "$topo")").log"; exit 1; }
  say "plan of $topo: $(grep -E '^Plan:' "$WORK/plan-$(basename "$(dirname "$topo")").log")"
done
tf apply -input=false -auto-approve "$WORK/tfplan" >"$WORK/apply.log" 2>&1 || { grep -vE 'Still creating|Creation complete|Creating\.\.\.' "$WORK/apply.log"; exit 1; }
say "apply: $(grep -E '^Apply complete' "$WORK/apply.log")"
# The root example passes the module's outputs on as one object; stack.py reads them
# in the module's own shape.
tf output -json | jq '.taskbridge.value | map_values({value: .})' >"$WORK/outputs.json"

# Real ARNs: every one names the emulator's account.
ACCOUNT=$(jq -r '.state_machines.value | to_entries[0].value' "$WORK/outputs.json" | cut -d: -f5)
[[ $ACCOUNT =~ ^[0-9]{12}$ ]] || { echo "tf-check: state machine ARN has no account id: $(jq -c .state_machines.value "$WORK/outputs.json")" >&2; exit 1; }
if jq -r '.. | strings' "$WORK/outputs.json" | grep -E '^arn:' | grep -vE "^arn:aws:[a-z0-9-]+:(us-east-1)?:$ACCOUNT:"; then
  echo "tf-check: the ARNs above do not name the account $ACCOUNT" >&2
  exit 1
fi
say "ARNs name the account $ACCOUNT"
# Nothing EventBridge cannot deliver vanishes: every target read back.
say "delivery: $("${STACKPY[@]}" delivery "$WORK/outputs.json")"

# Every queue of the stack at 1 MiB, read back with the same CLI: the job and landing
# queues and DLQs of the outputs, and the events DLQ.
AWS=("$AWSCLI_VENV/bin/aws" --endpoint-url "$ENDPOINT" --region us-east-1 --output json)
mapfile -t QUEUE_URLS < <("${AWS[@]}" sqs list-queues --queue-name-prefix "$STACK-" | jq -r '.QueueUrls[]')
[ ${#QUEUE_URLS[@]} -gt 0 ] || { echo "tf-check: no queue named $STACK-* on the emulator" >&2; exit 1; }
for want in $(jq -r '(.queues.value + .dlqs.value) | to_entries[] | .value' "$WORK/outputs.json") "${QUEUE_URLS[0]%/*}/$STACK-eventbridge-dlq"; do
  printf '%s\n' "${QUEUE_URLS[@]}" | grep -qxF "$want" || { echo "tf-check: $want is not among the stack's queues: ${QUEUE_URLS[*]}" >&2; exit 1; }
done
for url in "${QUEUE_URLS[@]}"; do
  size=$("${AWS[@]}" sqs get-queue-attributes --queue-url "$url" --attribute-names MaximumMessageSize | jq -r .Attributes.MaximumMessageSize)
  [ "$size" = 1048576 ] || { echo "tf-check: ${url##*/} has MaximumMessageSize $size, not 1048576 (raise_queue_size_with_aws_cli)" >&2; exit 1; }
done
say "queue size: ${#QUEUE_URLS[@]} queues at MaximumMessageSize 1048576 ($("$AWSCLI_VENV/bin/aws" --version 2>&1 | cut -d' ' -f1), $(grep -c 'terraform_data.queue_size\[.*Creation complete' "$WORK/apply.log") set-queue-attributes calls)"
# A second plan is empty: ignore_changes keeps the provider's 262144 default from
# putting the queues back, and nothing else drifts (moto_stubbed.py answers what moto
# would answer differently from AWS).
rc=0
tf plan -input=false -detailed-exitcode >"$WORK/plan2.log" 2>&1 || rc=$?
[ $rc = 0 ] || { grep -E '^  # |^Plan:|Error' "$WORK/plan2.log"; echo "tf-check: the plan after apply is not empty (exit $rc; $WORK/plan2.log)" >&2; exit 1; }
say "plan after apply: $(grep -E '^No changes' "$WORK/plan2.log")"

# The worker on the stack: each service's environment exactly as its task definition
# has it, plus what a task gets from ECS (credentials) and the emulator's endpoint.
# Each task has its own network namespace on ECS; here the metrics listeners get
# their own loopback ports.
worker_env() {
  local service=$1 port=$2
  mapfile -t TD_ENV < <("${STACKPY[@]}" env "$service" "$WORK/outputs.json")
  printf '%s\n' "${TD_ENV[@]}" >"$WORK/env-$service"
  WENV=(env -i "PATH=$PATH" "HOME=$HOME" "${TD_ENV[@]}"
    "AWS_ENDPOINT_URL=$ENDPOINT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    "WORKER_METRICS_ADDR=127.0.0.1:$port")
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
JOBS_METRICS=$(free_port)
for service in jobs batch; do
  port=$(free_port)
  [ "$service" = jobs ] && port=$JOBS_METRICS
  worker_env "$service" "$port"
  "${WENV[@]}" bin/worker run >"$WORK/worker-$service.log" 2>&1 &
  PIDS+=($!)
  eval "${service^^}_PID=$!"
done
say "worker run: jobs ($(grep -c . "$WORK/env-jobs") variables from the task definition, $(grep '^WORKER_ROLES=' "$WORK/env-jobs")) and batch ($(grep '^WORKER_ROLES=' "$WORK/env-batch"))"

"${STACKPY[@]}" land "$WORK/outputs.json" 3 >/dev/null
worker_env jobs 0
OUT=$(timeout 240 "${WENV[@]}" bin/worker start --count 3 --wait 2>"$WORK/start.log") ||
  { cat "$WORK/start.log"; tail -20 "$WORK/worker-jobs.log"; echo "tf-check: the cookies execution did not succeed" >&2; exit 1; }
[ "$(jq -r .numberOfPeople <<<"$OUT")" = 3 ] || { echo "tf-check: unexpected cookies output: $OUT" >&2; exit 1; }
say "cookies on $(jq -r .state_machines.value.cookies "$WORK/outputs.json"): $OUT"
"${STACKPY[@]}" report "$(jq -r .report <<<"$OUT")" 3 | sed 's/^/tf-check        /'
"${STACKPY[@]}" batch "$WORK/outputs.json" 90 | sed 's/^/tf-check        batch: /' ||
  { tail -20 "$WORK/worker-batch.log"; exit 1; }

# The worker's own view of the queues' size (its gauge has read them by now, at its
# start): every queue of the stack at 1 MiB, none warned about.
curl -fsS "http://127.0.0.1:$JOBS_METRICS/metrics" | grep '^worker_queue_max_message_bytes{' >"$WORK/sizes.prom" || true
awk -v want="${#QUEUE_URLS[@]}" '$2 + 0 != 1048576 { bad++ } END { exit !(NR == want && !bad) }' "$WORK/sizes.prom" ||
  { cat "$WORK/sizes.prom"; echo "tf-check: the jobs worker does not see ${#QUEUE_URLS[@]} queues at 1048576 bytes" >&2; exit 1; }
! grep -q "queue smaller than SQS's limit" "$WORK"/worker-*.log || { grep -h "queue smaller" "$WORK"/worker-*.log; exit 1; }
say "worker_queue_max_message_bytes: $(grep -c . "$WORK/sizes.prom") queues at 1048576 (the jobs worker's /metrics), no size warning"

# SIGTERM now; their drain (up to one long poll) overlaps the IAM check.
for p in "$JOBS_PID" "$BATCH_PID"; do kill -TERM "$p"; done

# IAM that AWS accepts: parliament over every policy of the applied stack. First a
# grant AWS refuses (the old SendTask* on state machine ARNs), so a linter that
# finds nothing cannot pass for one that checks.
KNOWN_BAD='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"states:SendTaskSuccess","Resource":"arn:aws:states:us-east-1:123456789012:stateMachine:x"}]}'
grep -q RESOURCE_MISMATCH <<<"$("$PARLIAMENT/bin/parliament" --json --string "$KNOWN_BAD" || true)" ||
  { echo "tf-check: parliament did not flag a known resource mismatch" >&2; exit 1; }
"${STACKPY[@]}" policies "$WORK/policies" "$WORK/outputs.json" | sed 's/^/tf-check        /'
# An ARN without an account (what skip_requesting_account_id produces) in any policy.
if grep -rhoE 'arn:aws:[a-z0-9-]+:[a-z0-9-]+::[^"]*' "$WORK/policies"; then
  echo "tf-check: the policy resources above name no account" >&2
  exit 1
fi
"$PARLIAMENT/bin/parliament" --directory "$WORK/policies" --include_policy_extension .json --json >"$WORK/parliament.json" || true
"${STACKPY[@]}" lint "$WORK/policies" "$WORK/parliament.json" | sed 's/^/tf-check        /'
say "parliament: ok"

for service in jobs batch; do
  p=${service^^}_PID
  wait "${!p}" || { tail -20 "$WORK/worker-$service.log"; echo "tf-check: worker ($service) did not exit 0 on SIGTERM" >&2; exit 1; }
done
say "workers stopped on SIGTERM (exit 0)"

"${STACKPY[@]}" empty "$WORK/outputs.json" >/dev/null
tf destroy -input=false -auto-approve >"$WORK/destroy.log" 2>&1 || { grep -vE 'Still destroying|Destruction complete|Destroying\.\.\.' "$WORK/destroy.log"; exit 1; }
say "destroy: $(grep -E '^Destroy complete' "$WORK/destroy.log")"
say "ok"
