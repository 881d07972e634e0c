// Package proxystatus is `horizon proxy-status`: it asks every discovery
// replica for its proxies' client status over CSDS
// (envoy.service.status.v3, which discovery serves on its xDS ports) and
// shows each proxy's view (cluster, network, role, locality) and, per
// resource type, whether it is SYNCED, STALE or NACKED, and since when.
package proxystatus

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/horizonmesh/horizon/internal/xds/render"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// Row is one proxy as one replica sees it.
type Row struct {
	Proxy    string `json:"proxy"`
	Replica  string `json:"replica"`
	Cluster  string `json:"cluster"`
	Network  string `json:"network"`
	Role     string `json:"role"` // sidecar or router
	Locality string `json:"locality,omitempty"`
	// Version is the proxy's Istio version (an Istio sidecar's
	// ISTIO_VERSION), else its Envoy build ("envoy/1.40.0").
	Version string `json:"version,omitempty"`
	// Types is the status per resource type, by its short name (cds,
	// lds, eds, rds, nds) or, for another type, its URL.
	Types map[string]TypeStatus `json:"types"`
}

// TypeStatus is a proxy's status on one resource type.
type TypeStatus struct {
	Status string    `json:"status"` // SYNCED, STALE, NACKED or NOT_SENT
	Since  time.Time `json:"since,omitzero"`
	// Version is the version (delta: the nonce) discovery sent last.
	Version string `json:"version,omitempty"`
	// Error is the proxy's last NACK's detail, while it stands.
	Error string `json:"error,omitempty"`
}

// Status names.
const (
	Synced  = "SYNCED"
	Stale   = "STALE"
	NACKed  = "NACKED"
	NotSent = "NOT_SENT"
)

// Rows turns one replica's CSDS answer into rows, one per proxy.
func Rows(replica string, resp *statusv3.ClientStatusResponse) []Row {
	out := make([]Row, 0, len(resp.GetConfig()))
	for _, cc := range resp.GetConfig() {
		n := cc.GetNode()
		r := Row{Proxy: n.GetId(), Replica: replica, Cluster: meta(n, server.MetaClusterID), Network: meta(n, server.MetaNetwork),
			Role: "sidecar", Locality: locality(n.GetLocality()), Version: version(n), Types: map[string]TypeStatus{}}
		if strings.HasPrefix(r.Proxy, "router~") {
			r.Role = "router"
		}
		if r.Cluster == "" {
			r.Cluster = n.GetCluster()
		}
		for _, g := range cc.GetGenericXdsConfigs() {
			// Entries of one type (one per resource, or one for the
			// status alone) share its status.
			ts := TypeStatus{Status: statusName(g.GetConfigStatus())}
			if g.GetName() == "" {
				ts.Version = g.GetVersionInfo() // a resource's entry carries its view's version instead
			}
			if g.GetLastUpdated() != nil {
				ts.Since = g.GetLastUpdated().AsTime().UTC()
			}
			if ts.Status == NACKed {
				ts.Error = g.GetErrorState().GetDetails()
			}
			r.Types[server.TypeName(g.GetTypeUrl())] = ts
		}
		out = append(out, r)
	}
	return out
}

func meta(n *corev3.Node, key string) string {
	return n.GetMetadata().GetFields()[key].GetStringValue()
}

func version(n *corev3.Node) string {
	if v := meta(n, server.MetaIstioVersion); v != "" {
		return v
	}
	v := n.GetUserAgentBuildVersion().GetVersion()
	if v == nil {
		return ""
	}
	name := n.GetUserAgentName()
	if name == "" {
		name = "envoy"
	}
	return fmt.Sprintf("%s/%d.%d.%d", name, v.GetMajorNumber(), v.GetMinorNumber(), v.GetPatch())
}

func locality(l *corev3.Locality) string {
	return strings.TrimRight(strings.Join([]string{l.GetRegion(), l.GetZone(), l.GetSubZone()}, "/"), "/")
}

func statusName(s statusv3.ConfigStatus) string {
	switch s {
	case statusv3.ConfigStatus_SYNCED:
		return Synced
	case statusv3.ConfigStatus_STALE:
		return Stale
	case statusv3.ConfigStatus_ERROR:
		return NACKed
	case statusv3.ConfigStatus_NOT_SENT:
		return NotSent
	}
	return s.String()
}

// Sort orders rows by proxy, then replica.
func Sort(rows []Row) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		if c := strings.Compare(a.Proxy, b.Proxy); c != 0 {
			return c
		}
		return strings.Compare(a.Replica, b.Replica)
	})
}

// tableTypes are the table's type columns, in the order Envoy applies them.
var tableTypes = []string{"cds", "lds", "eds", "rds", "nds"}

// Render writes rows as a table (ages relative to now), json or yaml.
func Render(w io.Writer, format string, rows []Row, now time.Time) error {
	if rows == nil {
		rows = []Row{}
	}
	switch format {
	case "json", "yaml":
		b, err := render.Document(format, rows)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "table", "":
	default:
		return fmt.Errorf("unknown output format %q (table, json or yaml)", format)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := []string{"PROXY", "CLUSTER", "NETWORK", "ROLE", "LOCALITY", "VERSION"}
	for _, t := range tableTypes {
		header = append(header, strings.ToUpper(t))
	}
	fmt.Fprintln(tw, strings.Join(append(header, "REPLICA"), "\t"))
	for _, r := range rows {
		cells := []string{r.Proxy, dash(r.Cluster), dash(r.Network), r.Role, dash(r.Locality), dash(r.Version)}
		for _, t := range tableTypes {
			cells = append(cells, cell(r.Types[t], r.Types[t] != TypeStatus{}, now))
		}
		fmt.Fprintln(tw, strings.Join(append(cells, r.Replica), "\t"))
	}
	return tw.Flush()
}

// cell is one type's status with its age: "SYNCED 5s"; "-" when the proxy
// does not ask for the type.
func cell(ts TypeStatus, ok bool, now time.Time) string {
	switch {
	case !ok:
		return "-"
	case ts.Since.IsZero():
		return ts.Status
	}
	return ts.Status + " " + duration.HumanDuration(now.Sub(ts.Since))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
