package labnode

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Lookup reads the objects a pod refers to. NotFound errors are the API's
// (apierrors.IsNotFound).
type Lookup interface {
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
}

var (
	envFieldPaths = []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
		"metadata.labels['KEY']", "metadata.annotations", "metadata.annotations['KEY']",
		"spec.nodeName", "spec.serviceAccountName", "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs"}
	volumeFieldPaths = []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
		"metadata.labels['KEY']", "metadata.annotations", "metadata.annotations['KEY']"}
)

func fieldPathSupported(path string, volume bool) bool {
	_, err := FieldValue(&corev1.Pod{}, path)
	if err != nil {
		return false
	}
	if volume {
		return strings.HasPrefix(path, "metadata.")
	}
	return true
}

// FieldValue is the downward API's value of a pod field. The whole labels or
// annotations map is formatted as the kubelet does: key="value" lines,
// sorted.
func FieldValue(pod *corev1.Pod, path string) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		var ips []string
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		var ips []string
		for _, ip := range pod.Status.HostIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	}
	return "", fmt.Errorf("field path %q is not supported (supported: %s)", path, strings.Join(envFieldPaths, ", "))
}

// subscript parses prefix['key'].
func subscript(path, prefix string) (string, bool) {
	if !strings.HasPrefix(path, prefix+"['") || !strings.HasSuffix(path, "']") {
		return "", false
	}
	return path[len(prefix)+2 : len(path)-2], true
}

func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ConfigError is a container configuration that cannot be resolved yet (a
// missing ConfigMap, Secret or key): the container waits with reason
// CreateContainerConfigError and the lab node tries again.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// Env resolves container c's environment as the kubelet does: envFrom
// first, then env in order (later names override earlier ones), $(VAR) in
// values expanded against the variables defined before; base (the image's
// variables, e.g. PATH) comes first. pod.Status.PodIP must already be set.
// It returns NAME=VALUE pairs.
func Env(ctx context.Context, pod *corev1.Pod, c *corev1.Container, base []corev1.EnvVar, lookup Lookup) ([]string, error) {
	var order []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, e := range base {
		set(e.Name, e.Value)
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := lookup.ConfigMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if isOptional(from.ConfigMapRef.Optional) && isNotFound(err) {
					continue
				}
				return nil, configErr(err, "envFrom configmap %q", from.ConfigMapRef.Name)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := lookup.Secret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if isOptional(from.SecretRef.Optional) && isNotFound(err) {
					continue
				}
				return nil, configErr(err, "envFrom secret %q", from.SecretRef.Name)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, Expand(e.Value, vals))
			continue
		}
		v, ok, err := envFrom(ctx, pod, c, e, lookup)
		if err != nil {
			return nil, err
		}
		if ok {
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out, nil
}

func envFrom(ctx context.Context, pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, lookup Lookup) (string, bool, error) {
	src := e.ValueFrom
	switch {
	case src.ResourceFieldRef != nil:
		v, err := resourceFieldValue(pod, c, src.ResourceFieldRef)
		if err != nil {
			return "", false, &ConfigError{fmt.Sprintf("env %s: %v", e.Name, err)}
		}
		return v, true, nil
	case src.FieldRef != nil:
		v, err := FieldValue(pod, src.FieldRef.FieldPath)
		return v, err == nil, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := lookup.ConfigMap(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if isOptional(ref.Optional) && isNotFound(err) {
				return "", false, nil
			}
			return "", false, configErr(err, "env %s: configmap %q", e.Name, ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if b, bok := cm.BinaryData[ref.Key]; bok {
				return string(b), true, nil
			}
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, &ConfigError{fmt.Sprintf("env %s: key %q not found in configmap %q", e.Name, ref.Key, ref.Name)}
		}
		return v, true, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := lookup.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if isOptional(ref.Optional) && isNotFound(err) {
				return "", false, nil
			}
			return "", false, configErr(err, "env %s: secret %q", e.Name, ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, &ConfigError{fmt.Sprintf("env %s: key %q not found in secret %q", e.Name, ref.Key, ref.Name)}
		}
		return string(v), true, nil
	}
	return "", false, fmt.Errorf("env %s: this valueFrom is not supported by the lab node", e.Name)
}

func isOptional(b *bool) bool { return b != nil && *b }

func configErr(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if isNotFound(err) {
		return &ConfigError{msg + " not found"}
	}
	return &ConfigError{fmt.Sprintf("%s: %v", msg, err)}
}

// Expand replaces $(VAR) with vars[VAR] when defined (left as it is
// otherwise) and $$ with $, as the kubelet expands env values, command and
// args.
func Expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// EnvMap turns NAME=VALUE pairs into a map (for expanding command and args).
func EnvMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
