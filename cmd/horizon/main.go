// Command horizon is the Horizon service-mesh control plane.
package main

import (
	"os"

	"github.com/horizonmesh/horizon/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
