// Package horizondiscovery is the horizon-discovery program, what the
// discovery image runs (as Istio's pilot-discovery): `discovery`, the
// control plane, and `injector`, a remote cluster's sidecar injector. The
// commands are shells over internal/bootstrap, which holds the application.
package horizondiscovery

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/cmdutil"
)

// Run executes horizon-discovery with args and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	return cmdutil.Run(NewRootCommand(stdout, stderr), args, stderr)
}

// NewRootCommand builds the horizon-discovery command tree writing to the
// given streams.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := cmdutil.NewRoot("horizon-discovery", "Horizon's control plane: discovery (xDS, CA, injection) and a remote cluster's injector", stdout, stderr)
	logger := cmdutil.Logger(stderr)
	root.AddCommand(newDiscoveryCommand(logger), newInjectorCommand(logger), cmdutil.VersionCommand(stdout))
	return root
}
