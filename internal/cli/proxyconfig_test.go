package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/horizonmesh/horizon/internal/offline"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

var updateGolden = flag.Bool("update", false, "rewrite internal/cli/testdata/*/ golden files from the current output")

// golden compares got with testdata/<path> (rewritten with -update).
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	path = filepath.Join("testdata", path)
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/cli/ -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (go test ./internal/cli/ -run %s -update, then review the diff):\n--- want\n%s\n--- got\n%s", path, t.Name(), want, got)
	}
}

// walkthroughMesh is the walkthrough's mesh, as discovery builds it.
func walkthroughGateways(t *testing.T, network string) []translate.GatewayEndpoint {
	t.Helper()
	m, diags := offline.Load(context.Background(), offline.Options{
		Clusters:         []manifest.ClusterSource{{ID: "cluster1", Path: walkthrough + "/cluster1"}, {ID: "remote_kubecfg", Path: walkthrough + "/remote"}},
		MeshNetworksFile: walkthrough + "/meshnetworks.yaml",
	})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return translate.GatewayEndpoints(m, translate.EDSView{Network: network})
}

func loadDump(t *testing.T) *configDump {
	t.Helper()
	b, err := os.ReadFile("testdata/proxyconfig/config_dump.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseConfigDump(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Each table of a proxy's config_dump (a sidecar of cluster1 in the
// walkthrough, with Istio filter types Horizon does not link); endpoints
// say what stands behind the remote cluster's gateway.
func TestProxyConfigTables(t *testing.T) {
	d := loadDump(t)
	if n := d.node(); n.Network != "" || n.Cluster != "cluster1" || !strings.HasPrefix(n.ID, "sidecar~10.10.0.7~") {
		t.Errorf("node: %+v", n)
	}
	clas, err := d.loadAssignments("static_endpoint_configs", "dynamic_endpoint_configs")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeEndpoints(&out, endpointRows(clas, behindText(walkthroughGateways(t, ""), true))); err != nil {
		t.Fatal(err)
	}
	golden(t, "proxyconfig/endpoints.txt", out.Bytes())
	if !hasRow(out.String(), "203.0.113.20:443", "network2 / remote_kubecfg: helloworld-v2-7dd57c44c4-f56gq (1 pod)") {
		t.Errorf("the gateway endpoint's row does not say what stands behind it:\n%s", &out)
	}
	out.Reset()
	_ = writeEndpoints(&out, endpointRows(clas, behindText(nil, false)))
	golden(t, "proxyconfig/endpoints-without-discovery.txt", out.Bytes())

	for name, table := range map[string]struct {
		header []string
		rows   [][]string
	}{
		"clusters":  {[]string{"NAME", "DIRECTION", "PORT", "HOST", "TYPE"}, d.clusterRows()},
		"listeners": {[]string{"NAME", "ADDRESS", "FILTER CHAINS"}, d.listenerRows()},
		"routes":    {[]string{"NAME", "VIRTUAL HOST", "DOMAINS"}, d.routeRows()},
		"secrets":   {[]string{"NAME", "TYPE", "SERIAL", "NOT AFTER", "SANS"}, d.secretRows()},
	} {
		out.Reset()
		if err := writeTable(&out, table.header, table.rows); err != nil {
			t.Fatal(err)
		}
		golden(t, "proxyconfig/"+name+".txt", out.Bytes())
	}
}

// --diff: what the proxy holds against what translate builds for its view;
// the stale endpoint the dump holds is the one difference, and a missing
// or extra load assignment is a line of its own.
func TestProxyConfigDiff(t *testing.T) {
	d := loadDump(t)
	proxy, err := d.loadAssignments("dynamic_endpoint_configs")
	if err != nil {
		t.Fatal(err)
	}
	m, diags := offline.Load(context.Background(), offline.Options{
		Clusters:         []manifest.ClusterSource{{ID: "cluster1", Path: walkthrough + "/cluster1"}, {ID: "remote_kubecfg", Path: walkthrough + "/remote"}},
		MeshNetworksFile: walkthrough + "/meshnetworks.yaml",
	})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	if eds := d.edsClusters(); len(eds) != 1 || !eds[helloworld] {
		t.Errorf("EDS clusters: %v, want only helloworld's (xds-grpc is static, PassthroughCluster ORIGINAL_DST)", eds)
	}
	want := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, cla := range translate.EDS(m, translate.EDSView{}) {
		want[cla.GetClusterName()] = cla
	}
	only := map[string]*endpointv3.ClusterLoadAssignment{helloworld: want[helloworld]}
	lines := diffEndpoints(proxy, only)
	if len(lines) != 1 || lines[0] != "- "+helloworld+" 10.10.0.9:5000 locality=eu-west/eu-west-1a/ priority=0 weight=1" {
		t.Errorf("diff: %q", lines)
	}
	if lines := diffEndpoints(only, only); len(lines) != 0 {
		t.Errorf("diff of the same: %q", lines)
	}
	lines = diffEndpoints(proxy, want)
	golden(t, "proxyconfig/diff.txt", []byte(strings.Join(lines, "\n")+"\n"))
	if len(lines) < 2 || !strings.Contains(strings.Join(lines, "\n"), "(the proxy holds no such load assignment)") {
		t.Errorf("diff against the whole view: %q", lines)
	}
}

// hasRow: a line of table holds endpoint and ends with behind.
func hasRow(table, endpoint, behind string) bool {
	for _, l := range strings.Split(table, "\n") {
		if strings.Contains(l, " "+endpoint+" ") && strings.HasSuffix(l, " "+behind) {
			return true
		}
	}
	return false
}

// -o json and -o yaml: endpoints as objects, the gateway endpoint with
// discovery's description of what stands behind it; the other types as
// Envoy holds the resources (static, then dynamic).
func TestProxyConfigDocuments(t *testing.T) {
	d := loadDump(t)
	clas, err := d.loadAssignments("static_endpoint_configs", "dynamic_endpoint_configs")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeDocument(&out, "json", endpointRows(clas, behindText(walkthroughGateways(t, ""), true))); err != nil {
		t.Fatal(err)
	}
	golden(t, "proxyconfig/endpoints.json", out.Bytes())
	var rows []endpointRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	gateways := 0
	for _, r := range rows {
		if r.Gateway != nil {
			gateways++
			if r.Endpoint != "203.0.113.20:443" || r.Gateway.Network != "network2" || len(r.Gateway.Members) != 1 {
				t.Errorf("gateway row %+v", r)
			}
		}
	}
	if gateways != 1 {
		t.Errorf("%d rows with a gateway, want 1", gateways)
	}
	for typ, table := range map[string][][]string{"clusters": d.clusterRows(), "listeners": d.listenerRows(), "secrets": d.secretRows()} {
		var docs []map[string]any
		out.Reset()
		if err := writeDocument(&out, "json", d.resources(typ)); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out.Bytes(), &docs); err != nil || len(docs) != len(table) {
			t.Errorf("%s: %d resources (%v), want one per table row (%d)", typ, len(docs), err, len(table))
		}
		for _, doc := range docs {
			if name, _ := doc["name"].(string); !slices.ContainsFunc(table, func(r []string) bool { return r[0] == name }) {
				t.Errorf("%s: resource %q is not in the table", typ, name)
			}
		}
	}
	out.Reset()
	if err := writeDocument(&out, "yaml", d.resources("routes")); err != nil || !strings.Contains(out.String(), "virtual_hosts:") {
		t.Errorf("routes as YAML: %v\n%s", err, &out)
	}
}

func TestProxyConfigUsage(t *testing.T) {
	for _, args := range [][]string{
		{"proxy-config", "clusters", "sleep", "-o", "xml"},
		{"proxy-config", "endpoints", "sleep", "--diff", "-o", "json"},
		{"proxy-config", "clusters", "sleep", "--diff"},
		{"proxy-config", "pods", "sleep"},
	} {
		if code, _, errOut := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage): %s", args, code, errOut)
		}
	}
}
