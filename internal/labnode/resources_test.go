package labnode

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// resourceFieldRef env values as the kubelet computes them (GOMEMLIMIT of
// horizon install's Deployments is one).
func TestResourceFieldRefEnv(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "app", Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi"), corev1.ResourceCPU: resource.MustParse("500m")},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}}},
		{Name: "bare"},
	}}}
	ref := func(res, container, divisor string) corev1.EnvVar {
		fs := &corev1.ResourceFieldSelector{Resource: res, ContainerName: container}
		if divisor != "" {
			fs.Divisor = resource.MustParse(divisor)
		}
		return corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: fs}}
	}
	for _, tt := range []struct {
		name string
		env  corev1.EnvVar
		in   int // the container whose env it is
		want string
	}{
		{"memory limit in bytes", ref("limits.memory", "", ""), 0, "2147483648"},
		{"memory limit in MiB", ref("limits.memory", "app", "1Mi"), 0, "2048"},
		{"cpu limit rounded up to cores", ref("limits.cpu", "", ""), 0, "1"},
		{"cpu limit in millicores", ref("limits.cpu", "", "1m"), 0, "500"},
		{"memory request", ref("requests.memory", "", "1Mi"), 0, "128"},
		{"cpu request not set: the limit", ref("requests.cpu", "", "1m"), 0, "500"},
		{"another container's limit", ref("limits.memory", "app", "1Gi"), 1, "2"},
		{"request of a container with none", ref("requests.memory", "", ""), 1, "0"},
	} {
		c := &pod.Spec.Containers[tt.in]
		c.Env = []corev1.EnvVar{tt.env}
		got, err := Env(t.Context(), pod, c, nil, nil)
		if err != nil || len(got) != 1 || got[0] != "X="+tt.want {
			t.Errorf("%s: %v, %v; want X=%s", tt.name, got, err, tt.want)
		}
	}
	// A limit not set would be the node's allocatable: refused, clearly.
	c := &pod.Spec.Containers[1]
	c.Env = []corev1.EnvVar{ref("limits.memory", "", "")}
	var ce *ConfigError
	if _, err := Env(t.Context(), pod, c, nil, nil); !errors.As(err, &ce) {
		t.Fatalf("an unset limit: %v, want a ConfigError", err)
	}
	c.Env = []corev1.EnvVar{ref("limits.memory", "nope", "")}
	if _, err := Env(t.Context(), pod, c, nil, nil); err == nil {
		t.Fatal("a container that does not exist was accepted")
	}
}
