package install

import (
	"fmt"
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

// A remote cluster's gateway cannot be Ready before the primary has
// joined the cluster, so install does not wait for it; a primary's is
// waited for like every other Deployment.
func TestAwaitingJoin(t *testing.T) {
	deployments := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, u := range objs {
			if u.GetKind() == "Deployment" {
				out = append(out, u.GetName())
			}
		}
		return out
	}
	primary := Defaults()
	primary.ClusterID, primary.Network, primary.Gateway = "cluster1", "network1", true
	remote := Defaults()
	remote.ClusterID, remote.Network, remote.Remote, remote.Gateway = "cluster2", "network2", true, true
	remote.DiscoveryAddress = "203.0.113.10:15443"
	for _, tt := range []struct {
		name           string
		s              Settings
		wait, awaiting string
	}{
		{"primary", primary, "[horizon horizon-eastwestgateway]", "[]"},
		{"remote", remote, "[horizon-injector]", "[horizon-eastwestgateway]"},
	} {
		objs, err := Render(tt.s)
		if err != nil {
			t.Fatal(err)
		}
		u, err := Unstructured(objs)
		if err != nil {
			t.Fatal(err)
		}
		wait, awaiting := AwaitingJoin(tt.s, u)
		if got := fmt.Sprint(deployments(wait)); got != tt.wait {
			t.Errorf("%s: waits for %s, want %s", tt.name, got, tt.wait)
		}
		if got := fmt.Sprint(deployments(awaiting)); got != tt.awaiting {
			t.Errorf("%s: awaiting join %s, want %s", tt.name, got, tt.awaiting)
		}
		if len(wait)+len(awaiting) != len(u) {
			t.Errorf("%s: %d + %d objects of %d", tt.name, len(wait), len(awaiting), len(u))
		}
	}
}
