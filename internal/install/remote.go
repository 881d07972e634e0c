package install

import "k8s.io/apimachinery/pkg/runtime"

// remoteObjects: a remote cluster runs no discovery. Today it gets its
// namespace labelled with its network (and, with Gateway, its east-west
// gateway pointed at the primary's discovery); the sidecar injector that
// gives its pods their own CLUSTER_ID and NETWORK is not rendered yet.
func remoteObjects(Settings) []runtime.Object { return nil }
