package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/topology"
)

func newTopologyCommand(stdout io.Writer) *cobra.Command {
	var (
		f       proxyConfigFlags
		output  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "topology [-o text|svg|json]",
		Short: "Show the mesh as discovery sees it: networks, gateways, clusters, endpoints behind each gateway",
		Long: `topology asks discovery (the running pod labelled app=horizon in --istio-namespace,
its ops port's /debug/topology, through a port-forward) for the mesh and prints
its networks, their gateways (address and how each was found: meshNetworks,
the topology.istio.io/network label, LoadBalancer status, external IPs, DNS),
the clusters and their sync state, and per service the endpoints on each
network and behind each gateway: as text, or as an SVG picture for a browser
(discovery also serves it live at /ui/topology on its ops port).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "svg" && output != "json" {
				return cmdutil.Usagef("--output %q: want text, svg or json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			top, err := fetchTopology(ctx, f)
			if err != nil {
				return err
			}
			switch output {
			case "svg":
				return topology.SVG(stdout, top)
			case "json":
				return write(stdout, "json", top)
			}
			return topology.Text(stdout, top)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cluster.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.cluster.context, "context", "", "kubeconfig context of the cluster discovery runs in (default: the current one)")
	fl.StringVar(&f.istioNamespace, "istio-namespace", "istio-system", "discovery's namespace")
	fl.IntVar(&f.opsPort, "ops-port", 15014, "discovery's ops (HTTP) port in its pod")
	fl.StringVarP(&output, "output", "o", "text", "text, svg or json")
	fl.DurationVar(&timeout, "timeout", time.Minute, "bound on the whole command")
	return cmd
}

// fetchTopology reads discovery's /debug/topology.
func fetchTopology(ctx context.Context, f proxyConfigFlags) (topology.Topology, error) {
	var top topology.Topology
	acc, err := newPodAccess(f.cluster)
	if err != nil {
		return top, err
	}
	disc, err := f.discovery(ctx, acc)
	if err != nil {
		return top, err
	}
	b, err := disc.get(ctx, "/debug/topology")
	if err != nil {
		return top, err
	}
	if err := json.Unmarshal(b, &top); err != nil {
		return top, fmt.Errorf("discovery %s: /debug/topology: %w", disc.pod, err)
	}
	return top, nil
}
