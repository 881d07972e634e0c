package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/ops"
	"github.com/horizonmesh/horizon/internal/xds/render"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// proxyConfigFlags locate the proxy and the discovery whose mesh explains
// its gateway endpoints.
type proxyConfigFlags struct {
	cluster          clusterFlags
	namespace        string
	discoveryContext string
	istioNamespace   string
	adminPort        int
	opsPort          int
	diff             bool
	name             string
	output           string
	timeout          time.Duration
}

func newProxyConfigCommand(stdout io.Writer, logger *slog.Logger) *cobra.Command {
	var f proxyConfigFlags
	cmd := &cobra.Command{
		Use:   "proxy-config endpoints|clusters|listeners|routes|secrets POD[.NAMESPACE] | deploy/NAME[.NAMESPACE]",
		Short: "Show what a proxy holds (its Envoy admin config_dump) in tables; for endpoints, what stands behind each gateway",
		Long: `proxy-config reads the proxy's Envoy admin /config_dump (127.0.0.1:15000 in the pod,
reached by a port-forward through the API server, as kubectl port-forward does;
Istio's sidecars and Horizon's agent both serve it there) and prints one table.

endpoints also asks discovery (the running pod labelled app=horizon in
--istio-namespace of --discovery-context, its ops port, /debug/gateways) what
stands behind each gateway endpoint the proxy holds: the network, the
cluster(s), the pods and how many of them its weight stands for. With --diff it
compares, load assignment by load assignment, what the proxy holds of its EDS
clusters with what discovery sends its network now (/debug/eds) and exits 1
on a difference.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return cmdutil.Usagef("want TYPE and POD: proxy-config endpoints|clusters|listeners|routes|secrets POD[.NAMESPACE]")
			}
			if !slices.Contains([]string{"endpoints", "clusters", "listeners", "routes", "secrets"}, args[0]) {
				return cmdutil.Usagef("%q: want endpoints, clusters, listeners, routes or secrets", args[0])
			}
			if f.diff && args[0] != "endpoints" {
				return cmdutil.Usagef("--diff: only for endpoints")
			}
			if !slices.Contains([]string{"table", "json", "yaml"}, f.output) {
				return cmdutil.Usagef("-o %q: want table, json or yaml", f.output)
			}
			if f.diff && f.output != "table" {
				return cmdutil.Usagef("--diff: only with -o table")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			return runProxyConfig(ctx, f, args[0], args[1], stdout, logger)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cluster.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.cluster.context, "context", "", "kubeconfig context of the proxy's cluster (default: the current one)")
	fl.StringVarP(&f.namespace, "namespace", "n", "default", "the pod's namespace when POD names none")
	fl.StringVar(&f.discoveryContext, "discovery-context", "", "kubeconfig context of the cluster discovery runs in (default: --context)")
	fl.StringVar(&f.istioNamespace, "istio-namespace", "istio-system", "discovery's namespace")
	fl.IntVar(&f.adminPort, "admin-port", 15000, "the proxy's Envoy admin port (on 127.0.0.1 in the pod)")
	fl.IntVar(&f.opsPort, "ops-port", 15014, "discovery's ops (HTTP) port in its pod")
	fl.BoolVar(&f.diff, "diff", false, "endpoints: compare with what discovery sends the proxy's network now; exit 1 when they differ")
	fl.StringVar(&f.name, "name", "", "endpoints: only this Envoy cluster, e.g. 'outbound|5000||helloworld.sample.svc.cluster.local'")
	fl.StringVarP(&f.output, "output", "o", "table", "table, or json/yaml: the resources as Envoy holds them (endpoints: one object per endpoint, with discovery's gateway description)")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "bound on the whole command")
	return cmd
}

func runProxyConfig(ctx context.Context, f proxyConfigFlags, typ, ref string, stdout io.Writer, logger *slog.Logger) error {
	acc, err := newPodAccess(f.cluster)
	if err != nil {
		return err
	}
	pod, err := acc.resolvePod(ctx, ref, f.namespace)
	if err != nil {
		return err
	}
	raw, err := acc.get(ctx, pod, f.adminPort, "/config_dump?include_eds")
	if err != nil {
		return fmt.Errorf("the proxy's config_dump: %w", err)
	}
	dump, err := parseConfigDump(raw)
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if typ != "endpoints" && f.output != "table" {
		return writeDocument(stdout, f.output, dump.resources(typ))
	}
	switch typ {
	case "clusters":
		return writeTable(stdout, []string{"NAME", "DIRECTION", "PORT", "HOST", "TYPE"}, dump.clusterRows())
	case "listeners":
		return writeTable(stdout, []string{"NAME", "ADDRESS", "FILTER CHAINS"}, dump.listenerRows())
	case "routes":
		return writeTable(stdout, []string{"NAME", "VIRTUAL HOST", "DOMAINS"}, dump.routeRows())
	case "secrets":
		return writeTable(stdout, []string{"NAME", "TYPE", "SERIAL", "NOT AFTER", "SANS"}, dump.secretRows())
	}
	clas, err := dump.loadAssignments("static_endpoint_configs", "dynamic_endpoint_configs")
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if f.name != "" {
		one, ok := clas[f.name]
		if !ok {
			return fmt.Errorf("--name %q: the proxy holds no such load assignment", f.name)
		}
		clas = map[string]*endpointv3.ClusterLoadAssignment{f.name: one}
	}
	node := dump.node()
	disc, derr := f.discovery(ctx, acc)
	var behind []translate.GatewayEndpoint
	if derr == nil {
		behind, derr = disc.gateways(ctx, node.Network)
	}
	if derr != nil {
		logger.Warn("what stands behind gateway endpoints is unknown", "error", derr)
	}
	rows := endpointRows(clas, behindText(behind, derr == nil))
	if f.output != "table" {
		return writeDocument(stdout, f.output, rows)
	}
	fmt.Fprintf(stdout, "proxy %s/%s (node %s, network %q, cluster %q)\n", pod.Namespace, pod.Name, node.ID, node.Network, node.Cluster)
	if err := writeEndpoints(stdout, rows); err != nil {
		return err
	}
	if !f.diff {
		return nil
	}
	if derr != nil {
		return fmt.Errorf("--diff: discovery: %w", derr)
	}
	want, err := disc.eds(ctx, node.Network, node.Cluster, node.IPs)
	if err != nil {
		return fmt.Errorf("--diff: %w", err)
	}
	dynamic, err := dump.loadAssignments("dynamic_endpoint_configs")
	if err != nil {
		return err
	}
	eds := dump.edsClusters()
	for name := range dynamic {
		if !eds[name] {
			delete(dynamic, name) // its endpoints came inline with CDS, not from EDS
		}
	}
	if f.name != "" {
		dynamic = map[string]*endpointv3.ClusterLoadAssignment{f.name: dynamic[f.name]}
		want = map[string]*endpointv3.ClusterLoadAssignment{f.name: want[f.name]}
	}
	lines := diffEndpoints(dynamic, want)
	fmt.Fprintf(stdout, "\ndiff against discovery's EDS for network %q (- only in the proxy, + only in discovery):\n", node.Network)
	if len(lines) == 0 {
		fmt.Fprintf(stdout, "none: the proxy holds what discovery sends (%d load assignments)\n", len(want))
		return nil
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return fmt.Errorf("the proxy's endpoints differ from discovery's in %d lines", len(lines))
}

// behindFunc says what stands behind an endpoint (endpointRows).
type behindFunc func(cluster, locality, addr string) (string, *translate.GatewayEndpoint)

// behindText says what stands behind an endpoint: for a gateway endpoint
// "NETWORK / CLUSTER: POD, ... (N pods)" and discovery's description of it;
// "direct" for the others when discovery answered, "?" when it did not.
func behindText(gws []translate.GatewayEndpoint, known bool) behindFunc {
	by := map[string]*translate.GatewayEndpoint{}
	for i, g := range gws {
		by[endpointKey(g.ClusterName, g.Locality, g.Address)] = &gws[i]
	}
	return func(cluster, locality, addr string) (string, *translate.GatewayEndpoint) {
		if !known {
			return "?", nil
		}
		g, ok := by[endpointKey(cluster, locality, addr)]
		if !ok {
			return "direct", nil
		}
		return describeGatewayEndpoint(*g), g
	}
}

// describeGatewayEndpoint is "network2 / cluster2: helloworld-v2-7d9 (1 pod)".
func describeGatewayEndpoint(g translate.GatewayEndpoint) string {
	clusters := make([]string, len(g.Clusters))
	for i, c := range g.Clusters {
		clusters[i] = string(c)
	}
	var names []string
	for _, m := range g.Members {
		n := m.Address
		if m.Pod != "" {
			_, n, _ = strings.Cut(m.Pod, "/")
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	count := g.PodCount()
	unit := "pods"
	if count == 1 {
		unit = "pod"
	}
	return fmt.Sprintf("%s / %s: %s (%d %s)", g.Network, strings.Join(clusters, ","), shortList(names, 3), count, unit)
}

func writeEndpoints(w io.Writer, rows []endpointRow) error {
	table := make([][]string, len(rows))
	for i, r := range rows {
		loc := r.Locality
		if loc == "" {
			loc = "-"
		}
		table[i] = []string{r.Cluster, r.Endpoint, loc, strconv.Itoa(int(r.Priority)), strconv.Itoa(int(r.Weight)), r.Behind}
	}
	return writeTable(w, []string{"CLUSTER", "ENDPOINT", "LOCALITY", "PRIORITY", "WEIGHT", "BEHIND"}, table)
}

// writeDocument writes v as indented JSON or as YAML.
func writeDocument(w io.Writer, format string, v any) error {
	if rows, ok := v.([]endpointRow); ok && rows == nil {
		v = []endpointRow{}
	}
	b, err := render.Document(format, v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// discoveryPod is discovery's ops port, reached in its pod.
type discoveryPod struct {
	pod string // namespace/name
	get func(ctx context.Context, path string) ([]byte, error)
}

func (f proxyConfigFlags) discovery(ctx context.Context, proxyCluster *podAccess) (*discoveryPod, error) {
	acc := proxyCluster
	if f.discoveryContext != "" && f.discoveryContext != f.cluster.context {
		var err error
		if acc, err = newPodAccess(clusterFlags{kubeconfig: f.cluster.kubeconfig, context: f.discoveryContext}); err != nil {
			return nil, err
		}
	}
	pod, err := acc.runningPod(ctx, f.istioNamespace, "app="+install.DiscoveryName, "discovery in "+f.istioNamespace)
	if err != nil {
		return nil, fmt.Errorf("%w (is discovery in another cluster? --discovery-context names it)", err)
	}
	return &discoveryPod{pod: pod.Namespace + "/" + pod.Name,
		get: func(ctx context.Context, path string) ([]byte, error) { return acc.get(ctx, pod, f.opsPort, path) }}, nil
}

// gateways pages through /debug/gateways for network.
func (d *discoveryPod) gateways(ctx context.Context, network string) ([]translate.GatewayEndpoint, error) {
	var out []translate.GatewayEndpoint
	after := ""
	for range 1000 {
		q := url.Values{"network": {network}, "limit": {strconv.Itoa(ops.MaxGatewaysLimit)}}
		if after != "" {
			q.Set("after", after)
		}
		b, err := d.get(ctx, "/debug/gateways?"+q.Encode())
		if err != nil {
			return nil, err
		}
		var a ops.GatewaysAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, fmt.Errorf("discovery %s: /debug/gateways: %w", d.pod, err)
		}
		out = append(out, a.Endpoints...)
		if a.Next == "" {
			return out, nil
		}
		after = a.Next
	}
	return nil, fmt.Errorf("discovery %s: /debug/gateways: more than 1000 pages", d.pod)
}

// eds pages through /debug/eds for the view of a proxy of network and
// cluster at ips (its INSTANCE_IPS: the view of a workload the mesh knows
// carries its locality).
func (d *discoveryPod) eds(ctx context.Context, network, cluster, ips string) (map[string]*endpointv3.ClusterLoadAssignment, error) {
	out := map[string]*endpointv3.ClusterLoadAssignment{}
	after := ""
	for range 10000 {
		q := url.Values{"network": {network}, "limit": {strconv.Itoa(ops.MaxEDSLimit)}}
		if cluster != "" {
			q.Set("cluster", cluster)
		}
		if ips != "" {
			q.Set("ips", ips)
		}
		if after != "" {
			q.Set("after", after)
		}
		b, err := d.get(ctx, "/debug/eds?"+q.Encode())
		if err != nil {
			return nil, err
		}
		var page struct {
			Next      string            `json:"next"`
			Resources []json.RawMessage `json:"resources"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, fmt.Errorf("discovery %s: /debug/eds: %w", d.pod, err)
		}
		for _, raw := range page.Resources {
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := protojson.Unmarshal(raw, cla); err != nil {
				return nil, fmt.Errorf("discovery %s: /debug/eds: %w", d.pod, err)
			}
			out[cla.GetClusterName()] = cla
		}
		if page.Next == "" {
			return out, nil
		}
		after = page.Next
	}
	return nil, fmt.Errorf("discovery %s: /debug/eds: too many pages", d.pod)
}

// diffEndpoints lists, sorted, the endpoints (cluster, priority, locality,
// address, weight) only the proxy holds ("- ...") or only discovery sends
// ("+ ..."); a load assignment one side lacks whole is one line.
func diffEndpoints(proxy, discovery map[string]*endpointv3.ClusterLoadAssignment) []string {
	flat := func(clas map[string]*endpointv3.ClusterLoadAssignment) map[string]bool {
		out := map[string]bool{}
		for _, r := range endpointRows(clas, func(string, string, string) (string, *translate.GatewayEndpoint) { return "", nil }) {
			loc := r.Locality
			if loc == "" {
				loc = "-"
			}
			out[fmt.Sprintf("%s %s locality=%s priority=%d weight=%d", r.Cluster, r.Endpoint, loc, r.Priority, r.Weight)] = true
		}
		return out
	}
	var lines []string
	for name := range proxy {
		if _, ok := discovery[name]; !ok && proxy[name] != nil {
			lines = append(lines, "- "+name+" (discovery sends no such load assignment)")
		}
	}
	for name := range discovery {
		if _, ok := proxy[name]; !ok && discovery[name] != nil {
			lines = append(lines, "+ "+name+" (the proxy holds no such load assignment)")
		}
	}
	both := func(m map[string]*endpointv3.ClusterLoadAssignment, other map[string]*endpointv3.ClusterLoadAssignment) map[string]*endpointv3.ClusterLoadAssignment {
		out := map[string]*endpointv3.ClusterLoadAssignment{}
		for n, c := range m {
			if _, ok := other[n]; ok && c != nil {
				out[n] = c
			}
		}
		return out
	}
	p, d := flat(both(proxy, discovery)), flat(both(discovery, proxy))
	for k := range p {
		if !d[k] {
			lines = append(lines, "- "+k)
		}
	}
	for k := range d {
		if !p[k] {
			lines = append(lines, "+ "+k)
		}
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[2:]+a[:1], b[2:]+b[:1]) })
	return lines
}
