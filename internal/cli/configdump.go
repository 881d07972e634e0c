package cli

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// configDump is an Envoy admin /config_dump?include_eds answer, read
// without a type registry: Istio's proxies carry filter configs of types
// Horizon does not link, so each section is JSON, and only load
// assignments are parsed as protos (their fields are all Envoy's).
type configDump struct {
	// sections by the last part of their @type
	// (BootstrapConfigDump, ClustersConfigDump, ...).
	sections map[string]map[string]json.RawMessage
}

func parseConfigDump(b []byte) (*configDump, error) {
	var doc struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("config_dump: not JSON: %w", err)
	}
	d := &configDump{sections: map[string]map[string]json.RawMessage{}}
	for _, c := range doc.Configs {
		var typ string
		_ = json.Unmarshal(c["@type"], &typ)
		d.sections[typ[strings.LastIndexByte(typ, '.')+1:]] = c
	}
	if len(d.sections) == 0 {
		return nil, fmt.Errorf("config_dump: no configs")
	}
	return d, nil
}

// node is the proxy's node metadata as its bootstrap says.
type dumpNode struct {
	ID       string
	Network  string
	Cluster  string
	IPs      string // INSTANCE_IPS, comma-separated
	Metadata map[string]any
}

func (d *configDump) node() dumpNode {
	var b struct {
		Bootstrap struct {
			Node struct {
				ID       string         `json:"id"`
				Metadata map[string]any `json:"metadata"`
			} `json:"node"`
		} `json:"bootstrap"`
	}
	raw, _ := json.Marshal(d.sections["BootstrapConfigDump"])
	_ = json.Unmarshal(raw, &b)
	n := dumpNode{ID: b.Bootstrap.Node.ID, Metadata: b.Bootstrap.Node.Metadata}
	n.Network, _ = n.Metadata["NETWORK"].(string)
	n.Cluster, _ = n.Metadata["CLUSTER_ID"].(string)
	n.IPs, _ = n.Metadata["INSTANCE_IPS"].(string)
	return n
}

// list decodes section[key] (a list of wrappers) and returns each
// wrapper's field (or the element itself when field is "").
func (d *configDump) list(section, key string, field ...string) []json.RawMessage {
	var items []map[string]json.RawMessage
	_ = json.Unmarshal(d.sections[section][key], &items)
	var out []json.RawMessage
	for _, it := range items {
		raw, _ := json.Marshal(it)
		for _, f := range field {
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) != nil {
				raw = nil
				break
			}
			raw = m[f]
		}
		if len(raw) > 0 && string(raw) != "null" {
			out = append(out, raw)
		}
	}
	return out
}

// loadAssignments are the proxy's load assignments of the given lists
// (static_endpoint_configs, dynamic_endpoint_configs: from EDS), by
// cluster name.
func (d *configDump) loadAssignments(keys ...string) (map[string]*endpointv3.ClusterLoadAssignment, error) {
	out := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, key := range keys {
		for _, raw := range d.list("EndpointsConfigDump", key, "endpoint_config") {
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, cla); err != nil {
				return nil, fmt.Errorf("config_dump: a load assignment: %w", err)
			}
			out[cla.GetClusterName()] = cla
		}
	}
	return out, nil
}

// edsClusters are the names of the proxy's clusters that take their
// endpoints from EDS (the others carry theirs inline: static clusters,
// inbound and passthrough clusters from CDS).
func (d *configDump) edsClusters() map[string]bool {
	out := map[string]bool{}
	for _, key := range []string{"static_clusters", "dynamic_active_clusters"} {
		for _, raw := range d.list("ClustersConfigDump", key, "cluster") {
			var c struct {
				Name string `json:"name"`
				Type string `json:"type"`
				EDS  any    `json:"eds_cluster_config"`
			}
			if json.Unmarshal(raw, &c) == nil && (c.Type == "EDS" || c.EDS != nil) {
				out[c.Name] = true
			}
		}
	}
	return out
}

// endpointRow is one endpoint a proxy holds; Gateway is what stands behind
// it when it is a gateway endpoint discovery knows.
type endpointRow struct {
	Cluster  string                     `json:"cluster"`
	Endpoint string                     `json:"endpoint"`
	Locality string                     `json:"locality,omitempty"`
	Priority uint32                     `json:"priority"`
	Weight   uint32                     `json:"weight"`
	Behind   string                     `json:"behind"`
	Gateway  *translate.GatewayEndpoint `json:"gateway,omitempty"`
}

func endpointKey(cluster, locality, addr string) string {
	return cluster + "\x00" + locality + "\x00" + addr
}

func localityString(region, zone, subzone string) string {
	if region+zone+subzone == "" {
		return ""
	}
	return region + "/" + zone + "/" + subzone
}

// endpointRows lists every endpoint of the proxy's load assignments, sorted
// by cluster, priority, locality and address; behind(cluster, locality,
// address) says what stands behind it ("" for nothing known) and, for a
// gateway endpoint, the gateway endpoint discovery describes.
func endpointRows(clas map[string]*endpointv3.ClusterLoadAssignment, behind behindFunc) []endpointRow {
	var rows []endpointRow
	for name, cla := range clas {
		for _, le := range cla.GetEndpoints() {
			l := le.GetLocality()
			loc := localityString(l.GetRegion(), l.GetZone(), l.GetSubZone())
			for _, lb := range le.GetLbEndpoints() {
				addr := lbAddress(lb)
				w := lb.GetLoadBalancingWeight().GetValue()
				if lb.GetLoadBalancingWeight() == nil {
					w = 1
				}
				text, gw := behind(name, loc, addr)
				rows = append(rows, endpointRow{Cluster: name, Endpoint: addr, Locality: loc, Priority: le.GetPriority(), Weight: w,
					Behind: text, Gateway: gw})
			}
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		if a.Locality != b.Locality {
			return a.Locality < b.Locality
		}
		return a.Endpoint < b.Endpoint
	})
	return rows
}

func lbAddress(lb *endpointv3.LbEndpoint) string {
	a := lb.GetEndpoint().GetAddress()
	if sa := a.GetSocketAddress(); sa != nil {
		return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	}
	if p := a.GetPipe(); p != nil {
		return "unix:" + p.GetPath()
	}
	return "?"
}

// clusterRows: NAME, DIRECTION, PORT, HOST (outbound|PORT||HOST names
// split), TYPE.
func (d *configDump) clusterRows() [][]string {
	var rows [][]string
	add := func(raw json.RawMessage) {
		var c struct {
			Name string `json:"name"`
			Type string `json:"type"`
			EDS  any    `json:"eds_cluster_config"`
		}
		_ = json.Unmarshal(raw, &c)
		typ := c.Type
		if typ == "" && c.EDS != nil {
			typ = "EDS"
		}
		if typ == "" {
			typ = "STATIC"
		}
		dir, port, host := "-", "-", "-"
		if parts := strings.Split(c.Name, "|"); len(parts) == 4 {
			dir, port, host = parts[0], parts[1], parts[3]
		}
		rows = append(rows, []string{c.Name, dir, port, host, typ})
	}
	for _, raw := range d.list("ClustersConfigDump", "static_clusters", "cluster") {
		add(raw)
	}
	for _, raw := range d.list("ClustersConfigDump", "dynamic_active_clusters", "cluster") {
		add(raw)
	}
	sortRows(rows)
	return rows
}

// listenerRows: NAME, ADDRESS, FILTER CHAINS.
func (d *configDump) listenerRows() [][]string {
	var rows [][]string
	add := func(raw json.RawMessage) {
		var l struct {
			Name    string `json:"name"`
			Address struct {
				Socket struct {
					Address string `json:"address"`
					Port    uint32 `json:"port_value"`
				} `json:"socket_address"`
			} `json:"address"`
			FilterChains []json.RawMessage `json:"filter_chains"`
		}
		_ = json.Unmarshal(raw, &l)
		rows = append(rows, []string{l.Name, net.JoinHostPort(l.Address.Socket.Address, strconv.Itoa(int(l.Address.Socket.Port))), strconv.Itoa(len(l.FilterChains))})
	}
	for _, raw := range d.list("ListenersConfigDump", "static_listeners", "listener") {
		add(raw)
	}
	for _, raw := range d.list("ListenersConfigDump", "dynamic_listeners", "active_state", "listener") {
		add(raw)
	}
	sortRows(rows)
	return rows
}

// routeRows: NAME, VIRTUAL HOST, DOMAINS (one row per virtual host).
func (d *configDump) routeRows() [][]string {
	var rows [][]string
	add := func(raw json.RawMessage) {
		var r struct {
			Name  string `json:"name"`
			Hosts []struct {
				Name    string   `json:"name"`
				Domains []string `json:"domains"`
			} `json:"virtual_hosts"`
		}
		_ = json.Unmarshal(raw, &r)
		if len(r.Hosts) == 0 {
			rows = append(rows, []string{r.Name, "-", "-"})
		}
		for _, h := range r.Hosts {
			rows = append(rows, []string{r.Name, h.Name, shortList(h.Domains, 3)})
		}
	}
	for _, raw := range d.list("RoutesConfigDump", "static_route_configs", "route_config") {
		add(raw)
	}
	for _, raw := range d.list("RoutesConfigDump", "dynamic_route_configs", "route_config") {
		add(raw)
	}
	sortRows(rows)
	return rows
}

// secretRows: NAME, TYPE, SERIAL, NOT AFTER, SUBJECT ALT NAMES (of the
// first certificate; Envoy redacts private keys from its dump).
func (d *configDump) secretRows() [][]string {
	var rows [][]string
	add := func(raw json.RawMessage) {
		var s struct {
			Name string `json:"name"`
			TLS  *struct {
				Chain struct {
					Inline string `json:"inline_bytes"`
				} `json:"certificate_chain"`
			} `json:"tls_certificate"`
			Validation *struct {
				CA struct {
					Inline string `json:"inline_bytes"`
				} `json:"trusted_ca"`
			} `json:"validation_context"`
		}
		_ = json.Unmarshal(raw, &s)
		typ, pemB64 := "-", ""
		switch {
		case s.TLS != nil:
			typ, pemB64 = "Cert Chain", s.TLS.Chain.Inline
		case s.Validation != nil:
			typ, pemB64 = "CA", s.Validation.CA.Inline
		}
		serial, notAfter, sans := "-", "-", "-"
		if b, err := base64.StdEncoding.DecodeString(pemB64); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
					serial = c.SerialNumber.Text(16)
					notAfter = c.NotAfter.UTC().Format("2006-01-02T15:04:05Z")
					var names []string
					for _, u := range c.URIs {
						names = append(names, u.String())
					}
					names = append(names, c.DNSNames...)
					if len(names) > 0 {
						sans = shortList(names, 2)
					} else if c.Subject.CommonName != "" {
						sans = "CN=" + c.Subject.CommonName
					}
				}
			}
		}
		rows = append(rows, []string{s.Name, typ, serial, notAfter, sans})
	}
	for _, raw := range d.list("SecretsConfigDump", "static_secrets", "secret") {
		add(raw)
	}
	for _, raw := range d.list("SecretsConfigDump", "dynamic_active_secrets", "secret") {
		add(raw)
	}
	sortRows(rows)
	return rows
}

func shortList(s []string, n int) string {
	if len(s) == 0 {
		return "-"
	}
	if len(s) <= n {
		return strings.Join(s, ",")
	}
	return strings.Join(s[:n], ",") + fmt.Sprintf(" +%d more", len(s)-n)
}

func sortRows(rows [][]string) {
	sort.SliceStable(rows, func(i, j int) bool { return strings.Join(rows[i], "\x00") < strings.Join(rows[j], "\x00") })
}

// resources are the proxy's resources of a proxy-config type (clusters,
// listeners, routes, secrets), static first, as Envoy dumped them.
func (d *configDump) resources(typ string) []json.RawMessage {
	var lists [][]json.RawMessage
	switch typ {
	case "clusters":
		lists = [][]json.RawMessage{d.list("ClustersConfigDump", "static_clusters", "cluster"), d.list("ClustersConfigDump", "dynamic_active_clusters", "cluster")}
	case "listeners":
		lists = [][]json.RawMessage{d.list("ListenersConfigDump", "static_listeners", "listener"),
			d.list("ListenersConfigDump", "dynamic_listeners", "active_state", "listener")}
	case "routes":
		lists = [][]json.RawMessage{d.list("RoutesConfigDump", "static_route_configs", "route_config"),
			d.list("RoutesConfigDump", "dynamic_route_configs", "route_config")}
	case "secrets":
		lists = [][]json.RawMessage{d.list("SecretsConfigDump", "static_secrets", "secret"), d.list("SecretsConfigDump", "dynamic_active_secrets", "secret")}
	}
	out := []json.RawMessage{}
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
