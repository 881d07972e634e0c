package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/proxystatus"
)

func newProxyStatusCommand(stdout, stderr io.Writer) *cobra.Command {
	var cf clusterFlags
	var namespace, xdsAddress, xdsSAN, output string
	var plaintext bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "proxy-status",
		Aliases: []string{"ps"},
		Short:   "Show every connected proxy of every discovery replica and whether it has its config (SYNCED, STALE, NACKED)",
		Long: `proxy-status asks each discovery replica for the client status of its proxies over CSDS
(envoy.service.status.v3) and shows, per proxy, its view (cluster, network, role, locality)
and per resource type (CDS, LDS, EDS, RDS, NDS) whether it acknowledged what it was sent last
(SYNCED), has not yet (STALE) or rejected it (NACKED, with the proxy's error in -o json/yaml),
with how long it has been so; "-" is a type the proxy does not ask for.

Without --xds-address it finds discovery through the cluster (--kubeconfig, --context): the
running pods labelled app=horizon in --namespace, each reached by port-forward on its TLS port
(15012) with a token of the namespace's "default" ServiceAccount (audience istio-ca), trusting
the root discovery publishes in ConfigMap istio-ca-root-cert. With --xds-address it asks that
one address: over TLS the same way (the token and root still come from the cluster), or with
--plaintext on discovery's plaintext port, which needs neither.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "json", "yaml":
			default:
				return cmdutil.Usagef("-o %q: table, json or yaml", output)
			}
			if plaintext && xdsAddress == "" {
				return cmdutil.Usagef("--plaintext needs --xds-address (replicas found through the cluster are reached on their TLS port)")
			}
			if xdsSAN == "" {
				xdsSAN = proxystatus.ServerName(namespace)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			targets, err := proxyStatusTargets(ctx, cf, namespace, xdsAddress, xdsSAN, plaintext)
			if err != nil {
				return err
			}
			var rows []proxystatus.Row
			var failed []error
			for _, t := range targets {
				r, err := t.fetch(ctx)
				if err != nil {
					fmt.Fprintf(stderr, "proxy-status: replica %s: %v\n", t.name, err)
					failed = append(failed, err)
					continue
				}
				rows = append(rows, r...)
			}
			proxystatus.Sort(rows)
			if err := proxystatus.Render(stdout, output, rows, time.Now()); err != nil {
				return err
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d replicas did not answer", len(failed), len(targets))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cf.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
	f.StringVar(&cf.context, "context", "", "kubeconfig context (default: the current one)")
	f.StringVarP(&namespace, "namespace", "n", install.Defaults().Namespace, "the control plane's namespace")
	f.StringVar(&xdsAddress, "xds-address", "", "ask this discovery address (host:port) instead of finding the replicas through the cluster")
	f.BoolVar(&plaintext, "plaintext", false, "--xds-address is discovery's plaintext xDS port (15010, trusted networks only)")
	f.StringVar(&xdsSAN, "xds-san", "", "the name to check in discovery's certificate (default horizon.<namespace>.svc)")
	f.StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// replicaTarget is one replica to ask: how to reach it, made when asked
// (a port-forward lives as long as the command).
type replicaTarget struct {
	name  string
	fetch func(context.Context) ([]proxystatus.Row, error)
}

func proxyStatusTargets(ctx context.Context, cf clusterFlags, namespace, xdsAddress, xdsSAN string, plaintext bool) ([]replicaTarget, error) {
	if xdsAddress != "" && plaintext {
		t := proxystatus.Target{Name: xdsAddress, Addr: xdsAddress}
		return []replicaTarget{{name: t.Name, fetch: func(ctx context.Context) ([]proxystatus.Row, error) { return proxystatus.Fetch(ctx, t) }}}, nil
	}
	cfg, err := cf.restConfig()
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := proxystatus.Cluster{Config: cfg, Client: client, Namespace: namespace}
	creds, token, err := c.Credentials(ctx, xdsSAN)
	if err != nil {
		return nil, err
	}
	if xdsAddress != "" {
		t := proxystatus.Target{Name: xdsAddress, Addr: xdsAddress, TLS: creds, Token: token}
		return []replicaTarget{{name: t.Name, fetch: func(ctx context.Context) ([]proxystatus.Row, error) { return proxystatus.Fetch(ctx, t) }}}, nil
	}
	pods, err := c.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	var out []replicaTarget
	for _, p := range pods {
		out = append(out, replicaTarget{name: p.Name, fetch: func(ctx context.Context) ([]proxystatus.Row, error) {
			addr, err := c.Forward(ctx, p.Name, install.PortSecure)
			if err != nil {
				return nil, err
			}
			return proxystatus.Fetch(ctx, proxystatus.Target{Name: p.Name, Addr: addr, TLS: creds, Token: token})
		}})
	}
	if len(out) == 0 {
		return nil, errors.New("no discovery replica")
	}
	return out, nil
}
