package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/k8sproc"
	"github.com/horizonmesh/horizon/internal/lab"
)

func newLabCommand(stdout io.Writer) *cobra.Command {
	o := lab.Options{}
	cmd := &cobra.Command{
		Use:   "lab up|down|env|status",
		Short: "Two real Kubernetes control planes, cluster1 and cluster2, on this machine",
		Long: `lab runs two Kubernetes control planes on this machine, no cloud, no
containers: for each of cluster1 (service CIDR 10.96.0.0/16) and cluster2
(10.97.0.0/16) etcd, kube-apiserver (RBAC, service-account tokens through the
TokenRequest API, admission incl. ServiceAccount and MutatingAdmissionWebhook),
kube-controller-manager (all controllers, service-account credentials) and
kube-scheduler, as background processes on loopback ports.

Everything the lab writes is in --state-dir: lab.json (processes, PIDs,
ports), kubeconfig (contexts cluster1 and cluster2, admin certificates), and
per cluster certificates, etcd's data and each process's log.

The binaries come from scripts/k8s-bins.sh, in $` + k8sproc.BinDirEnv + ` (default
` + k8sproc.DefaultBinDir() + `):
  ` + k8sproc.BuildHint + `

The lab has no nodes yet: Pods are scheduled to Node objects you create.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&o.StateDir, "state-dir", lab.DefaultStateDir(), "directory for everything the lab writes")
	cmd.PersistentFlags().StringVar(&o.BinDir, "bin-dir", "", "directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler (default $"+k8sproc.BinDirEnv+", else "+k8sproc.DefaultBinDir()+")")

	up := &cobra.Command{
		Use:   "up",
		Short: "Start both clusters and wait until they are ready (cleans what a crashed lab left first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Progress = cmd.ErrOrStderr()
			already, err := lab.Up(ctx, o)
			if err != nil {
				return err
			}
			if already {
				fmt.Fprintln(stdout, "The lab is already up. Use it with:")
			} else {
				fmt.Fprintln(stdout, "The lab is up. Use it with:")
			}
			abs, err := filepath.Abs(o.StateDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  eval \"$(horizon lab env --state-dir %s)\"\n  kubectl --context \"$CTX_LOCAL\" get namespaces\n", abs)
			return nil
		},
	}
	up.Flags().DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long to wait for both clusters to be ready")

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop every lab process (SIGTERM, then SIGKILL) and remove the lab's files from the state directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = cmd.ErrOrStderr()
			_, err := lab.Down(cmd.Context(), o)
			return err
		},
	}
	down.Flags().DurationVar(&o.StopGrace, "grace", 10*time.Second, "how long each process has to exit after SIGTERM before SIGKILL")

	env := &cobra.Command{
		Use:   "env",
		Short: "Print the shell exports for the lab: KUBECONFIG, CTX_LOCAL=cluster1, CTX_REMOTE=cluster2",
		Long:  "Use as: eval \"$(horizon lab env)\"",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(lab.KubeconfigPath(o.StateDir)); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the lab is not up (%v); `horizon lab up` starts it\n", err)
			}
			_, err := fmt.Fprint(stdout, lab.Env(o.StateDir))
			return err
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show each cluster's components (running, PID, port, health) and Pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			return lab.Status(ctx, o, stdout)
		},
	}
	cmd.AddCommand(up, down, env, status)
	return cmd
}
