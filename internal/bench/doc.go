// Package bench holds `make bench-convergence` (docs/performance.md): a real
// kube-apiserver (internal/testing/kubeharness), a control plane watching it
// as a subprocess (bin/horizon discovery, or Istio's pilot-discovery built by
// scripts/istiod.sh), M ADS clients on two networks requesting CDS and EDS,
// Services and EndpointSlices written through the API, and endpoint churn
// written through the API. It measures, per change, the time from the write
// to the slowest client holding the new state, the control plane's CPU and
// peak RSS, and the bytes the clients received.
//
// Everything is behind the `bench` build tag: it needs the cached Kubernetes
// binaries, minutes and both cores, so neither `go test ./...` nor .ci/run
// runs it.
package bench
