package topology_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/offline"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/topology"
	"github.com/horizonmesh/horizon/internal/xds/render"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the current output")

type dns map[string][]string

func (d dns) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range d[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, errors.New("no such host")
	}
	return out, nil
}

// load builds a golden case of translate's testdata as discovery would.
func load(t *testing.T, name string) *model.Mesh {
	t.Helper()
	dir := filepath.Join("..", "xds", "translate", "testdata", "golden", name)
	entries, err := os.ReadDir(filepath.Join(dir, "clusters"))
	if err != nil {
		t.Fatal(err)
	}
	names := dns{}
	if b, err := os.ReadFile(filepath.Join(dir, "dns.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &names); err != nil {
			t.Fatal(err)
		}
	}
	opts := offline.Options{Resolver: names}
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
	return m
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/topology/ -update writes it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (go test ./internal/topology/ -update, then review the diff):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// The topology of translate's golden meshes, as JSON (/debug/topology),
// text (horizon topology) and SVG (/ui/topology), each golden; the SVG is
// well-formed XML.
func TestTopologyGolden(t *testing.T) {
	for _, c := range []struct {
		name   string
		states []topology.ClusterState
	}{
		{"two-networks-walkthrough", []topology.ClusterState{{ID: "cluster1", Local: true, Synced: true}, {ID: "cluster2", Synced: false, Error: "not synced after 30s"}}},
		{"lcm-scaling", nil},
		{"registry-service-gateways", nil},
		{"network-without-gateways", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := topology.Of(load(t, c.name), c.states)
			js, err := render.Document("json", top)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".json", js)
			var txt, svg bytes.Buffer
			if err := topology.Text(&txt, top); err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".txt", txt.Bytes())
			if err := topology.SVG(&svg, top); err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".svg", svg.Bytes())
			dec := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
			for {
				if _, err := dec.Token(); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatalf("the SVG is not well-formed: %v", err)
				}
			}
		})
	}
}

// Every gateway says how it was found; a network with endpoints and no
// gateway is a problem, in a mesh of several networks only.
func TestTopologyGatewaysAndProblems(t *testing.T) {
	top := topology.Of(load(t, "two-networks-walkthrough"), nil)
	for _, n := range top.Networks {
		for _, g := range n.Gateways {
			if g.Found == "" {
				t.Errorf("network %s: gateway %s: how it was found is not said", n.Name, g.Address)
			}
		}
	}
	if p := top.Problems(); len(p) != 0 {
		t.Errorf("the walkthrough: problems %q", p)
	}
	p := topology.Of(load(t, "network-without-gateways"), nil).Problems()
	if len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), "no gateway") {
		t.Errorf("network-without-gateways: problems %q", p)
	}
	if p := topology.Of(load(t, "single-network"), nil).Problems(); len(p) != 0 {
		t.Errorf("single-network: problems %q", p)
	}
}
