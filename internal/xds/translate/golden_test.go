package translate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/offline"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/xds/render"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*/expected.json from the current output")

// A golden case is a directory under testdata/golden:
//
//	clusters/<ID>/...   one directory of manifests per cluster (ID = name)
//	meshnetworks.yaml   optional meshNetworks
//	dns.yaml            optional fake DNS: {name: [ip, ...]}
//	expected.json       CDS, the EDS of every network's view (and of a
//	                    proxy on no network, under ""), and the warnings
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/golden/*")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := goldenOutput(t, dir)
			path := filepath.Join(dir, "expected.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run `make golden` and review the diff):\n%s", path, firstDiff(string(want), string(got)))
			}
		})
	}
}

type goldenDoc struct {
	Networks []string                     `json:"networks"`
	Gateways []string                     `json:"gateways"`
	Warnings []string                     `json:"warnings"`
	CDS      []json.RawMessage            `json:"cds"`
	EDS      map[string][]json.RawMessage `json:"eds"`
	// Sidecar is what a sidecar of the first cluster serving port 5000 gets.
	Sidecar struct {
		LDS     []json.RawMessage `json:"lds"`
		RDS     []json.RawMessage `json:"rds"`
		Inbound []json.RawMessage `json:"inboundClusters"`
	} `json:"sidecar"`
}

func goldenOutput(t *testing.T, dir string) []byte {
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
	m, diags := offline.Load(context.Background(), opts)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	doc := goldenDoc{Networks: m.Networks(), Gateways: []string{}, Warnings: []string{}, EDS: map[string][]json.RawMessage{}}
	for _, g := range m.Gateways() {
		doc.Gateways = append(doc.Gateways, g.String())
	}
	for _, w := range diags.Warnings() {
		w.File = filepath.ToSlash(relTo(dir, w.File))
		doc.Warnings = append(doc.Warnings, w.String())
	}
	sort.Strings(doc.Warnings)
	cds := translate.CDS(m, translate.Options{})
	for _, c := range cds {
		if err := c.ValidateAll(); err != nil {
			t.Errorf("CDS %s: %v", c.Name, err)
		}
	}
	if doc.CDS, err = render.Resources(cds); err != nil {
		t.Fatal(err)
	}
	for _, network := range append([]string{""}, m.Networks()...) {
		eds := translate.EDS(m, translate.EDSView{Network: network})
		for _, cla := range eds {
			if err := cla.ValidateAll(); err != nil {
				t.Errorf("EDS %s for %q: %v", cla.ClusterName, network, err)
			}
		}
		if doc.EDS[network], err = render.Resources(eds); err != nil {
			t.Fatal(err)
		}
	}
	view := translate.SidecarView{Cluster: opts.Clusters[0].ID, InboundPorts: []uint32{5000}}
	lds, rds, inbound := translate.LDS(m, view), translate.RDS(m, view), translate.InboundClusters(view)
	for _, l := range lds {
		if err := l.ValidateAll(); err != nil {
			t.Errorf("LDS %s: %v", l.Name, err)
		}
	}
	for _, r := range rds {
		if err := r.ValidateAll(); err != nil {
			t.Errorf("RDS %s: %v", r.Name, err)
		}
	}
	if doc.Sidecar.LDS, err = render.Resources(lds); err != nil {
		t.Fatal(err)
	}
	if doc.Sidecar.RDS, err = render.Resources(rds); err != nil {
		t.Fatal(err)
	}
	if doc.Sidecar.Inbound, err = render.Resources(inbound); err != nil {
		t.Fatal(err)
	}
	out, err := render.Document("json", doc)
	if err != nil {
		t.Fatal(err)
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
