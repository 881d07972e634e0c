package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
)

const svcDoc = `apiVersion: v1
kind: Service
metadata:
  name: hello
  namespace: sample
spec:
  ports:
  - name: http
    port: 5000
`

const sliceDoc = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hello-1
  namespace: sample
  labels:
    kubernetes.io/service-name: hello
addressType: IPv4
ports:
- name: http
  port: 5000
endpoints:
- addresses: [10.0.0.1]
  targetRef: {kind: Pod, name: hello-1}
`

const podDoc = `apiVersion: v1
kind: Pod
metadata:
  name: hello-1
  namespace: sample
  labels:
    security.istio.io/tlsMode: istio
spec:
  nodeName: n1
  containers: [{name: app, image: x}]
`

const nodeDoc = `apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {topology.kubernetes.io/region: eu}
`

func write(t *testing.T, dir, name, content string) string {
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

// endpointOf converts the store and returns hello's single endpoint.
func endpointOf(t *testing.T, s *kube.Store) *model.Endpoint {
	t.Helper()
	snap, diags := kube.Convert("c1", s, kube.Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	for _, svc := range snap.Services {
		if svc.Name == "hello" && len(svc.Endpoints[5000]) == 1 {
			return svc.Endpoints[5000][0]
		}
	}
	t.Fatalf("hello has no single endpoint: %+v", snap.Services)
	return nil
}

func TestLoadDirectoryFileAndList(t *testing.T) {
	dir := t.TempDir()
	// A directory, recursively, with other files ignored.
	write(t, dir, "tree/a/svc.yaml", svcDoc)
	write(t, dir, "tree/b/slice.yml", sliceDoc)
	write(t, dir, "tree/pod.json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hello-1","namespace":"sample","labels":{"security.istio.io/tlsMode":"istio"}},"spec":{"nodeName":"n1","containers":[{"name":"app","image":"x"}]}}`)
	write(t, dir, "tree/node.yaml", "# a comment-only document first\n---\n"+nodeDoc)
	write(t, dir, "tree/README.md", "not yaml: [")
	// One multi-document file.
	multi := write(t, dir, "all.yaml", svcDoc+"---\n"+sliceDoc+"---\n"+podDoc+"---\n---\n"+nodeDoc)
	// A v1 List, as kubectl get -o yaml prints.
	list := write(t, dir, "list.yaml", "apiVersion: v1\nkind: List\nitems:\n"+indentItems(svcDoc, sliceDoc, podDoc, nodeDoc))

	for _, path := range []string{filepath.Join(dir, "tree"), multi, list} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			s, diags := Load(path)
			if len(diags) != 0 {
				t.Fatalf("diagnostics: %v", diags)
			}
			e := endpointOf(t, s)
			if !e.MTLS || e.Locality.Region != "eu" || e.PodName != "hello-1" {
				t.Errorf("endpoint = %+v", e)
			}
		})
	}
}

// indentItems turns documents into YAML list items.
func indentItems(docs ...string) string {
	var b strings.Builder
	for _, d := range docs {
		for i, line := range strings.Split(strings.TrimRight(d, "\n"), "\n") {
			if i == 0 {
				b.WriteString("- " + line + "\n")
			} else {
				b.WriteString("  " + line + "\n")
			}
		}
	}
	return b.String()
}

func TestLoadBadInput(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		severity model.Severity
		contains []string
	}{
		{"malformed yaml", map[string]string{"bad.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: x\n"}, model.Error, []string{"bad.yaml"}},
		{"malformed second document", map[string]string{"bad.yaml": svcDoc + "---\nkind: [\n"}, model.Error, []string{"bad.yaml#2"}},
		{"unknown kind", map[string]string{"crd.yaml": "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"}, model.Warning, []string{"crd.yaml", "unsupported kind", "Gateway"}},
		{"known but unsupported kind", map[string]string{"dep.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"}, model.Warning, []string{"Deployment", "ignored"}},
		{"no kind", map[string]string{"x.yaml": "metadata: {name: x}\n"}, model.Error, []string{"x.yaml", "apiVersion/kind"}},
		{"no name", map[string]string{"x.yaml": "apiVersion: v1\nkind: Service\nspec: {ports: [{port: 1}]}\n"}, model.Error, []string{"x.yaml", "metadata.name", "no name"}},
		{"wrong field type", map[string]string{"x.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: ns}\nspec: {ports: [{port: eighty}]}\n"}, model.Error, []string{"x.yaml", "Service ns/x", "spec.ports.port"}},
		{"duplicate object", map[string]string{"a.yaml": svcDoc, "b.yaml": svcDoc}, model.Error, []string{"b.yaml", "Service sample/hello", "defined twice", "a.yaml"}},
		{"empty directory", map[string]string{"notes.txt": "x"}, model.Error, []string{"no *.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, c := range tt.files {
				write(t, dir, n, c)
			}
			_, diags := Load(dir)
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %v", diags)
			}
			if diags[0].Severity != tt.severity {
				t.Errorf("severity %v, want %v: %v", diags[0].Severity, tt.severity, diags[0])
			}
			for _, c := range tt.contains {
				if !strings.Contains(diags[0].String(), c) {
					t.Errorf("%q lacks %q", diags[0].String(), c)
				}
			}
		})
	}
}

func TestLoadMissingPath(t *testing.T) {
	_, diags := Load(filepath.Join(t.TempDir(), "nope"))
	if err := diags.Err(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("want an error naming the path, got %v", err)
	}
}

func TestNamespaceDefaults(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "svc.yaml", strings.Replace(svcDoc, "  namespace: sample\n", "", 1))
	s, diags := Load(dir)
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	snap, _ := kube.Convert("c", s, kube.Options{})
	if len(snap.Services) != 1 || snap.Services[0].Namespace != "default" {
		t.Errorf("services = %+v", snap.Services)
	}
}

func TestParseClusterFlag(t *testing.T) {
	good := map[string]ClusterSource{
		"cluster1=dir":               {"cluster1", "dir"},
		"remote_kubecfg=a/b=c.yaml":  {"remote_kubecfg", "a/b=c.yaml"},
		"east.prod-1=/abs/path.yaml": {"east.prod-1", "/abs/path.yaml"},
	}
	for in, want := range good {
		got, err := ParseClusterFlag(in)
		if err != nil || got != want {
			t.Errorf("ParseClusterFlag(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "noequals", "=dir", "c1=", "bad/id=dir", "sp ace=dir", "..=dir", strings.Repeat("x", 254) + "=d"} {
		if _, err := ParseClusterFlag(bad); err == nil {
			t.Errorf("ParseClusterFlag(%q) succeeded", bad)
		}
	}
}
