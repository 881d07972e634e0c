package horizonagent

import (
	"bytes"
	"io"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/inject"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// The injector's init container runs `horizon-agent agent iptables` with these
// flags; --dry-run shows the rules it would install.
func TestAgentIptablesExcludePorts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		notWant []string
		err     string
	}{
		{name: "defaults", args: nil,
			want:    []string{"HORIZON_INBOUND -p tcp --dport 15021 -j RETURN", "HORIZON_INBOUND -p tcp --dport 15090 -j RETURN"},
			notWant: []string{"HORIZON_OUTPUT -p tcp --dport"}},
		{name: "comma-separated", args: []string{"--exclude-inbound-port", "15021,15090,8080", "--exclude-outbound-port", "5432,6379"},
			want: []string{"HORIZON_INBOUND -p tcp --dport 8080 -j RETURN", "HORIZON_INBOUND -p tcp --dport 15021 -j RETURN",
				"HORIZON_OUTPUT -p tcp --dport 5432 -j RETURN", "HORIZON_OUTPUT -p tcp --dport 6379 -j RETURN"}},
		{name: "repeated", args: []string{"--exclude-outbound-port", "5432", "--exclude-outbound-port", "3306"},
			want: []string{"HORIZON_OUTPUT -p tcp --dport 5432 -j RETURN", "HORIZON_OUTPUT -p tcp --dport 3306 -j RETURN"}},
		{name: "outbound out of range", args: []string{"--exclude-outbound-port", "70000"}, err: "--exclude-outbound-port 70000 out of range"},
		{name: "outbound zero", args: []string{"--exclude-outbound-port", "0"}, err: "--exclude-outbound-port 0 out of range"},
		{name: "outbound not a number", args: []string{"--exclude-outbound-port", "db"}, err: "exclude-outbound-port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			root := NewRootCommand(&out, &errb)
			root.SetArgs(append([]string{"agent", "iptables", "--dry-run", "--proxy-uid", "1337"}, tc.args...))
			err := root.Execute()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("missing %q in\n%s", w, out.String())
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("unexpected %q in\n%s", w, out.String())
				}
			}
		})
	}
}

// What the injector puts into a pod are real flags of these commands.
func TestInjectedArgsParse(t *testing.T) {
	cfg := inject.Defaults()
	cfg.ClusterID, cfg.Network = "cluster2", "network2"
	cfg.DiscoveryAddress, cfg.DiscoverySAN = "203.0.113.10:15443", "outbound_.15012_._.horizon.istio-system.svc.cluster.local"
	cfg.EnvoyPath = "/usr/local/bin/envoy"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sleep-", Namespace: "sample", Labels: map[string]string{"app": "sleep"},
			Annotations: map[string]string{inject.ExcludeInboundPortsAnn: "8080", inject.ExcludeOutboundPortsAnn: "5432"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sleep", Image: "curl"}}},
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sample", Labels: map[string]string{"istio-injection": "enabled"}}}
	patched, injected, reason, err := inject.Inject(pod, ns, cfg)
	if err != nil || !injected {
		t.Fatalf("not injected: %s %v", reason, err)
	}
	// The kubelet expands $(VAR) from the container's env.
	kubelet := strings.NewReplacer("$(POD_NAMESPACE)", "sample", "$(SERVICE_ACCOUNT)", "sleep", "$(INSTANCE_IP)", "10.0.0.7", "$(POD_NAME)", "sleep-x")
	for _, c := range append(patched.Spec.InitContainers, patched.Spec.Containers...) {
		switch c.Name {
		case inject.InitContainerName:
			var out bytes.Buffer
			root := NewRootCommand(&out, io.Discard)
			root.SetArgs(append(append([]string{}, c.Args...), "--dry-run"))
			if err := root.Execute(); err != nil {
				t.Fatalf("%v: %v", c.Args, err)
			}
			for _, want := range []string{"HORIZON_INBOUND -p tcp --dport 8080 -j RETURN", "HORIZON_INBOUND -p tcp --dport 15021 -j RETURN",
				"HORIZON_OUTPUT -p tcp --dport 5432 -j RETURN"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("missing %q in\n%s", want, out.String())
				}
			}
		case inject.ProxyContainerName:
			args := make([]string, len(c.Args))
			for i, a := range c.Args {
				args[i] = kubelet.Replace(a)
			}
			if args[0] != "agent" {
				t.Fatalf("args %v", args)
			}
			cmd := newAgentCommand(testkit.Logger())
			if err := cmd.ParseFlags(args[1:]); err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			for flag, want := range map[string]string{"cluster-id": "cluster2", "network": "network2", "namespace": "sample",
				"service-account": "sleep", "discovery-address": "203.0.113.10:15443", "discovery-san": cfg.DiscoverySAN,
				"root-cert": "/var/run/secrets/istio/root-cert.pem", "token-file": "/var/run/secrets/tokens/istio-token",
				"ip": "[10.0.0.7]", "work-dir": "/var/run/horizon", "envoy-path": "/usr/local/bin/envoy"} {
				if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
					t.Errorf("--%s = %q, want %q", flag, got, want)
				}
			}
			if got := cmd.Flags().Lookup("label").Value.String(); !strings.Contains(got, "app=sleep") || !strings.Contains(got, "security.istio.io/tlsMode=istio") {
				t.Errorf("--label %s", got)
			}
		}
	}
}
