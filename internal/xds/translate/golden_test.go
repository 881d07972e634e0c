package translate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/offline"
	"github.com/horizonmesh/horizon/internal/source/istio"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/xds/render"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*/out/ from the current output (and delete files no longer produced)")

// A golden case is a directory under testdata/golden:
//
//	clusters/<ID>/...   one directory of manifests per cluster (ID = name)
//	meshnetworks.yaml   optional meshNetworks
//	dns.yaml            optional fake DNS: {name: [ip, ...]}
//	outbound-traffic-policy  optional ALLOW_ANY or REGISTRY_ONLY
//	sidecar-ip          optional address of the workload whose sidecar's
//	                    LDS/CDS the case shows (default: one serving 5000)
//	gateways.yaml       optional Istio Gateways (the config cluster's)
//	destinationrules.yaml  optional Istio DestinationRules
//	locality-failover   optional, empty: the mesh default --locality-failover
//	peerauthentications.yaml  optional Istio PeerAuthentications (root
//	                    namespace istio-system)
//	default-mtls-mode   optional PERMISSIVE (the default) or STRICT
//	out/                what translate.Build makes, one file per view and
//	                    type (see goldenOutput); files it no longer makes
//	                    are orphans: -update deletes them, otherwise they
//	                    fail the test
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/golden/*")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := goldenOutput(t, dir)
			outDir := filepath.Join(dir, "out")
			existing, _ := filepath.Glob(filepath.Join(outDir, "*"))
			if *update {
				if err := os.MkdirAll(outDir, 0o755); err != nil {
					t.Fatal(err)
				}
				for _, p := range existing {
					if _, ok := got[filepath.Base(p)]; !ok {
						if err := os.Remove(p); err != nil {
							t.Fatal(err)
						}
					}
				}
				for name, b := range got {
					if err := os.WriteFile(filepath.Join(outDir, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			for _, p := range existing {
				if _, ok := got[filepath.Base(p)]; !ok {
					t.Errorf("orphan golden file %s: nothing produces it any more (run `make golden` to delete it)", p)
				}
			}
			for _, name := range slices.Sorted(maps.Keys(got)) {
				path := filepath.Join(outDir, name)
				want, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("%v (run `make golden` to create it)", err)
					continue
				}
				if !bytes.Equal(got[name], want) {
					t.Errorf("output differs from %s (run `make golden` and review the diff):\n%s", path, firstDiff(string(want), string(got[name])))
				}
			}
		})
	}
}

type meshDoc struct {
	Networks []string `json:"networks"`
	Gateways []string `json:"gateways"`
	Warnings []string `json:"warnings"`
}

// goldenOutput builds, with translate.Build as discovery does, the files
// of a case:
//
//	mesh.json                  networks, resolved gateways, warnings
//	eds.<network>.json         a sidecar's EDS on each network ("none": on none)
//	eds.<network>.<cluster>.<region>.<zone>.json  with DestinationRules or
//	                           the mesh default: the EDS of a sidecar whose
//	                           workload the mesh knows, for every (network,
//	                           cluster, locality) an endpoint stands in
//	behind.<network>.json      what each gateway endpoint of that EDS stands
//	                           for (translate.GatewayEndpoints; with gateways)
//	sidecar.{cds,lds,rds}.json a sidecar of the first cluster serving port 5000
//	                           (HTTP), or with a file sidecar-ip, that of the
//	                           workload at that address
//	nds.<cluster>.json         the NDS name table of a sidecar in each cluster
//	                           (when a service has a ClusterIP: else it is empty)
//	router.<network>.eds.json  a network gateway's EDS on each network
//	router.<network>.{cds,lds}.json  with gateways.yaml: the gateway of each
//	                           network labelled as its Gateways select
func goldenOutput(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "clusters"))
	if err != nil {
		t.Fatal(err)
	}
	opts := offline.Options{Resolver: loadDNS(t, filepath.Join(dir, "dns.yaml"))}
	for _, e := range entries {
		opts.Clusters = append(opts.Clusters, manifest.ClusterSource{ID: model.ClusterID(e.Name()), Path: filepath.Join(dir, "clusters", e.Name())})
	}
	if mn := filepath.Join(dir, "meshnetworks.yaml"); fileExists(mn) {
		opts.MeshNetworksFile = mn
	}
	if dr := filepath.Join(dir, "destinationrules.yaml"); fileExists(dr) {
		opts.DestinationRulesFile = dr
	}
	opts.LocalityFailover = fileExists(filepath.Join(dir, "locality-failover"))
	located := opts.DestinationRulesFile != "" || opts.LocalityFailover
	if pa := filepath.Join(dir, "peerauthentications.yaml"); fileExists(pa) {
		opts.PeerAuthenticationsFile = pa
	}
	defaultMode := model.DefaultMTLSMode
	if b, err := os.ReadFile(filepath.Join(dir, "default-mtls-mode")); err == nil {
		defaultMode = model.MTLSMode(bytes.TrimSpace(b))
		if err := model.ValidateDefaultMTLSMode(string(defaultMode)); err != nil {
			t.Fatalf("default-mtls-mode: %v", err)
		}
	}
	opts.DefaultMTLSMode = defaultMode
	m, diags := offline.Load(context.Background(), opts)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	in := translate.Input{Mesh: m}
	if b, err := os.ReadFile(filepath.Join(dir, "outbound-traffic-policy")); err == nil {
		in.Options.OutboundTrafficPolicy = string(bytes.TrimSpace(b))
	}
	if gw := filepath.Join(dir, "gateways.yaml"); fileExists(gw) {
		var d model.Diagnostics
		if in.Gateways, d = istio.LoadGatewaysFile(gw); d.Err() != nil {
			t.Fatal(d.Err())
		}
	}
	out := map[string][]byte{}
	doc := meshDoc{Networks: m.Networks(), Gateways: []string{}, Warnings: []string{}}
	for _, g := range m.Gateways() {
		doc.Gateways = append(doc.Gateways, g.String())
	}
	for _, w := range diags.Warnings() {
		w.File = filepath.ToSlash(relTo(dir, w.File))
		doc.Warnings = append(doc.Warnings, w.String())
	}
	sort.Strings(doc.Warnings)
	var err2 error
	if out["mesh.json"], err2 = render.Document("json", doc); err2 != nil {
		t.Fatal(err2)
	}
	put := func(name, typeURL string, v translate.View) {
		res := translate.Build(in, typeURL, v)
		names := slices.Sorted(maps.Keys(res))
		list := make([]proto.Message, 0, len(names))
		for _, n := range names {
			r := res[n]
			if v, ok := r.(interface{ ValidateAll() error }); ok { // Envoy's types; NDS has no rules
				if err := v.ValidateAll(); err != nil {
					t.Errorf("%s %s: %v", name, n, err)
				}
			} else if typeURL != translate.NameTableType {
				t.Errorf("%s %s: %T has no ValidateAll", name, n, r)
			}
			list = append(list, r)
		}
		raw, err := render.Resources(list)
		if err != nil {
			t.Fatal(err)
		}
		if out[name], err = render.Document("json", raw); err != nil {
			t.Fatal(err)
		}
	}
	fileNet := func(n string) string {
		if n == "" {
			return "none"
		}
		return n
	}
	for _, network := range append([]string{""}, m.Networks()...) {
		put("eds."+fileNet(network)+".json", resource.EndpointType, translate.View{Network: network})
		if !m.HasGateways() {
			continue
		}
		behind := translate.GatewayEndpoints(m, translate.EDSView{Network: network})
		checkBehind(t, m, network, behind, translate.Build(in, resource.EndpointType, translate.View{Network: network}))
		if behind == nil {
			behind = []translate.GatewayEndpoint{}
		}
		if out["behind."+fileNet(network)+".json"], err2 = render.Document("json", behind); err2 != nil {
			t.Fatal(err2)
		}
	}
	if located {
		seen := map[translate.View]bool{}
		for _, svc := range m.Services() {
			for _, eps := range svc.Endpoints {
				for _, e := range eps {
					v, _ := translate.ViewOf(resource.EndpointType, translate.Proxy{Network: e.Network, Cluster: e.Cluster, Located: true, Locality: e.Locality})
					if !seen[v] {
						seen[v] = true
						put("eds."+fileNet(e.Network)+"."+string(e.Cluster)+"."+e.Locality.Region+"."+e.Locality.Zone+".json", resource.EndpointType, v)
					}
				}
			}
		}
	}
	sidecar := translate.Proxy{Cluster: opts.Clusters[0].ID, Inbound: []translate.WorkloadPort{{Port: 5000, Mode: defaultMode}}}
	if b, err := os.ReadFile(filepath.Join(dir, "sidecar-ip")); err == nil {
		// The sidecar of the workload at that address: its ports and their
		// protocols as discovery finds them.
		sidecar, _ = translate.ProxyOf(m, translate.Claim{Cluster: opts.Clusters[0].ID,
			IPs: []netip.Addr{netip.MustParseAddr(string(bytes.TrimSpace(b)))}})
	}
	for _, typ := range []struct{ name, url string }{{"cds", resource.ClusterType}, {"lds", resource.ListenerType}, {"rds", resource.RouteType}} {
		v, _ := translate.ViewOf(typ.url, sidecar)
		put("sidecar."+typ.name+".json", typ.url, v)
	}
	if slices.ContainsFunc(m.Services(), func(s *model.Service) bool { return len(s.ClusterIPs) > 0 }) {
		for _, c := range opts.Clusters {
			v, _ := translate.ViewOf(translate.NameTableType, translate.Proxy{Cluster: c.ID})
			put("nds."+string(c.ID)+".json", translate.NameTableType, v)
		}
	}
	for _, network := range m.Networks() {
		router := translate.Proxy{Role: translate.RoleRouter, Network: network}
		v, _ := translate.ViewOf(resource.EndpointType, router)
		put("router."+network+".eds.json", resource.EndpointType, v)
		for _, g := range in.Gateways {
			router.Labels = g.Selector
			for _, typ := range []struct{ name, url string }{{"cds", resource.ClusterType}, {"lds", resource.ListenerType}} {
				v, _ := translate.ViewOf(typ.url, router)
				put("router."+network+"."+typ.name+".json", typ.url, v)
			}
		}
	}
	return out
}

type fakeDNS map[string][]string

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range f[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, errors.New("no such host (fake DNS)")
	}
	return out, nil
}

func loadDNS(t *testing.T, path string) model.Resolver {
	dns := fakeDNS{}
	if b, err := os.ReadFile(path); err == nil {
		if err := yaml.Unmarshal(b, &dns); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return dns
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func relTo(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && p != "" {
		return r
	}
	return p
}

// firstDiff shows the first differing line with a little context.
func firstDiff(want, got string) string {
	wl, gl := bytes.Split([]byte(want), []byte("\n")), bytes.Split([]byte(got), []byte("\n"))
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return "line " + itoa(i+1) + ":\n- " + string(w) + "\n+ " + string(g)
		}
	}
	return ""
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
