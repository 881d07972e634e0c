//go:build tools

// Package tools pins etcd 3.6 for the integration tests' API servers (its own
// module: Kubernetes 1.37's etcd client wants 3.7 libraries).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
