# syntax=docker/dockerfile:1.7
# taskbridge worker: a static binary on distroless, non-root, no shell.

# Both bases fully qualified: the one place that names their registries (make
# image-check reads these lines; podman needs no short-name resolution).
FROM docker.io/library/golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY *.go ./
COPY cmd ./cmd
COPY examples ./examples
COPY internal ./internal
COPY tasktest ./tasktest
COPY deploy ./deploy
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X github.com/taskbridge/taskbridge/internal/cli.Version=${VERSION}" -o /out/worker ./cmd/worker

FROM gcr.io/distroless/static-debian12:nonroot
# distroless/static carries CA certificates and tzdata; it has no shell and no
# package manager, so the health check is the binary itself.
COPY --from=build /out/worker /worker
USER 65532:65532
EXPOSE 9090
ENV WORKER_METRICS_ADDR=:9090
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 CMD ["/worker", "healthcheck"]
ENTRYPOINT ["/worker"]
CMD ["run"]
