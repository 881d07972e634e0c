// Package samples holds the walkthrough's workloads as YAML (what `horizon
// lab demo` applies and docs/install.md refers to); this test keeps them
// valid.
package samples

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// Every document of every sample decodes strictly (no unknown field) with
// the Kubernetes and Istio schemes, and every Deployment's selector
// matches its pod template.
func TestSamplesDecodeStrictly(t *testing.T) {
	s := runtime.NewScheme()
	if err := scheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := istioscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	files, _ := filepath.Glob("*/*.yaml")
	if len(files) < 4 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufioReader(b))
		for n := 0; ; n++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			obj, _, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				t.Errorf("%s, document %d: %v", f, n, err)
				continue
			}
			if d, ok := obj.(*appsv1.Deployment); ok {
				sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
				if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("%s: Deployment %s: selector does not match its pods", f, d.Name)
				}
				// The injector leaves probed ports uncaptured (the kubelet
				// reaches them without mTLS): a probe on the port the mesh
				// serves would make every mTLS request to it fail.
				for _, c := range d.Spec.Template.Spec.Containers {
					for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
						for _, cp := range c.Ports {
							if p != nil && (p.TCPSocket != nil && p.TCPSocket.Port.IntValue() == int(cp.ContainerPort) ||
								p.HTTPGet != nil && p.HTTPGet.Port.IntValue() == int(cp.ContainerPort)) {
								t.Errorf("%s: Deployment %s: container %s probes its served port %d, which the sidecar then does not capture", f, d.Name, c.Name, cp.ContainerPort)
							}
						}
					}
				}
			}
		}
	}
}

// tcp-echo and grpc-health run in cluster2 only; cluster1 gets their
// Service alone with `kubectl apply -f FILE -l service=NAME`: that label is
// on the Service and on nothing else.
func TestServiceOnlyBySelector(t *testing.T) {
	for _, name := range []string{"tcp-echo", "grpc-health"} {
		b, err := os.ReadFile(filepath.Join(name, name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var selected []string
		r := utilyaml.NewYAMLReader(bufioReader(b))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var obj metav1.PartialObjectMetadata
			if err := utilyaml.Unmarshal(doc, &obj); err != nil {
				t.Fatal(err)
			}
			if obj.Labels["service"] == name {
				selected = append(selected, obj.Kind+"/"+obj.Name)
			}
		}
		if want := []string{"Service/" + name}; !slices.Equal(selected, want) {
			t.Errorf("%s.yaml -l service=%s selects %v, want %v", name, name, selected, want)
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// The binary carries every sample, byte for byte.
func TestEmbedded(t *testing.T) {
	files, _ := filepath.Glob("*/*.yaml")
	embedded, err := fs.Glob(FS, "*/*.yaml")
	if err != nil || !slices.Equal(files, embedded) {
		t.Fatalf("embedded %v (%v), on disk %v", embedded, err, files)
	}
	for _, f := range files {
		disk, _ := os.ReadFile(f)
		if b, err := fs.ReadFile(FS, f); err != nil || !bytes.Equal(b, disk) {
			t.Errorf("%s: embedded copy differs (%v)", f, err)
		}
	}
}
