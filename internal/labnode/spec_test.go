package labnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type fakeLookup struct {
	cms     map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
}

func (f *fakeLookup) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if cm, ok := f.cms[ns+"/"+name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f *fakeLookup) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

type fakeTokens struct{ calls []string }

func (f *fakeTokens) Token(_ context.Context, pod *corev1.Pod, aud string, ttl int64) (string, time.Time, error) {
	f.calls = append(f.calls, fmt.Sprintf("%s/%s aud=%s ttl=%d", pod.Namespace, pod.Spec.ServiceAccountName, aud, ttl))
	return "token-for-" + aud, time.Unix(1000+ttl, 0), nil
}

func lookup() *fakeLookup {
	return &fakeLookup{
		cms: map[string]*corev1.ConfigMap{"sample/cfg": {Data: map[string]string{"a": "1", "b": "2"},
			BinaryData: map[string][]byte{"bin": {0, 1}}}},
		secrets: map[string]*corev1.Secret{"sample/sec": {Data: map[string][]byte{"pw": []byte("s3cret")}}},
	}
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hw-1", Namespace: "sample", UID: "uid-1",
			Labels: map[string]string{"app": "helloworld", "version": "v1"}, Annotations: map[string]string{"note": "x"}},
		Spec: corev1.PodSpec{NodeName: "lab-node", ServiceAccountName: "sleep",
			Containers: []corev1.Container{{Name: "c", Image: "curlimages/curl"}}},
		Status: corev1.PodStatus{PodIP: "10.77.0.5", PodIPs: []corev1.PodIP{{IP: "10.77.0.5"}}, HostIP: "10.77.0.1"},
	}
}

func ptr[T any](v T) *T { return &v }

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func TestEnv(t *testing.T) {
	cmKey := func(name, cm, key string, opt bool) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Key: key, Optional: ptr(opt)}}}
	}
	secKey := func(name, s, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s}, Key: key}}}
	}
	for _, tc := range []struct {
		name    string
		c       corev1.Container
		want    []string
		wantErr string
	}{
		{name: "downward API", c: corev1.Container{Env: []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("INSTANCE_IP", "status.podIP"), fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
			fieldEnv("NODE", "spec.nodeName"), fieldEnv("APP", "metadata.labels['app']"), fieldEnv("LABELS", "metadata.labels"),
			fieldEnv("UID", "metadata.uid"), fieldEnv("HOST_IP", "status.hostIP"), fieldEnv("NOTE", "metadata.annotations['note']"),
		}}, want: []string{"PATH=/bin", "POD_NAME=hw-1", "POD_NAMESPACE=sample", "INSTANCE_IP=10.77.0.5", "SERVICE_ACCOUNT=sleep",
			"NODE=lab-node", "APP=helloworld", `LABELS=app="helloworld"` + "\n" + `version="v1"`, "UID=uid-1", "HOST_IP=10.77.0.1", "NOTE=x"}},
		{name: "expansion of earlier variables, $$ escapes, undefined kept", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "A", Value: "a"}, {Name: "B", Value: "$(A)-$(PATH)-$(C)-$$(A)"}, {Name: "C", Value: "c"},
		}}, want: []string{"PATH=/bin", "A=a", "B=a-/bin-$(C)-$(A)", "C=c"}},
		{name: "later names override, keeping first position", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "PATH", Value: "/x:$(PATH)"}, {Name: "A", Value: "1"}, {Name: "A", Value: "2"},
		}}, want: []string{"PATH=/x:/bin", "A=2"}},
		{name: "configMap and secret keys", c: corev1.Container{Env: []corev1.EnvVar{
			cmKey("A", "cfg", "a", false), cmKey("BIN", "cfg", "bin", false), secKey("PW", "sec", "pw"), cmKey("OPT", "missing", "x", true),
			cmKey("OPTKEY", "cfg", "nope", true),
		}}, want: []string{"PATH=/bin", "A=1", "BIN=\x00\x01", "PW=s3cret"}},
		{name: "envFrom with prefix, env overrides", c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}}},
			Env: []corev1.EnvVar{{Name: "CFG_a", Value: "over"}},
		}, want: []string{"PATH=/bin", "CFG_a=over", "CFG_b=2", "pw=s3cret"}},
		{name: "missing configmap", c: corev1.Container{Env: []corev1.EnvVar{cmKey("A", "nope", "a", false)}},
			wantErr: `env A: configmap "nope" not found`},
		{name: "missing key", c: corev1.Container{Env: []corev1.EnvVar{cmKey("A", "cfg", "zz", false)}},
			wantErr: `env A: key "zz" not found in configmap "cfg"`},
		{name: "missing secret", c: corev1.Container{Env: []corev1.EnvVar{secKey("A", "nope", "a")}},
			wantErr: `env A: secret "nope" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Env(context.Background(), testPod(), &tc.c, []corev1.EnvVar{{Name: "PATH", Value: "/bin"}}, lookup())
			if tc.wantErr != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Error() != tc.wantErr {
					t.Fatalf("error %v (%T), want ConfigError %q", err, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("env\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "x", "EMPTY": ""}
	for in, want := range map[string]string{
		"plain": "plain", "$(A)": "x", "$(A)$(A)": "xx", "$$(A)": "$(A)", "$(B)": "$(B)", "$(EMPTY)!": "!",
		"$": "$", "a$b": "a$b", "$(A": "$(A", "$$": "$", "--ns=$(A)/y": "--ns=x/y",
	} {
		if got := Expand(in, vars); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMapImage(t *testing.T) {
	progs := Programs{Discovery: "/bin/horizon-discovery", Agent: "/bin/horizon-agent", Helloworld: "/bin/helloworld", Envoy: "/bin/envoy"}
	u1337 := int64(1337)
	for _, tc := range []struct {
		name     string
		c        corev1.Container
		want     []string
		wantUID  *int64
		wantEnv  []corev1.EnvVar
		imageErr string
	}{
		{name: "discovery keeps command and args", c: corev1.Container{Image: "horizon/discovery:latest", Command: []string{"horizon-discovery"}, Args: []string{"discovery", "--x"}},
			want: []string{"/bin/horizon-discovery", "discovery", "--x"}, wantUID: &u1337},
		{name: "proxy by absolute command, registry and digest", c: corev1.Container{Image: "localhost:5000/horizon/proxy-debug@sha256:abc", Command: []string{"/usr/local/bin/horizon-agent", "agent"}},
			want: []string{"/bin/horizon-agent", "agent", "--envoy-path", "/bin/envoy"}, wantUID: &u1337},
		{name: "the agent's own --envoy-path wins", c: corev1.Container{Image: "horizon/proxy", Args: []string{"agent", "--router", "--envoy-path=/x/envoy"}},
			want: []string{"/bin/horizon-agent", "agent", "--router", "--envoy-path=/x/envoy"}, wantUID: &u1337},
		{name: "no Envoy for discovery", c: corev1.Container{Image: "horizon/discovery", Args: []string{"agent"}},
			want: []string{"/bin/horizon-discovery", "agent"}, wantUID: &u1337},
		{name: "the agent is not in the discovery image", c: corev1.Container{Image: "horizon/discovery", Command: []string{"horizon-agent"}},
			imageErr: `command "horizon-agent" is not in the image (it holds horizon-discovery)`},
		{name: "discovery is not in the proxy image", c: corev1.Container{Image: "horizon/proxy", Command: []string{"horizon-discovery"}},
			imageErr: `command "horizon-discovery" is not in the image (it holds horizon-agent, envoy)`},
		{name: "horizon image without command runs its entrypoint", c: corev1.Container{Image: "docker.io/horizon/proxy:1.0", Args: []string{"agent", "iptables"}},
			want: []string{"/bin/horizon-agent", "agent", "iptables"}, wantUID: &u1337},
		{name: "envoy in the proxy image", c: corev1.Container{Image: "horizon/proxy", Command: []string{"envoy", "-c", "x"}},
			want: []string{"/bin/envoy", "-c", "x"}, wantUID: &u1337},
		{name: "other command in a horizon image", c: corev1.Container{Image: "horizon/discovery", Command: []string{"bash"}},
			imageErr: `image "horizon/discovery": command "bash" is not in the image (it holds horizon-discovery)`},
		{name: "helloworld v1", c: corev1.Container{Image: "docker.io/istio/examples-helloworld-v1"},
			want: []string{"/bin/helloworld", "-addr", ":5000", "-version", "v1"}, wantEnv: []corev1.EnvVar{{Name: "SERVICE_VERSION", Value: "v1"}}},
		{name: "helloworld v2 with tag", c: corev1.Container{Image: "istio/examples-helloworld-v2:1.0"},
			want: []string{"/bin/helloworld", "-addr", ":5000", "-version", "v2"}, wantEnv: []corev1.EnvVar{{Name: "SERVICE_VERSION", Value: "v2"}}},
		{name: "helloworld with a command", c: corev1.Container{Image: "istio/examples-helloworld-v2", Command: []string{"python"}},
			imageErr: "command/args are not supported"},
		{name: "Istio's tcp-echo sample", c: corev1.Container{Image: "docker.io/istio/tcp-echo-server:1.3", Args: []string{"9000", "hello"}},
			want: []string{"/bin/helloworld", "tcp-echo", "-addr", ":9000", "-prefix", "hello"}},
		{name: "tcp-echo on several ports", c: corev1.Container{Image: "istio/tcp-echo-server:1.3", Args: []string{"9000,9001", "hello"}},
			imageErr: "serves one port"},
		{name: "tcp-echo without a prefix", c: corev1.Container{Image: "istio/tcp-echo-server:1.3", Args: []string{"9000"}},
			imageErr: "args [PORT, PREFIX]"},
		{name: "agnhost grpc-health-checking", c: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Args: []string{"grpc-health-checking", "--port=50051", "--http-port", "8080"}},
			want: []string{"/bin/helloworld", "grpc-health", "-addr", ":50051"}},
		{name: "agnhost grpc-health-checking, default port, by command", c: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Command: []string{"/agnhost", "grpc-health-checking"}},
			want: []string{"/bin/helloworld", "grpc-health", "-addr", ":5000"}},
		{name: "agnhost's other commands", c: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Args: []string{"netexec"}},
			imageErr: "only its grpc-health-checking command"},
		{name: "agnhost grpc-health-checking with a flag the lab lacks", c: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Args: []string{"grpc-health-checking", "--delay-unhealthy-sec=5"}},
			imageErr: "takes only --port"},
		{name: "curl image sleeps as told", c: corev1.Container{Image: "curlimages/curl", Command: []string{"/bin/sleep", "infinity"}},
			want: []string{"sleep", "infinity"}},
		{name: "curl-ssl sleep 3650d in args", c: corev1.Container{Image: "governmentpaas/curl-ssl", Command: []string{"/bin/sleep"}, Args: []string{"3650d"}},
			want: []string{"sleep", "3650d"}},
		{name: "any sleep image without command", c: corev1.Container{Image: "quay.io/someone/sleep:v1"},
			want: []string{"sleep", "infinity"}},
		{name: "curl image running something else", c: corev1.Container{Image: "curlimages/curl", Command: []string{"curl", "x"}},
			imageErr: `command "curl" is not supported`},
		{name: "unknown image", c: corev1.Container{Image: "nginx:1.25"},
			imageErr: `image "nginx:1.25": the lab node has no program for this image`},
		{name: "lookalike", c: corev1.Container{Image: "evil/horizon-proxy"}, imageErr: "no program for this image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MapImage(&tc.c, progs)
			if tc.imageErr != "" {
				var ie *ImageError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.imageErr) {
					t.Fatalf("error %v, want ImageError containing %q", err, tc.imageErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Argv, tc.want) || !reflect.DeepEqual(got.UID, tc.wantUID) || !reflect.DeepEqual(got.Env, tc.wantEnv) {
				t.Errorf("got %+v, want argv %q uid %v env %v", got, tc.want, tc.wantUID, tc.wantEnv)
			}
		})
	}
	if _, err := MapImage(&corev1.Container{Image: "horizon/proxy"}, Programs{}); err == nil {
		t.Error("no horizon-agent configured: want an error")
	}
	if _, err := MapImage(&corev1.Container{Image: "horizon/discovery"}, Programs{Agent: "/bin/horizon-agent"}); err == nil || !strings.Contains(err.Error(), "no horizon-discovery program") {
		t.Errorf("no horizon-discovery configured: %v, want an error naming it", err)
	}
}

func TestRepository(t *testing.T) {
	for in, want := range map[string]string{
		"nginx": "nginx", "nginx:1": "nginx", "docker.io/library/nginx:1": "nginx", "localhost:5000/a/b:c": "a/b",
		"a/b@sha256:00": "a/b", "gcr.io/x/y/z:t": "x/y/z", "localhost/x": "x",
	} {
		if got := Repository(in); got != want {
			t.Errorf("Repository(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckUnsupported: every field the lab node cannot honour is named in
// an error of its own.
func TestCheckUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		want   string
	}{
		{"hostNetwork", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "spec.hostNetwork: Forbidden"},
		{"hostPID", func(p *corev1.Pod) { p.Spec.HostPID = true }, "spec.hostPID: Forbidden"},
		{"hostIPC", func(p *corev1.Pod) { p.Spec.HostIPC = true }, "spec.hostIPC: Forbidden"},
		{"shareProcessNamespace", func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = ptr(true) }, "spec.shareProcessNamespace: Forbidden"},
		{"hostAliases", func(p *corev1.Pod) { p.Spec.HostAliases = []corev1.HostAlias{{IP: "1.2.3.4"}} }, "spec.hostAliases: Forbidden"},
		{"activeDeadlineSeconds", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr(int64(5)) }, "spec.activeDeadlineSeconds: Forbidden"},
		{"runtimeClassName", func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr("kata") }, "spec.runtimeClassName: Forbidden"},
		{"windows", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, `spec.os.name: Unsupported value: "windows"`},
		{"sysctls", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "a", Value: "b"}}}
		}, "spec.securityContext.sysctls: Forbidden"},
		{"hostPath volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}}}
		}, "spec.volumes[0].hostPath: Forbidden: hostPath volumes are not supported"},
		{"PVC volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}}
		}, `spec.volumes[0]: Unsupported value: "persistentVolumeClaim": supported values: "emptyDir", "configMap", "secret", "projected", "downwardAPI"`},
		{"NFS volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "s", Path: "/"}}}}
		}, `spec.volumes[0]: Unsupported value: "nfs"`},
		{"projected clusterTrustBundle", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Path: "x"}}}}}}}
		}, `spec.volumes[0].projected.sources[0]: Unsupported value: "clusterTrustBundle"`},
		{"downwardAPI resourceFieldRef", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "x", ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}}}}}}
		}, `spec.volumes[0].downwardAPI.items[0].resourceFieldRef: Unsupported value: "limits.cpu"`},
		{"downwardAPI status.podIP in a volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}}}}
		}, `spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: "status.podIP"`},
		{"privileged", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
		}, "spec.containers[0].securityContext.privileged: Forbidden"},
		{"runAsNonRoot as root", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsNonRoot: ptr(true)}
		}, "spec.containers[0].securityContext.runAsNonRoot: Forbidden"},
		{"hostPort", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
		}, "spec.containers[0].ports[0].hostPort: Forbidden"},
		{"hostIP", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostIP: "1.2.3.4"}}
		}, "spec.containers[0].ports[0].hostIP: Forbidden"},
		{"subPath", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "e", MountPath: "/x", SubPath: "s"}}
		}, "spec.containers[0].volumeMounts[0].subPath: Forbidden"},
		{"mountPropagation", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "e", MountPath: "/x", MountPropagation: ptr(corev1.MountPropagationBidirectional)}}
		}, "spec.containers[0].volumeMounts[0].mountPropagation: Forbidden"},
		{"mount of /", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "e", MountPath: "/"}}
		}, "spec.containers[0].volumeMounts[0].mountPath: Invalid value"},
		{"mount of an undefined volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "nope", MountPath: "/x"}}
		}, `spec.containers[0].volumeMounts[0].name: Not found: "nope"`},
		{"volumeDevices", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeDevices = []corev1.VolumeDevice{{Name: "d", DevicePath: "/dev/x"}}
		}, "spec.containers[0].volumeDevices: Forbidden"},
		{"preStop", func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}}}
		}, "spec.containers[0].lifecycle: Forbidden"},
		{"tty", func(p *corev1.Pod) { p.Spec.Containers[0].TTY = true }, "spec.containers[0].tty: Forbidden"},
		{"resourceFieldRef env of an unsupported resource", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.ephemeral-storage"}}}}
		}, `spec.containers[0].env[0].valueFrom.resourceFieldRef: Unsupported value: "limits.ephemeral-storage"`},
		{"unknown fieldRef", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{fieldEnv("X", "spec.schedulerName")}
		}, `spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.schedulerName"`},
		{"grpc probe", func(p *corev1.Pod) {
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9}}}
		}, `spec.containers[0].readinessProbe.grpc: Unsupported value: "grpc"`},
		{"probe on an unknown port name", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}}
		}, `spec.containers[0].livenessProbe: Invalid value: "": port "http" is not a port name of container c`},
		{"sidecar init container", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Image: "horizon/proxy", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways)}}
		}, "spec.initContainers[0].restartPolicy: Forbidden"},
		{"init container privileged", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Image: "horizon/proxy", SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)}}}
		}, "spec.initContainers[0].securityContext.privileged: Forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			tc.mutate(pod)
			errs := Check(pod)
			if len(errs) != 1 {
				t.Fatalf("want exactly one error containing %q, got %d: %v", tc.want, len(errs), errs)
			}
			if !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("error %q does not contain %q", errs[0].Error(), tc.want)
			}
		})
	}
}

// TestCheckAccepts: what the install manifests, injected pods and the
// walkthrough use passes.
func TestCheckAccepts(t *testing.T) {
	pod := testPod()
	root, uid := int64(0), int64(1337)
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: &uid}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "tok", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", Path: "istio-token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}},
		}}}},
		{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "dapi", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
	}
	pod.Spec.InitContainers = []corev1.Container{{Name: "horizon-init", Image: "horizon/proxy", Command: []string{"horizon-agent"}, Args: []string{"agent", "iptables"},
		SecurityContext: &corev1.SecurityContext{RunAsUser: &root, RunAsNonRoot: ptr(false), Privileged: ptr(false), AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}}}}}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "horizon/proxy",
		Env:   []corev1.EnvVar{fieldEnv("POD_NAME", "metadata.name"), fieldEnv("INSTANCE_IP", "status.podIP")},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 15021}},
		VolumeMounts: []corev1.VolumeMount{{Name: "tok", MountPath: "/var/run/secrets/tokens", ReadOnly: true}, {Name: "work", MountPath: "/var/run/horizon"},
			{Name: "cm", MountPath: "/etc/cfg"}, {Name: "sec", MountPath: "/etc/sec"}, {Name: "dapi", MountPath: "/etc/podinfo"}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
		LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(15021)}}},
		SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: ptr(true), ReadOnlyRootFilesystem: ptr(true),
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
	})
	// horizon images run as 1337 by default: runAsNonRoot holds without runAsUser.
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "discovery", Image: "horizon/discovery:latest",
		SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr(true)}})
	if errs := Check(pod); len(errs) > 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
}

func TestBuildVolume(t *testing.T) {
	pod := testPod()
	mode := func(m int32) *int32 { return &m }
	for _, tc := range []struct {
		name    string
		vol     corev1.VolumeSource
		want    []File
		empty   bool
		expires time.Time
		tokens  []string
		wantErr string
	}{
		{name: "emptyDir", vol: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}, empty: true},
		{name: "configMap all keys", vol: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			want: []File{{"a", []byte("1"), 0o644}, {"b", []byte("2"), 0o644}, {"bin", []byte{0, 1}, 0o644}}},
		{name: "configMap items and modes", vol: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
			DefaultMode: mode(0o600), Items: []corev1.KeyToPath{{Key: "b", Path: "dir/b.txt"}, {Key: "a", Path: "a", Mode: mode(0o400)}}}},
			want: []File{{"dir/b.txt", []byte("2"), 0o600}, {"a", []byte("1"), 0o400}}},
		{name: "optional missing configMap is empty", vol: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr(true)}}},
		{name: "missing configMap", vol: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}},
			wantErr: `volume "v": configmap "nope" not found`},
		{name: "missing key", vol: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "zz", Path: "zz"}}}},
			wantErr: `volume "v": key "zz" not found in configmap "cfg"`},
		{name: "secret", vol: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}},
			want: []File{{"pw", []byte("s3cret"), 0o644}}},
		{name: "missing secret", vol: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "nope"}}, wantErr: `secret "nope" not found`},
		{name: "downwardAPI", vol: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "ns", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			want: []File{{"labels", []byte("app=\"helloworld\"\nversion=\"v1\""), 0o644}, {"ns", []byte("sample"), 0o644}}},
		{name: "projected token, configMap, downwardAPI", vol: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: mode(0o640), Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: ptr(int64(43200)), Path: "istio-token"}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "api-token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "a", Path: "ca.crt"}}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
		}}},
			want: []File{{"istio-token", []byte("token-for-istio-ca"), 0o640}, {"api-token", []byte("token-for-"), 0o640},
				{"ca.crt", []byte("1"), 0o640}, {"pw", []byte("s3cret"), 0o640}, {"name", []byte("hw-1"), 0o640}},
			expires: time.Unix(1000+3600, 0),
			tokens:  []string{"sample/sleep aud=istio-ca ttl=43200", "sample/sleep aud= ttl=3600"}},
		{name: "path escaping the volume", vol: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
			Items: []corev1.KeyToPath{{Key: "a", Path: "../a"}}}}, wantErr: "must be relative"},
		{name: "hostPath", vol: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}, wantErr: "volume type hostPath is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks := &fakeTokens{}
			v, err := BuildVolume(context.Background(), pod, &corev1.Volume{Name: "v", VolumeSource: tc.vol}, lookup(), toks)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.EmptyDir != tc.empty || !reflect.DeepEqual(v.Files, tc.want) || !v.Expires.Equal(tc.expires) || !reflect.DeepEqual(toks.calls, tc.tokens) {
				t.Errorf("got %+v (token calls %q), want files %+v empty %v expires %v tokens %q", v, toks.calls, tc.want, tc.empty, tc.expires, tc.tokens)
			}
		})
	}
}

func TestVolumeWrite(t *testing.T) {
	dir := t.TempDir()
	v := &Volume{Files: []File{{"a", []byte("1"), 0o600}, {"d/b", []byte("2"), 0o644}}}
	if err := v.Write(dir+"/v", nil); err != nil {
		t.Fatal(err)
	}
	// A refresh replaces contents and drops files that went away.
	v.Files = []File{{"a", []byte("new"), 0o600}}
	if err := v.Write(dir+"/v", nil); err != nil {
		t.Fatal(err)
	}
	b, err := readFile(dir + "/v/a")
	if err != nil || string(b) != "new" {
		t.Errorf("a = %q, %v", b, err)
	}
	if _, err := readFile(dir + "/v/d/b"); err == nil {
		t.Error("d/b should be gone after the refresh")
	}
	if fi, err := statMode(dir + "/v/a"); err != nil || fi != 0o600 {
		t.Errorf("mode of a = %v, %v", fi, err)
	}
	e := &Volume{EmptyDir: true}
	if err := e.Write(dir+"/e", nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := statMode(dir + "/e"); err != nil || fi != 0o777 {
		t.Errorf("emptyDir mode = %v, %v", fi, err)
	}
}

func TestPlanProbe(t *testing.T) {
	c := &corev1.Container{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 5000}}}
	for _, tc := range []struct {
		name    string
		probe   corev1.Probe
		want    ProbePlan
		url     string
		wantErr string
	}{
		{name: "httpGet defaults, named port", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}},
			want: ProbePlan{Kind: ProbeHTTP, Host: "10.77.0.5", Port: 5000, Scheme: "HTTP", Path: "/", Period: 10 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3},
			url:  "http://10.77.0.5:5000/"},
		{name: "httpGet everything set", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "hello", Port: intstr.FromInt32(8443),
			Host: "127.0.0.1", Scheme: corev1.URISchemeHTTPS, HTTPHeaders: []corev1.HTTPHeader{{Name: "X-A", Value: "b"}}}},
			InitialDelaySeconds: 2, PeriodSeconds: 1, TimeoutSeconds: 3, SuccessThreshold: 2, FailureThreshold: 5},
			want: ProbePlan{Kind: ProbeHTTP, Host: "127.0.0.1", Port: 8443, Scheme: "HTTPS", Path: "hello", Headers: map[string][]string{"X-A": {"b"}},
				InitialDelay: 2 * time.Second, Period: time.Second, Timeout: 3 * time.Second, SuccessThreshold: 2, FailureThreshold: 5},
			url: "https://127.0.0.1:8443/hello"},
		{name: "tcpSocket", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(15014)}}},
			want: ProbePlan{Kind: ProbeTCP, Host: "10.77.0.5", Port: 15014, Period: 10 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3}},
		{name: "exec", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/x"}}}},
			want: ProbePlan{Kind: ProbeExec, Host: "10.77.0.5", Command: []string{"cat", "/x"}, Period: 10 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3}},
		{name: "unknown port name", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("grpc")}}},
			wantErr: `port "grpc" is not a port name of container c`},
		{name: "port out of range", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(70000)}}},
			wantErr: "out of range"},
		{name: "grpc", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 1}}}, wantErr: "grpc probes are not supported"},
		{name: "no handler", probe: corev1.Probe{}, wantErr: "probe without a handler"},
		{name: "empty exec", probe: corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{}}}, wantErr: "exec probe without a command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanProbe(&tc.probe, c, "10.77.0.5")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got %+v\nwant %+v", *got, tc.want)
			}
			if tc.url != "" && got.URL() != tc.url {
				t.Errorf("URL %s, want %s", got.URL(), tc.url)
			}
		})
	}
}

func TestPlanContainer(t *testing.T) {
	pod := testPod()
	uid, gid, fs := int64(1337), int64(1338), int64(2000)
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: &fs, SupplementalGroups: []int64{3000}}
	c := corev1.Container{Name: "istio-proxy", Image: "horizon/proxy", Command: []string{"horizon-agent"},
		Args:         []string{"agent", "--namespace", "$(POD_NAMESPACE)", "--ip", "$(INSTANCE_IP)", "--label", "a=$$x"},
		Env:          []corev1.EnvVar{fieldEnv("POD_NAMESPACE", "metadata.namespace"), fieldEnv("INSTANCE_IP", "status.podIP")},
		VolumeMounts: []corev1.VolumeMount{{Name: "tok", MountPath: "/var/run/secrets/tokens", ReadOnly: true}},
		WorkingDir:   "/w",
		SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &gid,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(15021)}}},
	}
	p, err := PlanContainer(context.Background(), pod, &c, Programs{Agent: "/opt/horizon-agent"}, lookup(), func(v string) string { return "/state/vol/" + v }, "")
	if err != nil {
		t.Fatal(err)
	}
	want := &ContainerPlan{Name: "istio-proxy", Program: p.Program,
		Env:  []string{"PATH=" + DefaultPath, "HOSTNAME=hw-1", "HOME=/", "POD_NAMESPACE=sample", "INSTANCE_IP=10.77.0.5"},
		Argv: []string{"/opt/horizon-agent", "agent", "--namespace", "sample", "--ip", "10.77.0.5", "--label", "a=$x"},
		UID:  1337, GID: 1338, Groups: []int64{3000, 2000}, Caps: []string{"NET_BIND_SERVICE"},
		Mounts:    []Mount{{Source: "/state/vol/tok", Target: "/var/run/secrets/tokens", ReadOnly: true}},
		WorkDir:   "/w",
		Readiness: p.Readiness}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	if p.Readiness == nil || p.Readiness.Addr() != "10.77.0.5:15021" {
		t.Errorf("readiness %+v", p.Readiness)
	}
	// The capture init container: root, with its capabilities as root's.
	root := int64(0)
	initC := corev1.Container{Name: "horizon-init", Image: "horizon/proxy", Command: []string{"horizon-agent"}, Args: []string{"agent", "iptables"},
		SecurityContext: &corev1.SecurityContext{RunAsUser: &root, Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}}}}
	pod.Spec.SecurityContext = nil
	p, err = PlanContainer(context.Background(), pod, &initC, Programs{Agent: "/opt/horizon-agent"}, lookup(), nil, "/p")
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != 0 || p.GID != 0 || p.Caps != nil || p.Env[2] != "HOME=/root" || p.Env[0] != "PATH=/p" {
		t.Errorf("init container plan %+v", p)
	}
	// The sleep images find the lab's clients first on their PATH; other
	// images do not.
	progs := Programs{Agent: "/opt/horizon-agent", ClientDir: "/state/clients"}
	sleep := corev1.Container{Name: "sleep", Image: "curlimages/curl", Command: []string{"/bin/sleep", "infinity"}}
	if p, err = PlanContainer(context.Background(), pod, &sleep, progs, lookup(), nil, "/p"); err != nil || p.Env[0] != "PATH=/state/clients:/p" {
		t.Errorf("sleep's plan: %v %+v, want PATH=/state/clients:/p", err, p)
	}
	if p, err = PlanContainer(context.Background(), pod, &initC, progs, lookup(), nil, "/p"); err != nil || p.Env[0] != "PATH=/p" {
		t.Errorf("the init container's plan: %v %+v, want PATH=/p", err, p)
	}
	// An image without a program is an ImageError; a missing ConfigMap a ConfigError.
	if _, err := PlanContainer(context.Background(), pod, &corev1.Container{Image: "nginx"}, Programs{}, lookup(), nil, ""); !isImageError(err) {
		t.Errorf("nginx: %v, want an ImageError", err)
	}
	bad := corev1.Container{Image: "curlimages/curl", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Key: "k"}}}}}
	var ce *ConfigError
	if _, err := PlanContainer(context.Background(), pod, &bad, Programs{}, lookup(), nil, ""); !errors.As(err, &ce) {
		t.Errorf("missing configmap: %v, want a ConfigError", err)
	}
}

func isImageError(err error) bool {
	var ie *ImageError
	return errors.As(err, &ie)
}

func TestLaunchCommand(t *testing.T) {
	l := &Launch{Netns: "hzln-p1", Hostname: "hw-1", Shadows: []string{"/run"}, Scratch: "/state/p/scratch/c",
		Mounts:  []Mount{{Source: "/state/p/vol/tok", Target: "/var/run/secrets/tokens", ReadOnly: true}, {Source: "/state/p/vol/work", Target: "/var/run"}},
		WorkDir: "/w", UID: 1337, GID: 1337, Groups: []int64{5}, Caps: []string{"NET_BIND_SERVICE"},
		Argv: []string{"/bin/horizon", "agent", "$(X); rm -rf /"}}
	got := l.Command()
	wantScript := `hostname "${1}"
mkdir -p "${2}" && mount -t tmpfs -o mode=0755 lab-scratch "${2}" && mkdir "${2}"/u "${2}"/w
mount -t overlay lab-overlay -o "lowerdir=""${3}"",upperdir=""${2}""/u,workdir=""${2}""/w" "${3}"
mkdir -p "${4}" && mount --bind "${5}" "${4}"
mkdir -p "${6}" && mount --bind "${7}" "${6}"
mount -o remount,bind,ro "${8}"
cd "${9}"
shift 9
exec "$@"`
	want := []string{"ip", "netns", "exec", "hzln-p1", "sh", "-ec", wantScript, "sh",
		"hw-1", "/state/p/scratch/c/0", "/run", "/var/run", "/state/p/vol/work", "/var/run/secrets/tokens", "/state/p/vol/tok", "/var/run/secrets/tokens", "/w",
		"setpriv", "--reuid", "1337", "--regid", "1337", "--groups", "5", "--inh-caps", "+net_bind_service", "--ambient-caps", "+net_bind_service", "--",
		"/bin/horizon", "agent", "$(X); rm -rf /"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("command\n got %q\nwant %q", got, want)
	}
	// Root without mounts: no setpriv, only the exec.
	r := (&Launch{Netns: "n", Argv: []string{"sleep", "infinity"}}).Command()
	if want := []string{"ip", "netns", "exec", "n", "sh", "-ec", "shift 0\nexec \"$@\"", "sh", "sleep", "infinity"}; !reflect.DeepEqual(r, want) {
		t.Errorf("root command %q, want %q", r, want)
	}
}

func TestShadows(t *testing.T) {
	existing := map[string]bool{"/": true, "/run": true, "/var": true, "/var/run": true, "/etc": true, "/etc/ssl": true, "/opt": true}
	exists := func(p string) bool { return existing[p] }
	for _, tc := range []struct {
		targets []string
		want    []string
		wantErr string
	}{
		{targets: []string{"/etc/ssl", "/run"}},
		{targets: []string{"/var/run/secrets/tokens", "/var/run/secrets/istio", "/var/run/horizon"}, want: []string{"/var/run"}},
		{targets: []string{"/etc/istio/proxy", "/var/run/x"}, want: []string{"/etc", "/var/run"}},
		{targets: []string{"/etc/ssl/a/b", "/etc/c"}, want: []string{"/etc"}},
		{targets: []string{"/opt/app", "/opt/app/sub/dir"}, want: []string{"/opt"}},
		{targets: []string{"/data"}, wantErr: "mountPath /data: no parent directory"},
	} {
		got, err := Shadows(tc.targets, exists)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.targets, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Shadows(%q) = %q, %v; want %q", tc.targets, got, err, tc.want)
		}
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

func statMode(p string) (os.FileMode, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Perm(), nil
}

// The API server rejects a status write that changes status.qosClass (set
// at creation): the lab node keeps the pod's.
func TestStatusKeepsQOSClass(t *testing.T) {
	n := &Node{net: &Network{Prefix: "hzln"}, cfg: Config{StateDir: t.TempDir()}, pods: map[string]*podRun{}}
	for _, qos := range []corev1.PodQOSClass{corev1.PodQOSBurstable, corev1.PodQOSGuaranteed, corev1.PodQOSBestEffort} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "horizon/discovery"}}},
			Status: corev1.PodStatus{QOSClass: qos}}
		if got := n.newPodRun(pod).snapshot().Status.QOSClass; got != qos {
			t.Errorf("qosClass %s, want the pod's %s", got, qos)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}}
	if got := n.newPodRun(pod).snapshot().Status.QOSClass; got != corev1.PodQOSBestEffort {
		t.Errorf("no qosClass on the pod: %s, want BestEffort", got)
	}
}
