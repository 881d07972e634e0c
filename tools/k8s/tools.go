//go:build tools

// Package tools pins the Kubernetes binaries Horizon's integration tests run:
// scripts/k8s-bins.sh builds them from this module (kubectl only to poke at
// a test cluster by hand).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
