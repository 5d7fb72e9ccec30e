# taskbridge — `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/taskbridge/taskbridge/internal/cli.Version=$(VERSION)
GOLANGCI_LINT_VERSION := v2.15.0
TOOLS := $(CURDIR)/.tools/bin
FUZZTIME ?= 10s
SOAK ?= 10m
IMAGE ?= taskbridge/worker:$(VERSION)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: demo
demo: build ## run the cookies workflow (10 names) on a local moto server, print the report, stop everything
	scripts/demo.sh

.PHONY: build
build: ## build bin/worker
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/worker ./cmd/worker

.PHONY: emulator
emulator: ## install the pinned moto server into .venv (tests start it themselves)
	scripts/emulator.sh install

.PHONY: prometheus
prometheus: ## install Prometheus and promtool (Debian package) for the observability test
	scripts/prometheus.sh

.PHONY: test
test: emulator prometheus ## unit and integration tests with -race against a real moto server and Prometheus
	scripts/test.sh

# The cookies, restart, trust and cancellation cases on stock moto_server, as users
# and the compose file run it (the other tests use tools/moto/server.py, moto with
# some of its races fixed).
STOCK_MOTO_TESTS := ^(TestE2ECookiesFiftyPeople|TestE2EAwkwardNamesStayUnderThePrefix|TestE2ETenExecutionsAtOnce|TestE2ESigkillMidExecutionThenRestart|TestE2ESigtermWithJobsInFlightExitsZeroAndLosesNothing|TestE2ERestartStrandsNoMessage|TestE2EStopFitsTheShutdownTimeoutWhenAWSIsSlow|TestE2EHostileProducerCannotRewriteAnotherExecution|TestE2ECheckpointsResumeAfterAKill|TestE2EShortShutdownRestartStrandsNoExecution|TestE2EStoppedExecutionsCancelTheirJobs)$$

.PHONY: test-console
test-console: emulator ## the web console (worker console) in headless Chromium against moto: stack, a timeline, a dead letter redriven; installs Debian's chromium when missing; screenshots in .artifacts/console/
	scripts/chromium.sh
	go test -race -count=1 ./internal/console
	go test -tags browser -race -count=1 -timeout 15m -run '^TestE2EConsole' ./cmd/worker

.PHONY: test-stock-moto
test-stock-moto: emulator ## the cookies, restart, trust and cancellation end-to-end cases on stock moto_server (no patches; ~4 min)
	TASKBRIDGE_TEST_MOTO=stock go test -race -count=1 -timeout 15m -run '$(STOCK_MOTO_TESTS)' ./cmd/worker

.PHONY: test-unit
test-unit: ## unit tests only (integration tests skip without an emulator unless CI=true)
	TASKBRIDGE_TEST_ENDPOINT=http://127.0.0.1:1 go test -race -count=1 -short ./...

.PHONY: test-integration
test-integration: emulator prometheus ## the end-to-end tests of the worker binary against moto
	go test -race -count=1 -timeout 20m -run 'Integration|E2E' ./...

.PHONY: chaos
chaos: emulator ## fault scenarios against moto (SIGKILL, SIGTERM, emulator outage, malformed mix); prints a table, lost must be 0
	set -o pipefail; go test -tags chaos -count=1 -timeout 40m -run Chaos -v ./cmd/worker 2>&1 | grep --line-buffered -vE '^\s+(logger|e2e_harness_test)'

.PHONY: fleet
fleet: emulator ## fleet simulation: scale-out of 1/2/4 worker processes on ElasticMQ (Maven Central; needs Java and Maven), and scale-in on moto by the terraform's target tracking that kills no running job; prints tables
	set -o pipefail; scripts/elasticmq.sh go test -tags fleet -count=1 -timeout 20m -run Fleet -v ./cmd/worker 2>&1 | grep --line-buffered -vE '^\s+(logger|e2e_harness_test)'

.PHONY: soak
soak: emulator ## steady cookies load on moto for SOAK (default 10m); prints goroutines, heap and RSS every 30s, fails if they keep growing
	set -o pipefail; go test -tags soak -count=1 -timeout 0 -run Soak -v ./cmd/worker -args -soak.duration=$(SOAK) 2>&1 | grep --line-buffered -vE '^\s+(logger|e2e_harness_test)'

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 10s)
	scripts/fuzz.sh $(FUZZTIME)

.PHONY: bench
bench: emulator ## benchmarks: the poller beside a naive consumer on moto (msgs/s, SQS req/msg, CPU µs/msg), and the hot paths
	go test -run '^$$' -bench . -benchmem -count 3 ./...

.PHONY: bench-elasticmq
bench-elasticmq: ## the poller beside the naive consumer on ElasticMQ (Maven Central; needs Java and Maven), where the server is not the bottleneck
	scripts/elasticmq.sh go test -tags elasticmq -run '^$$' -bench ElasticMQ -count 3 ./internal/consumer

.PHONY: bench-smoke
bench-smoke: emulator ## every benchmark once, so they keep compiling and running
	go test -short -run '^$$' -bench . -benchtime 1x ./...

.PHONY: lint
lint: $(TOOLS)/golangci-lint ## golangci-lint, gofmt, terraform fmt, checkov over deploy/terraform
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(TOOLS)/golangci-lint run ./...
	scripts/checkov.sh

$(TOOLS)/golangci-lint:
	GOBIN=$(TOOLS) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: tidy
tidy: ## go mod tidy, and fail if it changed anything
	go mod tidy
	git diff --exit-code go.mod go.sum

.PHONY: docker
docker: ## build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

.PHONY: up
up: ## docker compose up: LocalStack, bootstrap, worker, Prometheus, Grafana (needs Docker)
	docker compose up -d --build

.PHONY: down
down: ## docker compose down
	docker compose down -v

.PHONY: clean
clean: ## remove build output and local emulator state
	rm -rf bin .moto

.PHONY: tf-check
tf-check: ## deploy/terraform for real: init, validate, plan, apply, destroy against moto (provider from the local plugin folder); the worker served on the applied stack; parliament over its IAM
	scripts/tf-check.sh

.PHONY: image-check
image-check: ## the Dockerfile built and run with podman (Debian's): bootstrap, run, cookies, healthcheck, SIGTERM exit 0, an exec job's orphan reaped under --init; bases pulled or local stand-ins
	scripts/image-check.sh

.PHONY: bench-peers
bench-peers: ## issue 13: the raw aws-sdk-go-v2 loop beside the consumer on ElasticMQ, each in its own process; medians of 3 with ratios (PEERS_PROFILE=dir: CPU and allocation profiles of both)
	scripts/elasticmq.sh go test -tags elasticmq -count=1 -timeout 30m -run '^TestPeers$$' -v ./internal/loadtest

.PHONY: test-localstack
test-localstack: ## the end-to-end cases LocalStack supports, on LocalStack 4.14.0 from PyPI (own venv on Python >= 3.13), loopback only; docs/development.md "LocalStack"
	scripts/localstack.sh test

.PHONY: bench-callback
bench-callback: ## issue 13: time from a message put to its SendTaskSuccess leaving the worker (consumer → router → callback, no-op job) on ElasticMQ with a stub Step Functions; p50/p99 at no load, 1,000 and 5,000 msgs/s; peak RSS
	scripts/elasticmq.sh go test -tags elasticmq -count=1 -timeout 10m -run '^TestCallbackOverhead$$' -v ./internal/loadtest
