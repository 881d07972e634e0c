package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/offline"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/xds/render"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

type translateFlags struct {
	clusters        []string
	meshNetworks    string
	proxyNetwork    string
	proxyCluster    string
	typ             string
	name            string
	output          string
	domainSuffix    string
	systemNamespace string
	trustDomain     string
}

func newTranslateCommand(stdout io.Writer, logger *slog.Logger) *cobra.Command {
	var f translateFlags
	cmd := &cobra.Command{
		Use:   "translate --cluster ID=PATH [--cluster ID=PATH ...] --proxy-network NET",
		Short: "Print the xDS resources a sidecar on a network would receive, offline",
		Long: `translate reads cluster snapshots (directories or multi-document YAML files of
Namespaces, Services, EndpointSlices, Pods and Nodes) and an optional meshNetworks
file, and prints what a sidecar on --proxy-network would receive: EDS load
assignments (split horizon applied) or CDS clusters, as Envoy proto3 JSON.

An empty --proxy-network ("") is a proxy on no network. --proxy-cluster is
recorded for symmetry with live proxies; EDS depends only on the network.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Checked here rather than with MarkFlagRequired so that it is a
			// usage error (exit 2) like every other bad flag.
			if !cmd.Flags().Changed("proxy-network") {
				return usageErrorf(`--proxy-network is required (use --proxy-network "" for a proxy on no network)`)
			}
			return runTranslate(cmd.Context(), f, stdout, logger)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.clusters, "cluster", nil, "a cluster snapshot as ID=PATH (repeatable)")
	fl.StringVar(&f.meshNetworks, "mesh-networks", "", "meshNetworks file (YAML or JSON; ConfigMap, values or plain form)")
	fl.StringVar(&f.proxyNetwork, "proxy-network", "", "network of the proxy (required; \"\" for none)")
	fl.StringVar(&f.proxyCluster, "proxy-cluster", "", "cluster ID of the proxy")
	fl.StringVar(&f.typ, "type", "eds", "resource type: eds or cds")
	fl.StringVar(&f.name, "name", "", "print only this cluster, e.g. 'outbound|80||svc.ns.svc.cluster.local'")
	fl.StringVarP(&f.output, "output", "o", "json", "output format: json or yaml")
	fl.StringVar(&f.domainSuffix, "domain-suffix", model.DefaultDomainSuffix, "domain suffix of service hostnames")
	fl.StringVar(&f.trustDomain, "trust-domain", translate.DefaultTrustDomain, "SPIFFE trust domain (CDS: the identities servers are checked against)")
	fl.StringVar(&f.systemNamespace, "system-namespace", "istio-system", "namespace whose topology.istio.io/network label names a cluster's network")
	return cmd
}

func (f translateFlags) validate() ([]manifest.ClusterSource, error) {
	if f.typ != "eds" && f.typ != "cds" {
		return nil, usageErrorf("--type %q: must be eds or cds", f.typ)
	}
	if f.output != "json" && f.output != "yaml" {
		return nil, usageErrorf("--output %q: must be json or yaml", f.output)
	}
	if f.name != "" {
		if _, _, err := translate.ParseClusterName(f.name); err != nil {
			return nil, usageErrorf("--name: %v", err)
		}
	}
	if f.proxyCluster != "" {
		if err := model.ValidateClusterID(f.proxyCluster); err != nil {
			return nil, usageErrorf("--proxy-cluster %q: invalid cluster ID", f.proxyCluster)
		}
	}
	if len(f.clusters) == 0 {
		return nil, usageErrorf("--cluster: at least one ID=PATH is required")
	}
	var out []manifest.ClusterSource
	for _, c := range f.clusters {
		cs, err := manifest.ParseClusterFlag(c)
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, cs)
	}
	return out, nil
}

func runTranslate(ctx context.Context, f translateFlags, stdout io.Writer, logger *slog.Logger) error {
	if ctx == nil {
		ctx = context.Background()
	}
	clusters, err := f.validate()
	if err != nil {
		return err
	}
	m, diags := offline.Load(ctx, offline.Options{
		Clusters:         clusters,
		MeshNetworksFile: f.meshNetworks,
		DomainSuffix:     f.domainSuffix,
		SystemNamespace:  f.systemNamespace,
		Resolver:         net.DefaultResolver,
	})
	for _, d := range diags.Warnings() {
		logger.Warn(d.String())
	}
	if err := diags.Err(); err != nil {
		return fmt.Errorf("invalid input:\n%w", err)
	}
	if f.proxyCluster != "" && !knownCluster(clusters, f.proxyCluster) {
		logger.Warn("--proxy-cluster names a cluster that no --cluster defines", "cluster", f.proxyCluster)
	}

	var resources []proto.Message
	switch f.typ {
	case "eds":
		for _, cla := range translate.EDS(m, translate.EDSView{Network: f.proxyNetwork}) {
			resources = append(resources, cla)
		}
	case "cds":
		for _, c := range translate.CDS(m, translate.Options{TrustDomain: f.trustDomain}) {
			resources = append(resources, c)
		}
	}
	if f.name != "" {
		one, err := pick(resources, f.name)
		if err != nil {
			return err
		}
		raw, err := render.Resource(one)
		if err != nil {
			return err
		}
		return write(stdout, f.output, raw)
	}
	list, err := render.Resources(resources)
	if err != nil {
		return err
	}
	return write(stdout, f.output, list)
}

func knownCluster(clusters []manifest.ClusterSource, id string) bool {
	for _, c := range clusters {
		if string(c.ID) == id {
			return true
		}
	}
	return false
}

type named interface{ GetName() string }
type clusterNamed interface{ GetClusterName() string }

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case named:
		return r.GetName()
	case clusterNamed:
		return r.GetClusterName()
	}
	return ""
}

func pick(resources []proto.Message, name string) (proto.Message, error) {
	var names []string
	for _, r := range resources {
		if resourceName(r) == name {
			return r, nil
		}
		names = append(names, resourceName(r))
	}
	return nil, fmt.Errorf("--name %q: no such cluster; known: %s", name, strings.Join(names, ", "))
}

func write(w io.Writer, format string, v any) error {
	b, err := render.Document(format, v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
