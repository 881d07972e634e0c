package labnode

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// resourceEnvNames are the resourceFieldRef resources env may name.
var resourceEnvNames = []string{"limits.cpu", "limits.memory", "requests.cpu", "requests.memory"}

// resourceFieldValue is the value of a resourceFieldRef as the kubelet
// computes it: the quantity of the named container (c when it names none)
// divided by the divisor (default 1), rounded up; CPU in cores unless the
// divisor says millicores. A request that is not set is the limit, else 0.
// A limit that is not set would be the node's allocatable: the lab node
// refuses it instead of making a number up.
func resourceFieldValue(pod *corev1.Pod, c *corev1.Container, fs *corev1.ResourceFieldSelector) (string, error) {
	if fs.ContainerName != "" && fs.ContainerName != c.Name {
		c = nil
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == fs.ContainerName {
				c = &pod.Spec.Containers[i]
			}
		}
		if c == nil {
			return "", fmt.Errorf("resourceFieldRef: no container %q", fs.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(fs.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") || (name != "cpu" && name != "memory") {
		return "", fmt.Errorf("resourceFieldRef %q is not supported by the lab node (supported: %s)", fs.Resource, strings.Join(resourceEnvNames, ", "))
	}
	rn := corev1.ResourceName(name)
	q, set := c.Resources.Limits[rn]
	if kind == "requests" {
		if r, ok := c.Resources.Requests[rn]; ok {
			q, set = r, true
		} else if !set {
			q, set = resource.Quantity{}, true
		}
	}
	if !set {
		return "", fmt.Errorf("resourceFieldRef %s: container %q sets no memory/cpu limit (the lab node does not substitute node allocatable)", fs.Resource, c.Name)
	}
	divisor := fs.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var v float64
	if name == "cpu" {
		v = math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue()))
	} else {
		v = math.Ceil(float64(q.Value()) / float64(divisor.Value()))
	}
	return strconv.FormatInt(int64(v), 10), nil
}
