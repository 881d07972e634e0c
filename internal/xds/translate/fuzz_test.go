package translate

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/horizonmesh/horizon/internal/model"
)

// fzBytes hands out small choices from the fuzz input, deterministically;
// an exhausted input reads as zeros.
type fzBytes struct{ b []byte }

func (f *fzBytes) intn(n int) int {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return int(c) % n
}

func fzPick[T any](f *fzBytes, from ...T) T { return from[f.intn(len(from))] }

var fzNetworks = []string{"n0", "n1", "n2"}

// fuzzMesh derives a small mesh from data: up to three clusters and three
// networks, meshNetworks with fromRegistry/fromCidr and gateway entries (IPs,
// DNS names, the 0.0.0.0 placeholder, registry service names), gateway
// Services labelled with a network, and two services whose endpoints have
// every combination of network, mTLS, locality and weight (including weights
// that saturate when scaled). Endpoint addresses (10/8, fd00::/8) never
// overlap gateway addresses (192.0.2/24, 198.51.100/24, 203.0.113/24), so a
// load assignment's entries can be told apart; some gateway addresses are
// shared between networks on purpose.
func fuzzMesh(data []byte) (*model.Mesh, model.Diagnostics) {
	f := &fzBytes{data}
	res := model.Names{
		"gw.n0.example":  {Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.100"), netip.MustParseAddr("203.0.113.101")}},
		"gw.n1.example":  {Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.110")}},
		"shared.example": {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
	}
	// The zero choice is the walkthrough's shape: two clusters on networks
	// n0 and n1, one gateway each, mTLS endpoints; every byte is a step
	// away from it.
	nClusters := 1 + (1+f.intn(3))%3
	clusters := make([]*model.ClusterSnapshot, nClusters)
	for i := range clusters {
		clusters[i] = &model.ClusterSnapshot{ID: model.ClusterID(fmt.Sprintf("c%d", i)),
			SystemNamespaceNetwork: fzPick(f, fzNetworks[i], "", "n0", "n1", "n2")}
	}
	nets := &model.MeshNetworks{}
	registered := map[int]bool{}
	for ni, name := range fzNetworks {
		if f.intn(4) == 3 {
			continue // not in meshNetworks
		}
		nc := &model.NetworkConfig{Name: name}
		for ci := range clusters {
			if !registered[ci] && f.intn(3) == 1 {
				registered[ci] = true
				nc.Registries = append(nc.Registries, clusters[ci].ID)
			}
		}
		if f.intn(3) == 1 {
			nc.CIDRs = append(nc.CIDRs, fzPick(f, netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", ni)),
				netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix(fmt.Sprintf("fd00:%d::/32", ni))))
		}
		for k, n := 0, (1+f.intn(4))%4; k < n; k++ {
			var g model.GatewaySpec
			switch f.intn(6) {
			case 0, 1:
				g.Address = fmt.Sprintf("203.0.113.%d", 16*ni+f.intn(3))
			case 2:
				g.Address = fzPick(f, "gw.n0.example", "gw.n1.example", "shared.example", "missing.example")
			case 3:
				g.Address = fzPick(f, "0.0.0.0", "::", "192.0.2.1")
			default:
				g.RegistryServiceName = "eastwest.istio-system.svc.cluster.local"
			}
			g.Port = fzPick[uint32](f, 15443, 443)
			nc.Gateways = append(nc.Gateways, g)
		}
		nets.Networks = append(nets.Networks, nc)
	}
	locs := []model.Locality{{}, {Region: "eu", Zone: "a"}, {Region: "us", Zone: "b", Subzone: "r1"}}
	weights := []uint32{0, 1, 2, 3, 0, 1 << 31, math.MaxUint32}
	for ci, c := range clusters {
		if f.intn(3) == 1 { // a gateway Service of this cluster
			gw := &model.ClusterService{Name: "eastwest", Namespace: "istio-system",
				Labels: map[string]string{}, Ports: []model.ServicePort{{Name: "tls", Port: 15443}}}
			if f.intn(2) == 1 {
				gw.Labels[model.NetworkLabel] = fzPick(f, fzNetworks...)
			}
			if f.intn(3) == 1 {
				gw.Labels[model.GatewayPortLabel] = fzPick(f, "15443", "443", "http")
			}
			for k, n := 0, 1+f.intn(2); k < n; k++ {
				gw.LoadBalancer = append(gw.LoadBalancer, fzPick(f, fmt.Sprintf("198.51.100.%d", 16*ci+k), "192.0.2.1", "gw.n0.example"))
			}
			c.Services = append(c.Services, gw)
		}
		for _, name := range []string{"a", "b"} {
			if f.intn(4) == 3 {
				continue
			}
			svc := &model.ClusterService{Name: name, Namespace: "ns", Endpoints: map[uint32][]*model.Endpoint{}}
			svc.Ports = append(svc.Ports, model.ServicePort{Name: "http", Port: 80, Protocol: "TCP"})
			if f.intn(3) == 1 {
				svc.Ports = append(svc.Ports, model.ServicePort{Name: "grpc", Port: 81, Protocol: "TCP"})
			}
			for _, p := range svc.Ports {
				for k, n := 0, (2+f.intn(6))%6; k < n; k++ {
					var addr netip.Addr
					if f.intn(4) == 3 {
						addr = netip.MustParseAddr(fmt.Sprintf("fd00:%d::%d", f.intn(3), 1+f.intn(4)))
					} else {
						addr = netip.AddrFrom4([4]byte{10, byte(f.intn(3)), 0, byte(1 + f.intn(4))})
					}
					svc.Endpoints[p.Port] = append(svc.Endpoints[p.Port], &model.Endpoint{
						Address: addr, Port: 8080 + uint32(f.intn(2)), Weight: fzPick(f, weights...),
						Cluster:    c.ID,
						PodNetwork: fzPick(f, "", "", "n0", "n1", "n2"),
						Locality:   fzPick(f, locs...),
						MTLS:       f.intn(3) != 2,
					})
				}
			}
			c.Services = append(c.Services, svc)
		}
	}
	return model.Build(model.BuildInput{Clusters: clusters, Networks: nets, Names: res})
}

// FuzzEDS checks the split-horizon rule (docs/architecture.md) on meshes
// built by model.Build from fuzzed clusters and meshNetworks, for every view.
// Invariants: no panic; EDS is deterministic and valid; one load assignment
// per service port; without gateways every endpoint goes out as is; with
// gateways each endpoint on the view's network, on no network or on a network
// without gateways goes out directly with weight × S, any other non-mTLS
// endpoint is dropped and any other mTLS endpoint is carried by its
// gateways: W is a multiple of |G| (S makes shares integral), each gateway
// in a locality weighs the sum of the shares it carries (≥ 1), the gateway
// weights of a network sum to the scaled weights of the mTLS endpoints they
// stand for, gateways are marked tlsMode istio and come after the direct
// endpoints, sorted; localities are sorted and weigh the sum of their
// members.
func FuzzEDS(f *testing.F) {
	f.Add([]byte{})
	// Walkthrough-like: c0 on n0 (istio-system label), c1 on n1 with a
	// labelled gateway Service, mTLS endpoints on both.
	f.Add([]byte{1, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 0, 0, 3, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 0, 2, 0, 1, 0, 3, 1, 1, 0, 2, 0, 0, 2, 0, 1, 2, 0})
	f.Add([]byte{2, 0, 0, 0, 0, 1, 0, 0, 1, 3, 0, 0, 1, 1, 2, 1, 0, 1, 2, 1, 5, 1, 0, 1, 0, 1, 3, 0, 2, 5, 0, 1, 2, 1, 1, 4, 0, 1, 5, 0, 2, 2})
	f.Add([]byte("\x02\x02\x03\x04\x01\x01\x01\x01\x02\x03\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"))
	f.Add([]byte("\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05"))
	f.Add([]byte("\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, diags := fuzzMesh(data)
		if err := diags.Err(); err != nil {
			t.Fatalf("generated input is invalid: %v", err)
		}
		views := append([]string{"", "elsewhere"}, m.Networks()...)
		for _, view := range views {
			v := EDSView{Network: view}
			got := EDS(m, v)
			again := EDS(m, v)
			if len(got) != len(again) {
				t.Fatalf("view %q: EDS not deterministic", view)
			}
			for i := range got {
				if !proto.Equal(got[i], again[i]) {
					t.Fatalf("view %q: EDS not deterministic for %s", view, got[i].ClusterName)
				}
			}
			var want []string
			for _, svc := range m.Services() {
				for _, p := range svc.Ports {
					want = append(want, ClusterName(p.Port, svc.Hostname))
				}
			}
			sort.Strings(want)
			if len(got) != len(want) {
				t.Fatalf("view %q: %d load assignments for %d service ports", view, len(got), len(want))
			}
			for i, cla := range got {
				if cla.ClusterName != want[i] {
					t.Fatalf("view %q: load assignment %d is %s, want %s", view, i, cla.ClusterName, want[i])
				}
				port, host, err := ParseClusterName(cla.ClusterName)
				if err != nil {
					t.Fatal(err)
				}
				checkSplitHorizon(t, m, view, m.Service(host), port, cla)
			}
		}
	})
}

type fzEntry struct {
	locality model.Locality
	addr     netip.AddrPort
	weight   uint32
	mtls     bool
}

func (e fzEntry) String() string {
	return fmt.Sprintf("%s %s w=%d mtls=%v", e.locality, e.addr, e.weight, e.mtls)
}

func checkSplitHorizon(t *testing.T, m *model.Mesh, view string, svc *model.Service, port uint32, cla *endpointv3.ClusterLoadAssignment) {
	t.Helper()
	where := fmt.Sprintf("view %q, %s", view, cla.ClusterName)
	if err := cla.ValidateAll(); err != nil {
		t.Fatalf("%s: invalid: %v", where, err)
	}
	// Every gateway address:port and the gateways that have it.
	gwByAddr := map[netip.AddrPort][]*model.Gateway{}
	for i := range m.Gateways() {
		g := &m.Gateways()[i]
		ap := netip.AddrPortFrom(g.Address, uint16(g.Port))
		gwByAddr[ap] = append(gwByAddr[ap], g)
	}

	// What the load assignment holds, split into direct endpoints and
	// gateways.
	var gotDirect []string
	gotGW := map[model.Locality]map[netip.AddrPort]uint64{}
	var prev *model.Locality
	for _, lle := range cla.Endpoints {
		loc := model.Locality{Region: lle.GetLocality().GetRegion(), Zone: lle.GetLocality().GetZone(), Subzone: lle.GetLocality().GetSubZone()}
		if prev != nil && !prev.Less(loc) {
			t.Fatalf("%s: localities not sorted or repeated: %q then %q", where, *prev, loc)
		}
		prev = &loc
		var sum uint64
		seenGW := false
		var lastGW netip.AddrPort
		for _, lb := range lle.LbEndpoints {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			addr, err := netip.ParseAddr(sa.GetAddress())
			if err != nil {
				t.Fatalf("%s: bad address %q", where, sa.GetAddress())
			}
			ap := netip.AddrPortFrom(addr, uint16(sa.GetPortValue()))
			w := lb.GetLoadBalancingWeight().GetValue()
			sum += uint64(w)
			mtls := lb.GetMetadata().GetFilterMetadata()[TransportSocketMatchKey].GetFields()["tlsMode"].GetStringValue() == TLSModeIstio
			if _, isGW := gwByAddr[ap]; isGW {
				if !mtls {
					t.Fatalf("%s: gateway %s not marked tlsMode istio", where, ap)
				}
				if w < 1 {
					t.Fatalf("%s: gateway %s with weight 0", where, ap)
				}
				if seenGW && !(lastGW.Addr().Less(ap.Addr()) || (lastGW.Addr() == ap.Addr() && lastGW.Port() <= ap.Port())) {
					t.Fatalf("%s: gateways not sorted: %s after %s", where, ap, lastGW)
				}
				seenGW, lastGW = true, ap
				if gotGW[loc] == nil {
					gotGW[loc] = map[netip.AddrPort]uint64{}
				}
				gotGW[loc][ap] += uint64(w)
				continue
			}
			if seenGW {
				t.Fatalf("%s: direct endpoint %s after a gateway in locality %q", where, ap, loc)
			}
			gotDirect = append(gotDirect, fzEntry{loc, ap, w, mtls}.String())
		}
		if got := lle.GetLoadBalancingWeight().GetValue(); uint64(got) != min(sum, math.MaxUint32) {
			t.Fatalf("%s: locality %q weighs %d, its members %d", where, loc, got, sum)
		}
	}

	// What the rule says it must hold.
	split := m.HasGateways()
	scale := uint64(m.ScaleFactor())
	var wantDirect []string
	wantShare := map[model.Locality]map[*model.Gateway]uint64{}
	netWant := map[string]uint64{} // scaled weights of endpoints each network's gateways carry
	capped := false
	for _, e := range svc.Endpoints[port] {
		ap := netip.AddrPortFrom(e.Address, uint16(e.Port))
		if !split {
			wantDirect = append(wantDirect, fzEntry{e.Locality, ap, e.EffectiveWeight(), e.MTLS}.String())
			continue
		}
		w := min(uint64(e.EffectiveWeight())*scale, math.MaxUint32)
		var gws []*model.Gateway
		if e.Network != "" && e.Network != view {
			gws = m.GatewaysFor(e.Network, e.Cluster)
		}
		if len(gws) == 0 {
			wantDirect = append(wantDirect, fzEntry{e.Locality, ap, uint32(w), e.MTLS}.String())
			continue
		}
		if !e.MTLS {
			continue // dropped: crossing networks is always mTLS
		}
		if w == math.MaxUint32 {
			capped = true
		} else if w%uint64(len(gws)) != 0 {
			t.Fatalf("%s: weight %d × scale %d = %d does not divide among %d gateways", where, e.EffectiveWeight(), scale, w, len(gws))
		}
		// G: the gateways of (network, cluster) if any, else the network's.
		var ofCluster, ofNetwork []string
		for _, g := range m.Gateways() {
			if g.Network == e.Network {
				ofNetwork = append(ofNetwork, g.String())
				if g.Cluster == e.Cluster {
					ofCluster = append(ofCluster, g.String())
				}
			}
		}
		wantG := ofNetwork
		if len(ofCluster) > 0 {
			wantG = ofCluster
		}
		var gotG []string
		for _, g := range gws {
			gotG = append(gotG, g.String())
		}
		if strings.Join(gotG, ", ") != strings.Join(wantG, ", ") {
			t.Fatalf("%s: endpoint %s of network %q cluster %q goes through %v, want %v", where, ap, e.Network, e.Cluster, gotG, wantG)
		}
		for _, g := range gws {
			if wantShare[e.Locality] == nil {
				wantShare[e.Locality] = map[*model.Gateway]uint64{}
			}
			wantShare[e.Locality][g] += w / uint64(len(gws))
		}
		netWant[e.Network] += w
	}
	sort.Strings(gotDirect)
	sort.Strings(wantDirect)
	if strings.Join(gotDirect, "\n") != strings.Join(wantDirect, "\n") {
		t.Fatalf("%s: direct endpoints\n%s\nwant\n%s", where, strings.Join(gotDirect, "\n"), strings.Join(wantDirect, "\n"))
	}
	wantGW := map[model.Locality]map[netip.AddrPort]uint64{}
	netGot := map[string]uint64{}
	for loc, shares := range wantShare {
		wantGW[loc] = map[netip.AddrPort]uint64{}
		for g, s := range shares {
			if s > math.MaxUint32 {
				capped = true
			}
			emitted := max(1, min(s, math.MaxUint32))
			wantGW[loc][netip.AddrPortFrom(g.Address, uint16(g.Port))] += emitted
			netGot[g.Network] += emitted
		}
	}
	if fmt.Sprint(gotGW) != fmt.Sprint(wantGW) {
		t.Fatalf("%s: gateways %v, want %v", where, gotGW, wantGW)
	}
	// Every network's gateways carry exactly the scaled weight of its
	// mTLS endpoints (unless a weight saturated at 2³²−1).
	if !capped && fmt.Sprint(netGot) != fmt.Sprint(netWant) {
		t.Fatalf("%s: gateway weights per network %v, scaled endpoint weights %v", where, netGot, netWant)
	}
}
