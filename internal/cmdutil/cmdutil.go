// Package cmdutil is the command plumbing Horizon's programs share — the
// horizon CLI, horizon-discovery and horizon-agent: the root command's
// settings, the logger, the version, and exit code 2 for a bad flag or
// argument. It imports nothing of Horizon's, so a program that uses it
// carries only what its own commands need.
package cmdutil

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// Version is set at build time with
// -ldflags "-X github.com/horizonmesh/horizon/internal/cmdutil.Version=...".
var Version = "dev"

// UsageError marks a bad flag or argument: Run exits 2 on it.
type UsageError struct{ error }

func (u UsageError) Unwrap() error { return u.error }

// Usage marks err as a usage error (nil stays nil).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return UsageError{err}
}

// Usagef is a usage error formatted as fmt.Errorf formats.
func Usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// NewRoot is a program's root command writing to the given streams: errors
// are printed once by Run, not by cobra, and a flag cobra cannot parse is a
// usage error.
func NewRoot(use, short string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           use,
		Short:         short,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	return root
}

// Logger is the programs' logger: text to stderr at level info.
func Logger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// VersionCommand prints Version.
func VersionCommand(stdout io.Writer) *cobra.Command {
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

// Run executes root with args and returns the exit code: 0, 2 for a
// UsageError, 1 for any other error, printed to stderr.
func Run(root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	if errors.As(err, new(UsageError)) {
		return 2
	}
	return 1
}
