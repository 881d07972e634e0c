package labnode

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

// DefaultPath is containers' PATH unless the node's configuration gives one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ContainerPlan is everything about starting one container that follows
// from the pod spec (and the objects it refers to): the program, its
// environment and arguments with $(VAR) expanded, its user, mounts and
// probes.
type ContainerPlan struct {
	Name    string
	Program Program
	Env     []string
	Argv    []string
	UID     int64
	GID     int64
	Groups  []int64
	Caps    []string
	Mounts  []Mount
	WorkDir string

	Readiness, Liveness, Startup *ProbePlan
}

// PlanContainer translates container c of pod (whose Status.PodIP is set).
// volumeDir says where each volume's directory is on this machine; pathEnv
// is the PATH containers get. Errors: *ImageError (no program for the
// image), *ConfigError (a missing ConfigMap/Secret/key: try again later),
// others (the spec cannot run here).
func PlanContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, progs Programs, lookup Lookup, volumeDir func(string) string, pathEnv string) (*ContainerPlan, error) {
	prog, err := MapImage(c, progs)
	if err != nil {
		return nil, err
	}
	if pathEnv == "" {
		pathEnv = DefaultPath
	}
	if prog.Image == "sleep" && progs.ClientDir != "" {
		pathEnv = progs.ClientDir + ":" + pathEnv
	}
	uid := *runAsUser(pod, c, prog.UID)
	home := "/"
	if uid == 0 {
		home = "/root"
	}
	base := append([]corev1.EnvVar{{Name: "PATH", Value: pathEnv}, {Name: "HOSTNAME", Value: pod.Name}, {Name: "HOME", Value: home}}, prog.Env...)
	env, err := Env(ctx, pod, c, base, lookup)
	if err != nil {
		return nil, err
	}
	vars := EnvMap(env)
	p := &ContainerPlan{Name: c.Name, Program: prog, Env: env, UID: uid, GID: uid, WorkDir: c.WorkingDir}
	p.Argv = make([]string, len(prog.Argv))
	for i, a := range prog.Argv {
		if i == 0 {
			p.Argv[i] = a
		} else {
			p.Argv[i] = Expand(a, vars)
		}
	}
	if g := runAsGroup(pod, c); g != nil {
		p.GID = *g
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		p.Groups = append(p.Groups, sc.SupplementalGroups...)
		if sc.FSGroup != nil {
			p.Groups = append(p.Groups, *sc.FSGroup)
		}
	}
	if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil && uid != 0 {
		for _, cp := range sc.Capabilities.Add {
			p.Caps = append(p.Caps, string(cp))
		}
	}
	for _, m := range c.VolumeMounts {
		p.Mounts = append(p.Mounts, Mount{Source: volumeDir(m.Name), Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	for _, pr := range []struct {
		probe *corev1.Probe
		dst   **ProbePlan
	}{{c.ReadinessProbe, &p.Readiness}, {c.LivenessProbe, &p.Liveness}, {c.StartupProbe, &p.Startup}} {
		if pr.probe == nil {
			continue
		}
		if *pr.dst, err = PlanProbe(pr.probe, c, pod.Status.PodIP); err != nil {
			return nil, err
		}
	}
	return p, nil
}
