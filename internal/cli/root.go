// Package cli holds the horizon command and its subcommands.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/bootstrap"
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Run executes the horizon command with args and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var ue usageError
		var be bootstrap.UsageError
		if errors.As(err, &ue) || errors.As(err, &be) {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

// usageError marks a bad flag or argument (exit code 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// NewRootCommand builds the horizon command tree writing to the given streams.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "horizon",
		Short:         "Horizon: cluster-aware service routing for Envoy across networks",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	root.AddCommand(newTranslateCommand(stdout, logger), newDiscoveryCommand(logger), newAgentCommand(logger), newVersionCommand(stdout), newManifestCommand(stdout),
		newInstallCommand(stdout), newUninstallCommand(stdout))
	root.AddCommand(newCreateRemoteSecretCommand(stdout))
	root.AddCommand(newInjectorCommand(logger))
	root.AddCommand(newLabCommand(stdout))
	return root
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(stdout, Version)
			return err
		},
	}
}
