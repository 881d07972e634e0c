package manifest

import (
	"testing"

	"github.com/horizonmesh/horizon/internal/source/kube"
)

// FuzzDocument checks that no document, however broken, panics the loader or
// the conversion after it.
func FuzzDocument(f *testing.F) {
	for _, seed := range []string{svcDoc, sliceDoc, podDoc, nodeDoc, "apiVersion: v1\nkind: List\nitems: [1, {kind: Pod}]\n",
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: hello}}\nendpoints: [{addresses: [zz]}, {}]\nports: [{}]\n",
		"kind: [\n", "---\n", "{}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		l := &loader{store: kube.NewStore()}
		l.document("fuzz.yaml", doc)
		l.document("fuzz2.yaml", []byte(svcDoc))
		kube.Convert("c", l.store, kube.Options{})
	})
}
