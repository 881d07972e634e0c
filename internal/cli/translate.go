package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/offline"
	"github.com/horizonmesh/horizon/internal/source/istio"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/xds/render"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

type translateFlags struct {
	clusters        []string
	meshNetworks    string
	gateways        string
	rules           string
	localityFO      bool
	proxyNetwork    string
	proxyCluster    string
	role            string
	proxyIPs        []string
	labels          []string
	typ             string
	name            string
	output          string
	domainSuffix    string
	systemNamespace string
	trustDomain     string
	outboundPolicy  string
	peerAuth        string
	defaultMTLS     string
	rootNamespace   string
}

func newTranslateCommand(stdout io.Writer, logger *slog.Logger) *cobra.Command {
	var f translateFlags
	cmd := &cobra.Command{
		Use:   "translate --cluster ID=PATH [--cluster ID=PATH ...] --proxy-network NET [--type all|cds|eds|lds|rds|nds] [--role sidecar|router]",
		Short: "Print the xDS resources a proxy would receive, offline — built as discovery builds them",
		Long: `translate reads cluster snapshots (directories or multi-document YAML files of
Namespaces, Services, EndpointSlices, Pods and Nodes), an optional meshNetworks
file, optional Istio Gateways, DestinationRules and PeerAuthentications, and prints what a proxy would receive from
horizon discovery — the same classification into views and the same build —
as Envoy proto3 JSON (or YAML): EDS load assignments (split horizon applied),
CDS clusters, LDS listeners, RDS routes, or all of them.

A sidecar (--role sidecar) is placed by --proxy-network (EDS), --proxy-cluster
(CDS, LDS, RDS: routes name its cluster's ClusterIPs; listeners reach its
cluster's headless pods) and --proxy-ip (its workload's addresses: the ports
of the endpoints there are its inbound side, their namespace's services are
routed by their bare names too, and their Node's locality orders the
endpoints of services with a locality policy, from --destination-rules or
--locality-failover).
A network gateway (--role router) by --proxy-network and --label (the
Gateways of --gateways whose selector matches are its listeners and
clusters); routers get no routes. An empty --proxy-network ("") is a proxy
on no network.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Checked here rather than with MarkFlagRequired so that it is a
			// usage error (exit 2) like every other bad flag.
			if !cmd.Flags().Changed("proxy-network") {
				return cmdutil.Usagef(`--proxy-network is required (use --proxy-network "" for a proxy on no network)`)
			}
			return runTranslate(cmd.Context(), f, stdout, logger)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.clusters, "cluster", nil, "a cluster snapshot as ID=PATH (repeatable)")
	fl.StringVar(&f.meshNetworks, "mesh-networks", "", "meshNetworks file (YAML or JSON; ConfigMap, values or plain form)")
	fl.StringVar(&f.proxyNetwork, "proxy-network", "", "network of the proxy (required; \"\" for none)")
	fl.StringVar(&f.proxyCluster, "proxy-cluster", "", "cluster ID of the proxy")
	fl.StringVar(&f.role, "role", "sidecar", "the proxy: sidecar or router (a network gateway)")
	fl.StringArrayVar(&f.proxyIPs, "proxy-ip", nil, "an address of the sidecar's workload (repeatable): its endpoints' ports are the inbound side")
	fl.StringArrayVar(&f.labels, "label", nil, "a label KEY=VALUE of the router's workload (repeatable): selects its Gateways")
	fl.StringVar(&f.gateways, "gateways", "", "file of Istio Gateway resources (networking.istio.io), for --role router")
	fl.StringVar(&f.rules, "destination-rules", "", "file of Istio DestinationRule resources (networking.istio.io): locality failover, outlier detection, connection pools")
	fl.BoolVar(&f.localityFO, "locality-failover", false, "as discovery's --locality-failover: Istio's locality failover for every service without a DestinationRule")
	fl.StringVar(&f.typ, "type", "eds", "resource type: eds, cds, lds, rds, nds (Istio's DNS name table), or all (every Envoy type)")
	fl.StringVar(&f.name, "name", "", "print only this resource, e.g. 'outbound|80||svc.ns.svc.cluster.local'")
	fl.StringVarP(&f.output, "output", "o", "json", "output format: json or yaml")
	fl.StringVar(&f.domainSuffix, "domain-suffix", model.DefaultDomainSuffix, "domain suffix of service hostnames")
	fl.StringVar(&f.trustDomain, "trust-domain", translate.DefaultTrustDomain, "SPIFFE trust domain (CDS: the identities servers are checked against)")
	fl.StringVar(&f.outboundPolicy, "outbound-traffic-policy", translate.AllowAny, "where a sidecar sends traffic to destinations the mesh does not know: ALLOW_ANY (to the original destination) or REGISTRY_ONLY (BlackHoleCluster), as Istio's meshConfig.outboundTrafficPolicy")
	fl.StringVar(&f.peerAuth, "peer-authentications", "", "file of Istio PeerAuthentication resources (security.istio.io v1 or v1beta1): the inbound mTLS mode per workload port")
	fl.StringVar(&f.defaultMTLS, "default-mtls-mode", string(model.DefaultMTLSMode), "the mode where no PeerAuthentication says: PERMISSIVE (Istio's default) or STRICT, as discovery's --default-mtls-mode")
	fl.StringVar(&f.rootNamespace, "root-namespace", "istio-system", "namespace whose PeerAuthentications without selector are mesh-wide (discovery's --namespace)")
	fl.StringVar(&f.systemNamespace, "system-namespace", "istio-system", "namespace whose topology.istio.io/network label names a cluster's network")
	return cmd
}

// translateTypes maps --type values to the xDS types they print.
var translateTypes = map[string][]string{
	"cds": {resource.ClusterType}, "eds": {resource.EndpointType}, "lds": {resource.ListenerType}, "rds": {resource.RouteType},
	"nds": {translate.NameTableType},
	"all": translate.Types,
}

func (f translateFlags) validate() ([]manifest.ClusterSource, error) {
	if _, ok := translateTypes[f.typ]; !ok {
		return nil, cmdutil.Usagef("--type %q: must be eds, cds, lds, rds, nds or all", f.typ)
	}
	if f.role != "sidecar" && f.role != "router" {
		return nil, cmdutil.Usagef("--role %q: must be sidecar or router", f.role)
	}
	if f.role == "router" && f.typ == "rds" {
		return nil, cmdutil.Usagef("--type rds: a router (network gateway) gets no routes")
	}
	if f.role == "router" && f.typ == "nds" {
		return nil, cmdutil.Usagef("--type nds: a router (network gateway) gets no name table")
	}
	if f.output != "json" && f.output != "yaml" {
		return nil, cmdutil.Usagef("--output %q: must be json or yaml", f.output)
	}
	if err := model.ValidateTrustDomain(f.trustDomain); err != nil {
		return nil, cmdutil.Usagef("--trust-domain: %v", err)
	}
	if err := translate.ValidateOutboundTrafficPolicy(f.outboundPolicy); err != nil {
		return nil, cmdutil.Usagef("--outbound-traffic-policy: %v", err)
	}
	if err := model.ValidateDefaultMTLSMode(f.defaultMTLS); err != nil {
		return nil, cmdutil.Usagef("--default-mtls-mode: %v", err)
	}
	if f.name != "" && (f.typ == "cds" || f.typ == "eds") {
		podCluster := f.typ == "cds" && translate.IsPodClusterName(f.name) // a headless service's
		if _, _, err := translate.ParseClusterName(f.name); err != nil && f.name != translate.PassthroughCluster && !podCluster {
			return nil, cmdutil.Usagef("--name: %v", err)
		}
	}
	for _, ip := range f.proxyIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, cmdutil.Usagef("--proxy-ip %q: not an IP address", ip)
		}
	}
	for _, l := range f.labels {
		if k, _, ok := strings.Cut(l, "="); !ok || k == "" {
			return nil, cmdutil.Usagef("--label %q: want KEY=VALUE", l)
		}
	}
	if f.proxyCluster != "" {
		if err := model.ValidateClusterID(f.proxyCluster); err != nil {
			return nil, cmdutil.Usagef("--proxy-cluster %q: invalid cluster ID", f.proxyCluster)
		}
	}
	if len(f.clusters) == 0 {
		return nil, cmdutil.Usagef("--cluster: at least one ID=PATH is required")
	}
	var out []manifest.ClusterSource
	for _, c := range f.clusters {
		cs, err := manifest.ParseClusterFlag(c)
		if err != nil {
			return nil, cmdutil.Usage(err)
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
		Clusters:                clusters,
		MeshNetworksFile:        f.meshNetworks,
		DomainSuffix:            f.domainSuffix,
		SystemNamespace:         f.systemNamespace,
		Resolver:                net.DefaultResolver,
		DestinationRulesFile:    f.rules,
		LocalityFailover:        f.localityFO,
		PeerAuthenticationsFile: f.peerAuth,
		RootNamespace:           f.rootNamespace,
		DefaultMTLSMode:         model.MTLSMode(f.defaultMTLS),
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

	in := translate.Input{Mesh: m, Options: translate.Options{TrustDomain: f.trustDomain, OutboundTrafficPolicy: f.outboundPolicy}}
	if f.gateways != "" {
		gws, diags := istio.LoadGatewaysFile(f.gateways)
		if err := diags.Err(); err != nil {
			return fmt.Errorf("invalid input:\n%w", err)
		}
		in.Gateways = gws
	}
	claim := translate.Claim{Router: f.role == "router", Network: f.proxyNetwork, Cluster: model.ClusterID(f.proxyCluster)}
	for _, ip := range f.proxyIPs {
		claim.IPs = append(claim.IPs, netip.MustParseAddr(ip)) // validated
	}
	if claim.Router {
		claim.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			claim.Labels[k] = v
		}
	}
	p, _ := translate.ProxyOf(m, claim)
	byType := map[string][]proto.Message{}
	var all []proto.Message
	for _, typeURL := range translateTypes[f.typ] {
		view, ok := translate.ViewOf(typeURL, p)
		if !ok {
			continue // routers get no routes
		}
		res := sortedResources(translate.Build(in, typeURL, view))
		byType[typeURL] = res
		all = append(all, res...)
	}
	if f.name != "" {
		one, err := pick(all, f.name)
		if err != nil {
			return err
		}
		raw, err := render.Resource(one)
		if err != nil {
			return err
		}
		return write(stdout, f.output, raw)
	}
	if f.typ != "all" {
		list, err := render.Resources(all)
		if err != nil {
			return err
		}
		return write(stdout, f.output, list)
	}
	doc := map[string]any{}
	for typeURL, res := range byType {
		list, err := render.Resources(res)
		if err != nil {
			return err
		}
		doc[translateTypeKey(typeURL)] = list
	}
	return write(stdout, f.output, doc)
}

// translateTypeKey names a type in --type all's document.
func translateTypeKey(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "clusters"
	case resource.EndpointType:
		return "endpoints"
	case resource.ListenerType:
		return "listeners"
	}
	return "routes"
}

// sortedResources lists a view's resources by name.
func sortedResources(res map[string]types.Resource) []proto.Message {
	names := make([]string, 0, len(res))
	for n := range res {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]proto.Message, 0, len(names))
	for _, n := range names {
		out = append(out, res[n])
	}
	return out
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
	return nil, fmt.Errorf("--name %q: no such resource (no such cluster); known: %s", name, strings.Join(names, ", "))
}

func write(w io.Writer, format string, v any) error {
	b, err := render.Document(format, v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
