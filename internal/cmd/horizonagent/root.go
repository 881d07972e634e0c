// Package horizonagent is the horizon-agent program, what the proxy image
// runs (as Istio's pilot-agent): `agent` beside a workload or as a network
// gateway (--router), and `agent iptables`, the capture init container. The
// commands are shells over internal/agent.
package horizonagent

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/cmdutil"
)

// Run executes horizon-agent with args and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	return cmdutil.Run(NewRootCommand(stdout, stderr), args, stderr)
}

// NewRootCommand builds the horizon-agent command tree writing to the given
// streams.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := cmdutil.NewRoot("horizon-agent", "Horizon's proxy agent: Envoy beside a workload or as a gateway, and traffic capture", stdout, stderr)
	root.AddCommand(newAgentCommand(cmdutil.Logger(stderr)), cmdutil.VersionCommand(stdout))
	return root
}
