package install

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
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

func findService(objs []runtime.Object, name string) *corev1.Service {
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok && s.Name == name {
			return s
		}
	}
	return nil
}

// istiodService (--istiod-service) adds Service istiod with the ports of
// Istio's istiod Service (the pinned chart's names: 15012 https-dns, 443
// https-webhook to 15017, 15014 http-monitoring; 15010 grpc-xds only with
// plaintextXDS) selecting discovery's pods; off by default; a remote
// cluster refuses it.
func TestIstiodService(t *testing.T) {
	objs, err := Render(Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if findService(objs, IstiodName) != nil {
		t.Error("default install renders an istiod Service")
	}
	s, err := LoadValues(Defaults(), "values.yaml", []byte("istiodService: true\n"))
	if err != nil || !s.IstiodService {
		t.Fatalf("values istiodService: %v, %v", s.IstiodService, err)
	}
	if objs, err = Render(s); err != nil {
		t.Fatal(err)
	}
	svc := findService(objs, IstiodName)
	if svc == nil {
		t.Fatal("istiodService: no istiod Service")
	}
	if svc.Namespace != "istio-system" || len(svc.Spec.Selector) != 1 || svc.Spec.Selector["app"] != DiscoveryName {
		t.Errorf("istiod Service %s/%s selects %v; want app=%s", svc.Namespace, svc.Name, svc.Spec.Selector, DiscoveryName)
	}
	var got []string
	for _, p := range svc.Spec.Ports {
		got = append(got, fmt.Sprintf("%s %d->%s", p.Name, p.Port, p.TargetPort.String()))
	}
	want := []string{"https-dns 15012->15012", "http-monitoring 15014->15014", "https-webhook 443->15017"}
	if !slices.Equal(got, want) {
		t.Errorf("istiod ports %v, want %v", got, want)
	}

	r := Defaults()
	r.Remote, r.DiscoveryAddress, r.IstiodService = true, "203.0.113.10:15443", true
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "istiodService") {
		t.Errorf("remote with istiodService: %v, want an error naming istiodService", err)
	}
}

// injectionWebhook: false (--injection-webhook=false) installs no
// MutatingWebhookConfiguration, and discovery serves no webhook (empty
// --inject-addr, no 15017 port, no 443 on its Service) and may not touch
// one (no RBAC for it). A remote cluster, which is its injector, refuses it.
func TestInjectionWebhookOptional(t *testing.T) {
	s, err := LoadValues(Defaults(), "values.yaml", []byte("injectionWebhook: false\nistiodService: true\n"))
	if err != nil || s.InjectionWebhook {
		t.Fatalf("values injectionWebhook: %v, %v", s.InjectionWebhook, err)
	}
	objs, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionv1.MutatingWebhookConfiguration:
			t.Errorf("renders MutatingWebhookConfiguration %s", o.Name)
		case *rbacv1.ClusterRole:
			for _, r := range o.Rules {
				if slices.Contains(r.Resources, "mutatingwebhookconfigurations") {
					t.Errorf("ClusterRole %s grants %v on webhook configurations", o.Name, r.Verbs)
				}
			}
		case *corev1.Service:
			for _, p := range o.Spec.Ports {
				if p.Port == 443 {
					t.Errorf("Service %s has port 443 with no webhook behind it", o.Name)
				}
			}
		}
	}
	svc, container, _ := discoveryPorts(t, s)
	if slices.Contains(container, PortWebhook) || slices.Contains(svc, 443) {
		t.Errorf("container ports %v, Service ports %v: want no webhook port", container, svc)
	}
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == DiscoveryName {
			args := d.Spec.Template.Spec.Containers[0].Args
			if i := slices.Index(args, "--inject-addr"); i < 0 || args[i+1] != "" {
				t.Errorf("discovery args %v: want --inject-addr empty", args)
			}
		}
	}

	// On by default, as before.
	if objs, err = Render(Defaults()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		if _, ok := o.(*admissionv1.MutatingWebhookConfiguration); ok {
			n++
		}
	}
	if n != 1 {
		t.Errorf("default install renders %d webhook configurations, want 1", n)
	}

	r := Defaults()
	r.Remote, r.DiscoveryAddress, r.InjectionWebhook = true, "203.0.113.10:15443", false
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "injectionWebhook") {
		t.Errorf("remote without the webhook: %v, want an error naming injectionWebhook", err)
	}
}
