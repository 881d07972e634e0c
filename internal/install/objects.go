package install

import (
	"bytes"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Unstructured converts rendered objects for printing and server-side
// apply, dropping the fields typed objects carry that no one set (a null
// creationTimestamp, a zero status).
func Unstructured(objs []runtime.Object) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		// Through JSON rather than reflection: Istio's API types marshal
		// themselves (protobuf JSON).
		b, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("%T: %w", o, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%T: %w", o, err)
		}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
		delete(u.Object, "status") // the installer never sets one
		out = append(out, u)
	}
	return out, nil
}

// YAML prints objects as one YAML stream, for `kubectl apply -f -` or GitOps.
func YAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for i, u := range objs {
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}
