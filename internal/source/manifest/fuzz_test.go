package manifest

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
)

// FuzzDocument loads one fuzzed document, adds the walkthrough-like Service,
// slice, Pod and Node where it did not define them (so a fuzzed object meets
// real ones: a fuzzed slice finds its Service and Pod, a fuzzed Pod serves
// the real slice), and converts the store with kube.Convert. Invariants: no
// panic; loading and converting are deterministic; every diagnostic names its origin (the fuzzed file, or one
// of its List items) and says what is wrong; every endpoint that comes out
// has a valid, zone-less address, a port in 1-65535, the cluster's ID and a
// port its Service has.
func FuzzDocument(f *testing.F) {
	for _, seed := range []string{svcDoc, sliceDoc, podDoc, nodeDoc, "apiVersion: v1\nkind: List\nitems: [1, {kind: Pod}]\n",
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: hello}}\nendpoints: [{addresses: [zz]}, {}]\nports: [{}]\n",
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s2, namespace: sample, labels: {kubernetes.io/service-name: hello}}\naddressType: IPv6\n" +
			"ports: [{name: http, port: 5000}, {name: http, port: 0}]\nendpoints: [{addresses: ['fe80::1%eth0', '::ffff:10.0.0.3', 10.0.0.1], targetRef: {name: hello-1}, conditions: {ready: true}}]\n",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: istio-system, labels: {topology.istio.io/network: n1}}}\n- {apiVersion: v1, kind: Service, metadata: {name: x}, spec: {ports: [{port: 99999}, {port: 80, name: a}, {port: 80, name: a}]}}\n",
		"{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"hello\", \"namespace\": \"sample\"}, \"spec\": {\"ports\": [{\"name\": \"http\", \"port\": 5000, \"protocol\": \"UDP\"}]}}",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: hello-1, namespace: sample}\nspec: {nodeName: [1]}\n",
		"kind: [\n", "---\n", "{}", "a: &x [*x, *x]\n"} {
		f.Add([]byte(seed))
	}
	// The fixed objects are decoded once; each run adds those the fuzzed
	// document did not define (Convert never modifies stored objects).
	var fixed []runtime.Object
	for _, d := range []string{svcDoc, sliceDoc, podDoc, nodeDoc} {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(d), nil, nil)
		if err != nil {
			f.Fatal(err)
		}
		fixed = append(fixed, obj)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		load := func() *loader {
			l := &loader{store: kube.NewStore()}
			l.document("fuzz.yaml", doc)
			for _, o := range fixed {
				if _, dup := l.store.Origin(o); !dup {
					l.store.Upsert(o, "fixed.yaml")
				}
			}
			return l
		}
		l, l2 := load(), load()
		if !reflect.DeepEqual(l.diags, l2.diags) {
			t.Fatalf("loading is not deterministic: %v then %v", l.diags, l2.diags)
		}
		for _, d := range l.diags {
			if d.File != "fuzz.yaml" && !strings.HasPrefix(d.File, "fuzz.yaml: items[") {
				t.Fatalf("diagnostic with origin %q: %v", d.File, d)
			}
			if d.Message == "" {
				t.Fatalf("diagnostic without a message: %+v", d)
			}
		}
		snap, diags := kube.Convert("c1", l.store, kube.Options{})
		snap2, diags2 := kube.Convert("c1", l2.store, kube.Options{})
		if !reflect.DeepEqual(snap, snap2) || !reflect.DeepEqual(diags, diags2) {
			t.Fatal("conversion is not deterministic")
		}
		for _, d := range diags {
			if d.File == "" || d.Object == "" || d.Field == "" || d.Message == "" {
				t.Fatalf("conversion diagnostic without origin, object or field: %+v", d)
			}
		}
		for _, svc := range snap.Services {
			for port, eps := range svc.Endpoints {
				if _, ok := portOf(svc.Ports, port); !ok {
					t.Fatalf("service %s/%s: endpoints for port %d it does not have", svc.Namespace, svc.Name, port)
				}
				for _, e := range eps {
					if !e.Address.IsValid() || e.Address.Zone() != "" || e.Address.Is4In6() || e.Port < 1 || e.Port > 65535 || e.Cluster != "c1" {
						t.Fatalf("service %s/%s: invalid endpoint %+v", svc.Namespace, svc.Name, e)
					}
				}
			}
		}
	})
}

func portOf(ports []model.ServicePort, n uint32) (model.ServicePort, bool) {
	for _, p := range ports {
		if p.Port == n {
			return p, true
		}
	}
	return model.ServicePort{}, false
}
