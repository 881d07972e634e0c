package lab

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestHostsFile(t *testing.T) {
	got := HostsFile([]*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "helloworld", Namespace: "sample"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.50"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "sample"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}},
	})
	want := hostsHeader + "10.96.0.50\thelloworld.sample.svc.cluster.local helloworld.sample.svc helloworld.sample\n"
	if got != want {
		t.Errorf("HostsFile:\n%s\nwant:\n%s", got, want)
	}
}

func TestServiceRules(t *testing.T) {
	svcs := []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "hw", Namespace: "s"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.50", Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "none", Namespace: "s"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.51",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1",
			Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}},
	}
	tcp := corev1.ProtocolTCP
	eps := []*discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Name: "hw-1", Namespace: "s", Labels: map[string]string{discoveryv1.LabelServiceName: "hw"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](5000), Protocol: &tcp}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.51.0.3"}},
			{Addresses: []string{"10.51.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.51.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}}
	got := ServiceRules(svcs, eps, map[string]netip.Addr{"s/hw": netip.MustParseAddr("203.0.113.20")}, "10.51.0.1:443")
	want := `*nat
:HLAB-SERVICES - [0:0]
-A HLAB-SERVICES -d 10.96.0.50/32 -p tcp -m tcp --dport 80 -m statistic --mode random --probability 0.50000 -m comment --comment "s/hw:http" -j DNAT --to-destination 10.51.0.2:5000
-A HLAB-SERVICES -d 10.96.0.50/32 -p tcp -m tcp --dport 80 -m comment --comment "s/hw:http" -j DNAT --to-destination 10.51.0.3:5000
-A HLAB-SERVICES -d 203.0.113.20/32 -p tcp -m tcp --dport 80 -m statistic --mode random --probability 0.50000 -m comment --comment "s/hw:http" -j DNAT --to-destination 10.51.0.2:5000
-A HLAB-SERVICES -d 203.0.113.20/32 -p tcp -m tcp --dport 80 -m comment --comment "s/hw:http" -j DNAT --to-destination 10.51.0.3:5000
-A HLAB-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -m comment --comment "default/kubernetes:https" -j DNAT --to-destination 10.51.0.1:443
COMMIT
`
	if got != want {
		t.Errorf("ServiceRules:\n%s\nwant:\n%s", got, want)
	}
}

// Every name the lab gives a namespace or interface starts with NetPrefix
// and fits in an interface name; pod namespaces of the lab nodes
// (PREFIX-p...) never match a lab namespace.
func TestNetworkNames(t *testing.T) {
	for _, c := range NetworkCommands() {
		var names []string
		j := strings.Join(c, " ")
		switch {
		case strings.HasPrefix(j, "ip netns add "), strings.HasPrefix(j, "ip netns exec "):
			names = []string{c[3]}
		case strings.HasPrefix(j, "ip -n "):
			names = []string{c[2]}
		case strings.HasPrefix(j, "ip link add "):
			names = []string{c[3], c[8]}
		case strings.HasPrefix(j, "ip link set ") && len(c) == 5: // ip link set NAME up
			names = []string{c[3]}
		case strings.HasPrefix(j, "ip link set "):
			names = []string{c[3], c[5]}
		case strings.HasPrefix(j, "ip addr add "), strings.HasPrefix(j, "ip route add "): // ... dev NAME
			names = []string{c[len(c)-1]}
		default:
			t.Errorf("unexpected command %v", c)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, NetPrefix) || len(n) > 15 {
				t.Errorf("%v: name %q", c, n)
			}
		}
	}
	for _, c := range Clusters {
		if len(c.NodePrefix()) > 6 || strings.HasPrefix(PublicNS, c.NodePrefix()+"-p") || strings.HasPrefix(c.RouterNS(), c.NodePrefix()+"-p") {
			t.Errorf("%s: node prefix %q", c.Name, c.NodePrefix())
		}
	}
}

// This machine (the API servers calling webhooks) routes each cluster's
// Service and pod ranges to that cluster's router, over the link's router
// end.
func TestHostRoutes(t *testing.T) {
	var routes []string
	for _, c := range NetworkCommands() {
		if j := strings.Join(c, " "); strings.HasPrefix(j, "ip route add ") {
			routes = append(routes, j)
		}
	}
	want := []string{
		"ip route add 10.96.0.0/16 via 169.254.100.2 dev hlabh1", "ip route add 10.51.0.0/24 via 169.254.100.2 dev hlabh1",
		"ip route add 10.97.0.0/16 via 169.254.100.6 dev hlabh2", "ip route add 10.52.0.0/24 via 169.254.100.6 dev hlabh2",
	}
	if strings.Join(routes, "\n") != strings.Join(want, "\n") {
		t.Errorf("routes:\n%s\nwant:\n%s", strings.Join(routes, "\n"), strings.Join(want, "\n"))
	}
}
