// Command horizon-agent is Horizon's proxy agent, what the proxy image
// runs: `horizon-agent agent` beside a workload (or --router, a network
// gateway) and `horizon-agent agent iptables` (the capture init container).
package main

import (
	"os"

	"github.com/horizonmesh/horizon/internal/cmd/horizonagent"
)

func main() {
	os.Exit(horizonagent.Run(os.Args[1:], os.Stdout, os.Stderr))
}
