package install

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func render(t *testing.T, s Settings) []byte {
	t.Helper()
	objs, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	us, err := Unstructured(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.GetLabels()[ManagedByLabel] != ManagedBy {
			t.Errorf("%s %s lacks %s=%s", u.GetKind(), u.GetName(), ManagedByLabel, ManagedBy)
		}
	}
	y, err := YAML(us)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// Golden output of each install shape; `go test ./internal/install -update`
// rewrites them after a deliberate change (review the diff).
func TestGolden(t *testing.T) {
	primary := Defaults()
	primary.ClusterID, primary.Network, primary.Gateway, primary.ExposeServices = "cluster1", "network1", true, true
	primary.MeshNetworks = "networks:\n  network1:\n    endpoints:\n    - fromRegistry: cluster1\n"
	primary.StaleEndpointTTL.Duration = 10 * time.Minute
	single := Defaults()
	single.Replicas = 1
	remote := Defaults()
	remote.ClusterID, remote.Network, remote.Remote, remote.Gateway = "cluster2", "network2", true, true
	remote.DiscoveryAddress = "203.0.113.10:15443"
	// Taking over from Istio: Istio's injector stays, Horizon answers as istiod.
	migration := Defaults()
	migration.IstiodService, migration.InjectionWebhook = true, false
	for name, s := range map[string]Settings{"primary-gateway": primary, "single-replica": single, "remote-gateway": remote, "istio-migration": migration} {
		t.Run(name, func(t *testing.T) {
			got := render(t, s)
			if again := render(t, s); !bytes.Equal(got, again) {
				t.Fatal("rendering is not deterministic")
			}
			path := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendering; run `go test ./internal/install -update` and review the diff", path)
			}
		})
	}
}

func TestSettingsErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct {
		values, want string
	}{
		{"clusterID: cluster1\nreplicass: 3\n", `unknown field "replicass"`},
		{"clusterID: 'a b'\n", "clusterID:"},
		{"clusterID: c\nnetwork: 'net/2'\n", "network:"},
		{"clusterID: c\nremote: true\n", "discoveryAddress: required"},
		{"clusterID: c\nremote: true\ndiscoveryAddress: gw:99999\n", "discoveryAddress: port"},
		{"clusterID: c\nreplicas: 0\n", "replicas:"},
		{"clusterID: c\nexposeServices: true\n", "exposeServices: needs gateway"},
		{"clusterID: c\nimagePullPolicy: Sometimes\n", "imagePullPolicy:"},
		{"clusterID: c\ntrustDomain: a/b\n", "trustDomain: invalid trust domain"},
		{"clusterID: c\ntrustDomain: 'evil\"domain'\n", "trustDomain: invalid trust domain"},
		{"clusterID: c\nstaleEndpointTTL: 500ms\n", "staleEndpointTTL: 500ms: must be 0"},
		{"clusterID: c\nstaleEndpointTTL: -1m\n", "staleEndpointTTL: -1m0s: must be 0"},
		{"clusterID: c\nstaleEndpointTTL: ten\n", "invalid duration"},
		{"clusterID: c\nremote: true\ndiscoveryAddress: gw:15443\nstaleEndpointTTL: 5m\n", "staleEndpointTTL: only for a primary"},
		{"clusterID: c\ndefaultMTLSMode: DISABLE\n", "defaultMTLSMode:"},
		{"clusterID: c\ndefaultMTLSMode: strict\n", "defaultMTLSMode:"},
		{"clusterID: c\noutboundTrafficPolicy: DENY\n", "outboundTrafficPolicy:"},
	} {
		s, err := LoadValues(Defaults(), "values.yaml", []byte(tt.values))
		if err == nil {
			err = s.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("values %q: error %v, want one containing %q", tt.values, err, tt.want)
		}
	}
}

// Discovery reads Secrets only in its own namespace; cluster-wide it
// writes nothing but ConfigMaps (the root certificate) and its own webhook.
func TestDiscoveryRBACIsLeastPrivilege(t *testing.T) {
	cr := discoveryClusterRole(Defaults())
	for _, r := range cr.Rules {
		for _, res := range r.Resources {
			if res == "secrets" || res == "*" {
				t.Errorf("ClusterRole grants %v on %s", r.Verbs, res)
			}
		}
		for _, v := range r.Verbs {
			writes := v != "get" && v != "list" && v != "watch"
			allowed := r.Resources[0] == "configmaps" || r.Resources[0] == "tokenreviews" ||
				(r.Resources[0] == "mutatingwebhookconfigurations" && len(r.ResourceNames) == 1)
			if writes && !allowed {
				t.Errorf("ClusterRole may %s %v", v, r.Resources)
			}
		}
	}
	role := discoveryRole(Defaults())
	if role.Namespace != "istio-system" || len(role.Rules) != 1 || role.Rules[0].Resources[0] != "secrets" {
		t.Errorf("Role: %+v", role.Rules)
	}
}

// The embedded Istio CRDs are the ones the pinned istio.io/api ships.
func TestIstioCRDsMatchPinnedModule(t *testing.T) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	all, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "kubernetes", "customresourcedefinitions.gen.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{GatewayCRDName: gatewayCRD, DestinationRuleCRDName: destinationRuleCRD} {
		if _, err := IstioCRD(name); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(all, bytes.TrimSpace(raw)) {
			t.Errorf("the embedded %s differs from istio.io/api's; run scripts/istio-crds.sh", name)
		}
	}
}
