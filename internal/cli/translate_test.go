package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	walkthrough = "../../examples/walkthrough"
	helloworld  = "outbound|5000||helloworld.sample.svc.cluster.local"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func walkthroughArgs(extra ...string) []string {
	return append([]string{"translate",
		"--cluster", "cluster1=" + walkthrough + "/cluster1",
		"--cluster", "remote_kubecfg=" + walkthrough + "/remote",
		"--mesh-networks", walkthrough + "/meshnetworks.yaml"}, extra...)
}

// endpointsOf returns addr:port → weight of a ClusterLoadAssignment in JSON.
func endpointsOf(t *testing.T, raw []byte) map[string]float64 {
	t.Helper()
	var cla struct {
		ClusterName string `json:"clusterName"`
		Endpoints   []struct {
			LbEndpoints []struct {
				Endpoint struct {
					Address struct {
						SocketAddress struct {
							Address   string  `json:"address"`
							PortValue float64 `json:"portValue"`
						} `json:"socketAddress"`
					} `json:"address"`
				} `json:"endpoint"`
				LoadBalancingWeight float64 `json:"loadBalancingWeight"`
			} `json:"lbEndpoints"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(raw, &cla); err != nil {
		t.Fatalf("output is not a ClusterLoadAssignment: %v\n%s", err, raw)
	}
	if cla.ClusterName != helloworld {
		t.Fatalf("clusterName = %q", cla.ClusterName)
	}
	out := map[string]float64{}
	for _, l := range cla.Endpoints {
		for _, lb := range l.LbEndpoints {
			sa := lb.Endpoint.Address.SocketAddress
			out[fmt.Sprintf("%s:%d", sa.Address, int(sa.PortValue))] = lb.LoadBalancingWeight
		}
	}
	return out
}

func TestTranslateWalkthroughSplitHorizon(t *testing.T) {
	code, out, errOut := run(t, walkthroughArgs("--proxy-network", "", "--proxy-cluster", "cluster1", "--name", helloworld)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := endpointsOf(t, []byte(out))
	want := map[string]float64{"10.10.0.5:5000": 1, "203.0.113.20:443": 1}
	if len(got) != len(want) || got["10.10.0.5:5000"] != 1 || got["203.0.113.20:443"] != 1 {
		t.Errorf("local sidecar sees %v, want %v", got, want)
	}
	if !strings.Contains(errOut, "0.0.0.0") {
		t.Errorf("the walkthrough's placeholder gateway should be warned about; stderr: %s", errOut)
	}

	code, out, errOut = run(t, walkthroughArgs("--proxy-network", "network2", "--name", helloworld)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got = endpointsOf(t, []byte(out))
	if len(got) != 2 || got["10.10.0.5:5000"] != 1 || got["10.20.0.7:5000"] != 1 {
		t.Errorf("network2 sidecar sees %v, want both pods directly", got)
	}
}

func TestTranslateListsAndFormats(t *testing.T) {
	code, out, errOut := run(t, walkthroughArgs("--proxy-network", "", "--type", "cds")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var clusters []map[string]any
	if err := json.Unmarshal([]byte(out), &clusters); err != nil {
		t.Fatalf("cds output is not a JSON array: %v", err)
	}
	var names []string
	outbound := 0
	for _, c := range clusters {
		name := c["name"].(string)
		names = append(names, name)
		switch {
		case strings.HasPrefix(name, "outbound|"):
			outbound++
			if c["type"] != "EDS" {
				t.Errorf("cluster %v is not EDS", name)
			}
		case name != "PassthroughCluster":
			t.Errorf("unexpected cluster %s", name)
		}
	}
	if !strings.Contains(strings.Join(names, ","), helloworld) {
		t.Errorf("CDS names %v lack %s", names, helloworld)
	}

	code, out, _ = run(t, walkthroughArgs("--proxy-network", "", "-o", "yaml")...)
	if code != 0 {
		t.Fatal("yaml output failed")
	}
	var list []map[string]any
	if err := yaml.Unmarshal([]byte(out), &list); err != nil || len(list) != outbound {
		t.Errorf("yaml EDS list: %v, %d entries, want one per outbound cluster (%d)", err, len(list), outbound)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTranslateBadInput(t *testing.T) {
	dir := t.TempDir()
	broken := writeFile(t, dir, "broken/svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x\n")
	badNets := writeFile(t, dir, "nets.yaml", "networks:\n  n1:\n    endpoints:\n    - fromCidr: 10.0.0.0/33\n")
	good := walkthrough + "/cluster1"
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"unknown type", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--type", "sds"}, 2, []string{"--type", "sds"}},
		{"unknown role", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--role", "ingress"}, 2, []string{"--role", "ingress"}},
		{"routes of a router", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--role", "router", "--type", "rds"}, 2, []string{"no routes"}},
		{"bad proxy ip", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--proxy-ip", "10.0.0"}, 2, []string{"--proxy-ip", "10.0.0"}},
		{"bad label", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--role", "router", "--label", "istio"}, 2, []string{"--label", "KEY=VALUE"}},
		{"missing gateways file", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--role", "router", "--gateways", filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml"}},
		{"unknown output", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "-o", "xml"}, 2, []string{"--output"}},
		{"missing proxy network", []string{"translate", "--cluster", "c=" + good}, 2, []string{"proxy-network"}},
		{"no cluster", []string{"translate", "--proxy-network", "n"}, 2, []string{"--cluster"}},
		{"bad cluster flag", []string{"translate", "--cluster", "no-equals-sign", "--proxy-network", "n"}, 2, []string{"no-equals-sign"}},
		{"bad name", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--name", "helloworld"}, 2, []string{"--name", "outbound|PORT||HOST"}},
		{"unknown flag", []string{"translate", "--clusters", "c=" + good}, 2, []string{"clusters"}},
		{"duplicate cluster id", []string{"translate", "--cluster", "c=" + good, "--cluster", "c=" + good, "--proxy-network", "n"}, 1, []string{`cluster "c"`, "duplicate"}},
		{"malformed yaml", []string{"translate", "--cluster", "c=" + filepath.Dir(broken), "--proxy-network", "n"}, 1, []string{"svc.yaml"}},
		{"missing path", []string{"translate", "--cluster", "c=" + filepath.Join(dir, "nope"), "--proxy-network", "n"}, 1, []string{"nope"}},
		{"bad meshNetworks", []string{"translate", "--cluster", "c=" + good, "--mesh-networks", badNets, "--proxy-network", "n"}, 1, []string{"nets.yaml", "network n1", "endpoints[0].fromCidr"}},
		{"unknown name", []string{"translate", "--cluster", "c=" + good, "--proxy-network", "n", "--name", "outbound|1||x.y.svc.cluster.local"}, 1, []string{"no such cluster", helloworld}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, errOut)
			}
			if out != "" {
				t.Errorf("nothing may be printed on failure, got %q", out)
			}
			for _, c := range tt.contains {
				if !strings.Contains(errOut, c) {
					t.Errorf("stderr lacks %q:\n%s", c, errOut)
				}
			}
		})
	}
}
