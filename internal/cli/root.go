// Package cli holds the horizon command, Horizon's CLI (as Istio's
// istioctl): translate, manifest generate, install, uninstall,
// create-remote-secret, proxy-status, lab and version. The control plane and the proxy
// agent are programs of their own (internal/cmd/horizondiscovery,
// internal/cmd/horizonagent).
package cli

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/cmdutil"
)

// Run executes the horizon command with args and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	return cmdutil.Run(NewRootCommand(stdout, stderr), args, stderr)
}

// NewRootCommand builds the horizon command tree writing to the given streams.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := cmdutil.NewRoot("horizon", "Horizon: cluster-aware service routing for Envoy across networks", stdout, stderr)
	logger := cmdutil.Logger(stderr)
	root.AddCommand(newTranslateCommand(stdout, logger), cmdutil.VersionCommand(stdout), newManifestCommand(stdout),
		newInstallCommand(stdout), newUninstallCommand(stdout))
	root.AddCommand(newCreateRemoteSecretCommand(stdout))
	root.AddCommand(newLabCommand(stdout))
	root.AddCommand(newProxyConfigCommand(stdout, logger), newTopologyCommand(stdout), newCheckCommand(stdout))
	root.AddCommand(newProxyStatusCommand(stdout, stderr))
	return root
}
