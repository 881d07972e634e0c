//go:build tools

// Package tools pins Istio's pilot-discovery (istiod), the comparison target
// of `make bench-convergence` (docs/performance.md): scripts/istiod.sh builds
// it from this module into a cache directory. Its own module so Istio's
// dependency graph never touches the main module's go.mod.
package tools

import (
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
