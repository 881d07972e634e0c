//go:build tools

// Package tools pins Istio's pilot-discovery (istiod), the comparison target
// of `make bench-convergence` (docs/performance.md), and Istio's sidecar
// agent pilot-agent, which the integration tests run unmodified against
// Horizon, and istioctl, whose offline kube-inject gives the integration
// tests the pod spec Istio's injector makes: scripts/istiod.sh builds each
// from this module into a cache directory. Its own module so Istio's
// dependency graph never touches the main module's go.mod.
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-agent"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
