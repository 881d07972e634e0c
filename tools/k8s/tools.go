//go:build tools

// Package tools pins the Kubernetes binaries Horizon's integration tests and
// `horizon lab` run: scripts/k8s-bins.sh builds them from this module (kubectl
// only to poke at a test cluster by hand; kube-controller-manager and
// kube-scheduler for the lab's clusters).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
