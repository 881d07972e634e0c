// Package topology is the mesh as a picture: networks, their gateways
// (and how each was found), clusters and their sync state, and per
// service the endpoints on each network and behind each gateway. Of is a
// pure function of a model.Mesh and the clusters' states; Text and SVG
// render it (`horizon topology`, /ui/topology on the ops port).
package topology

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"github.com/horizonmesh/horizon/internal/model"
)

// NoNetwork names the network of endpoints that have none.
const NoNetwork = "(no network)"

// Topology is the mesh as `horizon topology` shows it.
type Topology struct {
	Networks []Network `json:"networks"`
	Clusters []Cluster `json:"clusters"`
	Services []Service `json:"services"`
}

// Network is one network: its clusters, gateways and endpoint count.
type Network struct {
	Name     string    `json:"name"`
	Clusters []string  `json:"clusters"`
	Gateways []Gateway `json:"gateways"`
	// Endpoints counts the distinct endpoint addresses of every service.
	Endpoints int `json:"endpoints"`
}

// Gateway is one gateway address of a network and how it was found.
type Gateway struct {
	Address string `json:"address"`
	Cluster string `json:"cluster,omitempty"`
	Found   string `json:"found"`
}

// Cluster is one cluster's state as discovery has it.
type Cluster struct {
	ID       string   `json:"id"`
	Local    bool     `json:"local,omitempty"`
	Synced   bool     `json:"synced"`
	Error    string   `json:"error,omitempty"`
	Networks []string `json:"networks"`
	// Reported: discovery reported the cluster's state (else only the
	// mesh names it, and Local and Synced say nothing).
	Reported bool `json:"reported"`
}

// ClusterState is what discovery knows of a cluster's source.
type ClusterState struct {
	ID     string
	Local  bool
	Synced bool
	Error  string
}

// Service is one mesh service: its endpoints on each network.
type Service struct {
	Hostname string           `json:"hostname"`
	Networks []ServiceNetwork `json:"networks"`
}

// ServiceNetwork counts a service's endpoints on one network: all of them,
// and how many each gateway of the network reaches (the mTLS-capable ones
// of the clusters it serves) for proxies of other networks.
type ServiceNetwork struct {
	Network   string         `json:"network"`
	Endpoints int            `json:"endpoints"`
	Behind    []GatewayCount `json:"behind,omitempty"`
}

// GatewayCount is how many endpoints stand behind a gateway.
type GatewayCount struct {
	Gateway   string `json:"gateway"`
	Endpoints int    `json:"endpoints"`
}

func networkName(n string) string {
	if n == "" {
		return NoNetwork
	}
	return n
}

type endpointID struct {
	cluster model.ClusterID
	addr    netip.Addr
}

// Of is the topology of m with the clusters' states (either may be
// empty: a cluster in states but not in m has no network yet).
func Of(m *model.Mesh, states []ClusterState) Topology {
	t := Topology{Networks: []Network{}, Clusters: []Cluster{}, Services: []Service{}}
	nets := map[string]*Network{}
	network := func(name string) *Network {
		name = networkName(name)
		n := nets[name]
		if n == nil {
			n = &Network{Name: name, Clusters: []string{}, Gateways: []Gateway{}}
			nets[name] = n
		}
		return n
	}
	clusterNets := map[string][]string{}
	addClusterNet := func(c model.ClusterID, n string) {
		if c != "" && !slices.Contains(clusterNets[string(c)], n) {
			clusterNets[string(c)] = append(clusterNets[string(c)], n)
		}
	}
	netEndpoints := map[string]map[endpointID]bool{}
	if m != nil {
		for _, n := range m.Networks() {
			network(n)
		}
		for _, g := range m.Gateways() {
			n := network(g.Network)
			n.Gateways = append(n.Gateways, Gateway{Address: netip.AddrPortFrom(g.Address, uint16(g.Port)).String(), Cluster: string(g.Cluster), Found: g.Found})
			addClusterNet(g.Cluster, n.Name)
		}
		for _, svc := range m.Services() {
			t.Services = append(t.Services, service(m, svc, func(e *model.Endpoint) {
				name := networkName(e.Network)
				network(e.Network)
				addClusterNet(e.Cluster, name)
				if netEndpoints[name] == nil {
					netEndpoints[name] = map[endpointID]bool{}
				}
				netEndpoints[name][endpointID{e.Cluster, e.Address}] = true
			}))
		}
	}
	for name, n := range nets {
		n.Endpoints = len(netEndpoints[name])
	}
	seen := map[string]bool{}
	for _, s := range states {
		seen[s.ID] = true
		t.Clusters = append(t.Clusters, Cluster{ID: s.ID, Local: s.Local, Synced: s.Synced, Error: s.Error, Networks: sorted(clusterNets[s.ID]), Reported: true})
	}
	for id, ns := range clusterNets {
		if !seen[id] {
			t.Clusters = append(t.Clusters, Cluster{ID: id, Networks: sorted(ns)})
		}
	}
	sort.Slice(t.Clusters, func(i, j int) bool { return t.Clusters[i].ID < t.Clusters[j].ID })
	for id, ns := range clusterNets {
		for _, n := range ns {
			nets[n].Clusters = append(nets[n].Clusters, id)
		}
	}
	for _, n := range nets {
		sort.Strings(n.Clusters)
		t.Networks = append(t.Networks, *n)
	}
	sort.Slice(t.Networks, func(i, j int) bool { return t.Networks[i].Name < t.Networks[j].Name })
	return t
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// service counts svc's distinct endpoints (cluster, address: a pod
// serving several ports counts once) per network, and those behind each
// gateway, calling each for every endpoint.
func service(m *model.Mesh, svc *model.Service, each func(*model.Endpoint)) Service {
	all := map[string]map[endpointID]bool{}
	behind := map[string]map[string]map[endpointID]bool{}
	for _, p := range svc.Ports {
		for _, e := range svc.Endpoints[p.Port] {
			each(e)
			name := networkName(e.Network)
			id := endpointID{e.Cluster, e.Address}
			if all[name] == nil {
				all[name] = map[endpointID]bool{}
			}
			all[name][id] = true
			if e.Network == "" || !e.MTLS {
				continue
			}
			for _, g := range m.GatewaysFor(e.Network, e.Cluster) {
				addr := netip.AddrPortFrom(g.Address, uint16(g.Port)).String()
				if behind[name] == nil {
					behind[name] = map[string]map[endpointID]bool{}
				}
				if behind[name][addr] == nil {
					behind[name][addr] = map[endpointID]bool{}
				}
				behind[name][addr][id] = true
			}
		}
	}
	out := Service{Hostname: svc.Hostname, Networks: []ServiceNetwork{}}
	for name, ids := range all {
		sn := ServiceNetwork{Network: name, Endpoints: len(ids)}
		for addr, ids := range behind[name] {
			sn.Behind = append(sn.Behind, GatewayCount{Gateway: addr, Endpoints: len(ids)})
		}
		sort.Slice(sn.Behind, func(i, j int) bool { return sn.Behind[i].Gateway < sn.Behind[j].Gateway })
		out.Networks = append(out.Networks, sn)
	}
	sort.Slice(out.Networks, func(i, j int) bool { return out.Networks[i].Network < out.Networks[j].Network })
	return out
}

// Problems are what `horizon check` fails on: a network with endpoints
// but no gateway, in a mesh of more than one network (proxies elsewhere
// reach those endpoints directly, which crossing networks cannot).
func (t Topology) Problems() []string {
	var out []string
	if len(t.Networks) < 2 {
		return nil
	}
	for _, n := range t.Networks {
		if n.Endpoints > 0 && len(n.Gateways) == 0 && n.Name != NoNetwork {
			out = append(out, "network "+n.Name+" has "+itoa(n.Endpoints)+" endpoints but no gateway with an address")
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
