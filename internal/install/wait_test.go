package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A Deployment has rolled out when the controller has seen its latest spec
// and every replica is updated and available, as `kubectl rollout status`.
func TestRolledOut(t *testing.T) {
	d := func(gen, observed, replicas, updated, available int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"generation": gen},
			"spec":     map[string]any{"replicas": replicas},
			"status":   map[string]any{"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available},
		}}
	}
	for _, tt := range []struct {
		name string
		dep  *unstructured.Unstructured
		want bool
	}{
		{"done", d(2, 2, 2, 2, 2), true},
		{"spec not yet observed", d(3, 2, 2, 2, 2), false},
		{"old pods still serving", d(2, 2, 2, 1, 2), false},
		{"updated but not available", d(2, 2, 2, 2, 1), false},
		{"no status yet", &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"generation": int64(1)}}}, false},
	} {
		if got, status := rolledOut(tt.dep); got != tt.want {
			t.Errorf("%s: rolledOut = %v (%s), want %v", tt.name, got, status, tt.want)
		}
	}
}
