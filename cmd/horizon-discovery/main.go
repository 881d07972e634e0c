// Command horizon-discovery is Horizon's control plane, what the discovery
// image runs: `horizon-discovery discovery` (xDS, the CA, sidecar
// injection) and `horizon-discovery injector` (a remote cluster's injector).
package main

import (
	"os"

	"github.com/horizonmesh/horizon/internal/cmd/horizondiscovery"
)

func main() {
	os.Exit(horizondiscovery.Run(os.Args[1:], os.Stdout, os.Stderr))
}
