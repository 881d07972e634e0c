package install

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// discoveryPorts renders s and returns discovery's Service ports, its
// container ports and its --xds-addr.
func discoveryPorts(t *testing.T, s Settings) (svc, container []int32, xdsAddr string) {
	t.Helper()
	objs, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			if o.Name == DiscoveryName {
				found++
				for _, p := range o.Spec.Ports {
					svc = append(svc, p.Port)
				}
			}
		case *appsv1.Deployment:
			if o.Name == DiscoveryName {
				found++
				c := o.Spec.Template.Spec.Containers[0]
				for _, p := range c.Ports {
					container = append(container, p.ContainerPort)
				}
				i := slices.Index(c.Args, "--xds-addr")
				if i < 0 || i+1 >= len(c.Args) {
					t.Fatalf("discovery's args lack --xds-addr: %v", c.Args)
				}
				xdsAddr = c.Args[i+1]
			}
		}
	}
	if found != 2 {
		t.Fatalf("rendered %d of discovery's Service and Deployment", found)
	}
	return svc, container, xdsAddr
}

// By default discovery serves xDS only on its authenticated TLS port
// 15012: the Service exposes no 15010 and discovery does not listen on it
// (a pod IP reaches no plaintext port either). plaintextXDS (--plaintext-xds)
// opens it, for trusted networks; a remote cluster, which runs no
// discovery, refuses the setting.
func TestOnlyTheAuthenticatedXDSPortByDefault(t *testing.T) {
	svc, container, addr := discoveryPorts(t, Defaults())
	if slices.Contains(svc, PortXDS) || slices.Contains(container, PortXDS) || addr != "" {
		t.Errorf("default install: Service ports %v, container ports %v, --xds-addr %q; want no %d and no plaintext listener", svc, container, addr, PortXDS)
	}
	if !slices.Contains(svc, PortSecure) || !slices.Contains(container, PortSecure) {
		t.Errorf("default install: Service ports %v, container ports %v; want %d", svc, container, PortSecure)
	}

	s := Defaults()
	s.PlaintextXDS = true
	svc, container, addr = discoveryPorts(t, s)
	if !slices.Contains(svc, PortXDS) || !slices.Contains(container, PortXDS) || addr != ":15010" || !slices.Contains(svc, PortSecure) {
		t.Errorf("plaintextXDS: Service ports %v, container ports %v, --xds-addr %q; want %d and %d", svc, container, addr, PortXDS, PortSecure)
	}
	v, err := LoadValues(Defaults(), "values.yaml", []byte("plaintextXDS: true\n"))
	if err != nil || !v.PlaintextXDS {
		t.Errorf("values plaintextXDS: %v, %v", v.PlaintextXDS, err)
	}

	r := Defaults()
	r.Remote, r.DiscoveryAddress, r.PlaintextXDS = true, "203.0.113.10:15443", true
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "plaintextXDS") {
		t.Errorf("remote with plaintextXDS: %v, want an error naming plaintextXDS", err)
	}
}
