package labnode

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Check returns an error for every pod-spec field the lab node cannot honour
// (rather than silently ignoring it). Fields it accepts without enforcing —
// resources, seccomp/AppArmor/SELinux profiles, readOnlyRootFilesystem,
// allowPrivilegeEscalation, scheduling fields, dnsPolicy (pods use the
// host's resolver) — are documented in doc.go.
func Check(pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	s := &pod.Spec
	if s.HostNetwork {
		errs = append(errs, field.Forbidden(spec.Child("hostNetwork"), "not supported by the lab node: every pod gets its own network namespace"))
	}
	if s.HostPID {
		errs = append(errs, field.Forbidden(spec.Child("hostPID"), "not supported by the lab node"))
	}
	if s.HostIPC {
		errs = append(errs, field.Forbidden(spec.Child("hostIPC"), "not supported by the lab node"))
	}
	if s.ShareProcessNamespace != nil && *s.ShareProcessNamespace {
		errs = append(errs, field.Forbidden(spec.Child("shareProcessNamespace"), "not supported by the lab node"))
	}
	if len(s.HostAliases) > 0 {
		errs = append(errs, field.Forbidden(spec.Child("hostAliases"), "not supported by the lab node"))
	}
	if s.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(spec.Child("activeDeadlineSeconds"), "not supported by the lab node"))
	}
	if s.RuntimeClassName != nil && *s.RuntimeClassName != "" {
		errs = append(errs, field.Forbidden(spec.Child("runtimeClassName"), "not supported by the lab node"))
	}
	if s.OS != nil && s.OS.Name != corev1.Linux {
		errs = append(errs, field.NotSupported(spec.Child("os", "name"), s.OS.Name, []string{string(corev1.Linux)}))
	}
	if len(s.ResourceClaims) > 0 {
		errs = append(errs, field.Forbidden(spec.Child("resourceClaims"), "not supported by the lab node"))
	}
	if sc := s.SecurityContext; sc != nil && len(sc.Sysctls) > 0 {
		errs = append(errs, field.Forbidden(spec.Child("securityContext", "sysctls"), "not supported by the lab node"))
	}
	if len(s.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(spec.Child("ephemeralContainers"), "not supported by the lab node"))
	}
	vols := map[string]bool{}
	for i := range s.Volumes {
		vols[s.Volumes[i].Name] = true
		errs = append(errs, checkVolume(&s.Volumes[i], spec.Child("volumes").Index(i))...)
	}
	for i := range s.InitContainers {
		c := &s.InitContainers[i]
		p := spec.Child("initContainers").Index(i)
		if c.RestartPolicy != nil {
			errs = append(errs, field.Forbidden(p.Child("restartPolicy"), "sidecar init containers are not supported by the lab node"))
		}
		errs = append(errs, checkContainer(pod, c, p, vols)...)
	}
	for i := range s.Containers {
		errs = append(errs, checkContainer(pod, &s.Containers[i], spec.Child("containers").Index(i), vols)...)
	}
	return errs
}

var supportedVolumes = []string{"emptyDir", "configMap", "secret", "projected", "downwardAPI"}

func checkVolume(v *corev1.Volume, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	src := &v.VolumeSource
	switch {
	case src.EmptyDir != nil, src.ConfigMap != nil, src.Secret != nil:
	case src.DownwardAPI != nil:
		for j, it := range src.DownwardAPI.Items {
			errs = append(errs, checkDownwardItem(it, p.Child("downwardAPI", "items").Index(j))...)
		}
	case src.Projected != nil:
		for j, ps := range src.Projected.Sources {
			sp := p.Child("projected", "sources").Index(j)
			switch {
			case ps.ServiceAccountToken != nil, ps.ConfigMap != nil, ps.Secret != nil:
			case ps.DownwardAPI != nil:
				for k, it := range ps.DownwardAPI.Items {
					errs = append(errs, checkDownwardItem(it, sp.Child("downwardAPI", "items").Index(k))...)
				}
			default:
				errs = append(errs, field.NotSupported(sp, volumeKind(&ps), []string{"serviceAccountToken", "configMap", "secret", "downwardAPI"}))
			}
		}
	case src.HostPath != nil:
		errs = append(errs, field.Forbidden(p.Child("hostPath"), "hostPath volumes are not supported by the lab node"))
	default:
		errs = append(errs, field.NotSupported(p, volumeKind(src), supportedVolumes))
	}
	return errs
}

// volumeKind names the source set in a VolumeSource or VolumeProjection
// (the JSON name of its first non-nil pointer field).
func volumeKind(src any) string {
	b, _ := jsonMarshal(src)
	s := string(b)
	if i := strings.Index(s, `"`); i >= 0 {
		s = s[i+1:]
		if j := strings.Index(s, `"`); j >= 0 {
			return s[:j]
		}
	}
	return "unknown volume type"
}

func checkDownwardItem(it corev1.DownwardAPIVolumeFile, p *field.Path) field.ErrorList {
	if it.ResourceFieldRef != nil {
		return field.ErrorList{field.NotSupported(p.Child("resourceFieldRef"), it.ResourceFieldRef.Resource, []string{})}
	}
	if it.FieldRef != nil && !fieldPathSupported(it.FieldRef.FieldPath, true) {
		return field.ErrorList{field.NotSupported(p.Child("fieldRef", "fieldPath"), it.FieldRef.FieldPath, volumeFieldPaths)}
	}
	return nil
}

func checkContainer(pod *corev1.Pod, c *corev1.Container, p *field.Path, vols map[string]bool) field.ErrorList {
	var errs field.ErrorList
	if sc := c.SecurityContext; sc != nil {
		if sc.Privileged != nil && *sc.Privileged {
			errs = append(errs, field.Forbidden(p.Child("securityContext", "privileged"), "privileged containers are not supported by the lab node"))
		}
		if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
			errs = append(errs, field.Forbidden(p.Child("securityContext", "procMount"), "not supported by the lab node"))
		}
	}
	if uid := runAsUser(pod, c, imageUID(c.Image)); uid != nil && *uid == 0 && runAsNonRoot(pod, c) {
		errs = append(errs, field.Forbidden(p.Child("securityContext", "runAsNonRoot"), "runAsNonRoot is set and the container would run as root (set runAsUser)"))
	}
	for j, port := range c.Ports {
		if port.HostPort != 0 {
			errs = append(errs, field.Forbidden(p.Child("ports").Index(j).Child("hostPort"), "host ports are not supported by the lab node"))
		}
		if port.HostIP != "" {
			errs = append(errs, field.Forbidden(p.Child("ports").Index(j).Child("hostIP"), "not supported by the lab node"))
		}
	}
	for j, m := range c.VolumeMounts {
		mp := p.Child("volumeMounts").Index(j)
		if m.SubPath != "" {
			errs = append(errs, field.Forbidden(mp.Child("subPath"), "not supported by the lab node"))
		}
		if m.SubPathExpr != "" {
			errs = append(errs, field.Forbidden(mp.Child("subPathExpr"), "not supported by the lab node"))
		}
		if m.MountPropagation != nil && *m.MountPropagation != corev1.MountPropagationNone {
			errs = append(errs, field.Forbidden(mp.Child("mountPropagation"), "not supported by the lab node"))
		}
		if !strings.HasPrefix(m.MountPath, "/") || strings.ContainsAny(m.MountPath, ",:\n") || m.MountPath == "/" {
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "the lab node needs an absolute path other than / without ',' or ':'"))
		}
		if !vols[m.Name] {
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
	}
	if len(c.VolumeDevices) > 0 {
		errs = append(errs, field.Forbidden(p.Child("volumeDevices"), "not supported by the lab node"))
	}
	if c.Lifecycle != nil && (c.Lifecycle.PostStart != nil || c.Lifecycle.PreStop != nil) {
		errs = append(errs, field.Forbidden(p.Child("lifecycle"), "lifecycle hooks are not supported by the lab node"))
	}
	if c.TTY {
		errs = append(errs, field.Forbidden(p.Child("tty"), "not supported by the lab node"))
	}
	for j, e := range c.Env {
		ep := p.Child("env").Index(j).Child("valueFrom")
		if e.ValueFrom == nil {
			continue
		}
		switch {
		case e.ValueFrom.FieldRef != nil:
			if !fieldPathSupported(e.ValueFrom.FieldRef.FieldPath, false) {
				errs = append(errs, field.NotSupported(ep.Child("fieldRef", "fieldPath"), e.ValueFrom.FieldRef.FieldPath, envFieldPaths))
			}
		case e.ValueFrom.ConfigMapKeyRef != nil, e.ValueFrom.SecretKeyRef != nil:
		case e.ValueFrom.ResourceFieldRef != nil:
			if !slices.Contains(resourceEnvNames, e.ValueFrom.ResourceFieldRef.Resource) {
				errs = append(errs, field.NotSupported(ep.Child("resourceFieldRef"), e.ValueFrom.ResourceFieldRef.Resource, resourceEnvNames))
			}
		default:
			errs = append(errs, field.Forbidden(ep, "not supported by the lab node"))
		}
	}
	for _, np := range []struct {
		name string
		pr   *corev1.Probe
	}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}, {"startupProbe", c.StartupProbe}} {
		name, pr := np.name, np.pr
		if pr == nil {
			continue
		}
		if pr.GRPC != nil {
			errs = append(errs, field.NotSupported(p.Child(name, "grpc"), "grpc", []string{"httpGet", "tcpSocket", "exec"}))
		}
		if _, err := PlanProbe(pr, c, ""); err != nil && pr.GRPC == nil {
			errs = append(errs, field.Invalid(p.Child(name), "", err.Error()))
		}
	}
	return errs
}

func runAsNonRoot(pod *corev1.Pod, c *corev1.Container) bool {
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		return *c.SecurityContext.RunAsNonRoot
	}
	return pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsNonRoot != nil && *pod.Spec.SecurityContext.RunAsNonRoot
}

// runAsUser is the container's user: its own, the pod's, the image's
// (imageUID), else root.
func runAsUser(pod *corev1.Pod, c *corev1.Container, imageUID *int64) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsUser != nil {
		return pod.Spec.SecurityContext.RunAsUser
	}
	if imageUID != nil {
		return imageUID
	}
	zero := int64(0)
	return &zero
}

func runAsGroup(pod *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsGroup != nil {
		return c.SecurityContext.RunAsGroup
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsGroup
	}
	return nil
}
