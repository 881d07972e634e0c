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
		Use:   "lab up|down|env|status|demo",
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
` + "`lab env`" + ` puts that directory's kubectl first on PATH.

Each cluster has a lab node (Node cluster1-node, cluster2-node; labels
topology.kubernetes.io/region and zone region1/zone1, region2/zone2): a
kubelet stand-in, ` + "`horizon lab node`" + `, that runs each Pod as local processes
in the Pod's own network namespace. It serves the kubelet API on its
InternalIP (the router's address, port ` + fmt.Sprint(lab.KubeletPort) + `), so ` + "`kubectl logs`" + ` (-f, --tail,
--since, --previous; logs rotated at 10 MiB, 5 files per container run),
` + "`kubectl exec`" + ` (with and without -t), ` + "`attach`, `port-forward` and `cp`" + ` work as
on a real cluster. Networks: network1 (cluster1's pods,
10.51.0.0/24, router 10.51.0.1) and network2 (cluster2's, 10.52.0.0/24) with
no route between them; a public segment 203.0.113.0/24 (TEST-NET-3) joins
their routers (203.0.113.1, .2), which masquerade onto it. LoadBalancer
Services get an address there (cluster1: .10-.19, cluster2: .20-.29), which
the router DNATs to the Service's ready pods; ClusterIPs are DNATed on the
router too (a sidecar's capture takes them before they leave the pod), and
NAME.NS, NAME.NS.svc and NAME.NS.svc.cluster.local resolve to them through
the /etc/hosts every container sees. Pods reach their API server as in a
real cluster (the kubernetes Service, KUBERNETES_SERVICE_HOST), and another
cluster's at its router's public address on port 443 (203.0.113.1 for
cluster1, .2 for cluster2; the lab node proxies to the loopback API server,
whose certificate names these addresses). Namespaces and interfaces start with
` + lab.NetPrefix + `; every iptables rule is inside a lab namespace.`,
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
	up.Flags().StringVar(&o.Horizon, "horizon", "", "the horizon binary the lab nodes run; horizon-discovery and horizon-agent next to it stand in for Horizon's images (default: this executable)")
	up.Flags().StringVar(&o.Helloworld, "helloworld", "", "the helloworld program for istio/examples-helloworld-vN images (default: helloworld next to --horizon, as `make build` puts it)")
	up.Flags().StringVar(&o.Envoy, "envoy", "", "the Envoy binary for horizon/proxy images (default $"+lab.EnvoyEnv+", else where scripts/envoy.sh installs it: "+lab.DefaultEnvoy()+")")

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
		Short: "Print the shell exports for the lab: KUBECONFIG, CTX_LOCAL=cluster1, CTX_REMOTE=cluster2, PATH with the lab's kubectl first",
		Long:  "Use as: eval \"$(horizon lab env)\"",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(lab.KubeconfigPath(o.StateDir)); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the lab is not up (%v); `horizon lab up` starts it\n", err)
			}
			_, err := fmt.Fprint(stdout, lab.EnvOf(o))
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
	var node lab.NodeOptions
	nodeCmd := &cobra.Command{
		Use:    "node --cluster NAME",
		Short:  "Run a cluster's lab node (started by `horizon lab up`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			node.StateDir = o.StateDir
			// horizon-discovery and horizon-agent stand in for Horizon's
			// images: next to this executable, where `lab up` checked them.
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			node.Programs.Discovery, node.Programs.Agent = lab.ImagePrograms(exe)
			return lab.RunNode(ctx, node)
		},
	}
	nodeCmd.Flags().StringVar(&node.Cluster, "cluster", "", "the lab cluster (cluster1, cluster2)")
	nodeCmd.Flags().StringVar(&node.Programs.Helloworld, "helloworld", "", "helloworld program")
	nodeCmd.Flags().StringVar(&node.Programs.Envoy, "envoy", "", "Envoy binary")

	var demo lab.DemoOptions
	demoCmd := &cobra.Command{
		Use:   "demo",
		Short: "On a lab that is up, run the multicluster walkthrough Horizon's way (docs/install.md) and check its result",
		Long: `demo runs the walkthrough on the lab, printing each step as the command a
person would type and its result; every kubectl command is run as printed
(after the ` + "`lab env`" + ` line it starts with), so it can be copied. The
shared cacerts (root → intermediate) in
both clusters, ` + "`horizon install`" + ` on cluster1 (discovery as a Pod, the east-west
gateway, meshNetworks) and --remote on cluster2, cluster2's remote Secret in
cluster1, the sample namespace labelled istio-injection=enabled in both,
helloworld v2, tcp-echo and grpc-health in cluster2, v1 + the Gateway + sleep
and the Services of tcp-echo and grpc-health in cluster1 (the samples built
into this binary, or --samples), then curls helloworld.sample:5000/hello from
sleep and shows each answer's version with the upstream sleep's proxy logged
for it, then calls tcp-echo (TCP) and grpc-health (a gRPC health check) from
sleep. It fails unless both versions answer, v1 from its pod's address and v2
only through cluster2's gateway public address, and tcp-echo and
grpc-health answer through that gateway. With --failover it then applies
helloworld's DestinationRule (locality failover) and shows v1 answering
alone, v2 (through cluster2's gateway) once v1 is scaled to 0, and v1 again
once it is back; then it deletes the rule.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			demo.Options = o
			demo.Out = stdout
			demo.Horizon = Run
			_, err := lab.Demo(ctx, demo)
			return err
		},
	}
	demoCmd.Flags().StringVar(&demo.Samples, "samples", "", "a samples directory (helloworld/, sleep/, tcp-echo/, grpc-health/) instead of the samples built into this binary")
	demoCmd.Flags().IntVar(&demo.Requests, "requests", 20, "how many requests sleep sends")
	demoCmd.Flags().BoolVar(&demo.Failover, "failover", false, "add the locality failover step: helloworld's DestinationRule, v1 scaled to 0 and back")
	demoCmd.Flags().DurationVar(&demo.Timeout, "timeout", 3*time.Minute, "bound on each wait (rollouts, addresses, the mesh converging)")
	cmd.AddCommand(up, down, env, status, nodeCmd, demoCmd)
	return cmd
}
