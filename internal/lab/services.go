package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// resolvConf is the pods' /etc/resolv.conf. The lab has no cluster DNS
// (Service names are in the hosts file) and the machine's nameserver is
// not reachable from pod networks: a query there would wait out its
// timeouts (Envoy's resolver asked for AAAA records and took a minute to
// find discovery), while the loopback answers at once that nothing
// listens.
const resolvConf = "# horizon lab: no cluster DNS; Service names are in /etc/hosts\nnameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n"

const hostsHeader = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

// serviceController is the lab's cloud and kube-proxy, for one cluster:
// each LoadBalancer Service gets an address of the cluster's slice of the
// public segment (status.loadBalancer.ingress), which the router owns and
// DNATs to the Service's ready endpoints; each ClusterIP is DNATed on the
// router the same way (for pods without a sidecar: a sidecar's capture
// takes ClusterIP traffic before it leaves the pod); Service names go to
// the hosts file every container sees.
type serviceController struct {
	spec   ClusterSpec
	client kubernetes.Interface
	hosts  string
	logf   func(string, ...any)
	// apiserver is where the "kubernetes" Service goes (the lab node's
	// proxy on the router; the API server reconciles no endpoints).
	apiserver string

	lastHosts, lastRules string
}

func (s *serviceController) run(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(s.client, 10*time.Minute)
	svcs := f.Core().V1().Services()
	slices := f.Discovery().V1().EndpointSlices()
	kick := make(chan struct{}, 1)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { trigger(kick) },
		UpdateFunc: func(any, any) { trigger(kick) },
		DeleteFunc: func(any) { trigger(kick) },
	}
	if _, err := svcs.Informer().AddEventHandler(h); err != nil {
		return err
	}
	if _, err := slices.Informer().AddEventHandler(h); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	f.WaitForCacheSync(ctx.Done())
	trigger(kick)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kick:
		case <-retry.C:
		}
		// Let a burst of changes settle.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		all, _ := svcs.Lister().List(labels.Everything())
		eps, _ := slices.Lister().List(labels.Everything())
		if err := s.sync(ctx, all, eps); err != nil {
			s.logf("services: %v (retrying)", err)
			retry.Reset(2 * time.Second)
		}
	}
}

func trigger(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// sync makes the router, the hosts file and the load-balancer statuses
// follow the cluster's Services and EndpointSlices.
func (s *serviceController) sync(ctx context.Context, svcs []*corev1.Service, eps []*discoveryv1.EndpointSlice) error {
	sort.Slice(svcs, func(i, j int) bool {
		if svcs[i].Namespace != svcs[j].Namespace {
			return svcs[i].Namespace < svcs[j].Namespace
		}
		return svcs[i].Name < svcs[j].Name
	})
	lbs, err := s.assignLBs(ctx, svcs)
	if err != nil {
		return err
	}
	hosts := HostsFile(svcs)
	if hosts != s.lastHosts {
		if err := writeInPlace(s.hosts, []byte(hosts)); err != nil {
			return err
		}
		s.lastHosts = hosts
	}
	rules := ServiceRules(svcs, eps, lbs, s.apiserver)
	if rules != s.lastRules {
		if _, err := runCmd(ctx, []byte(rules), "ip", "netns", "exec", s.spec.RouterNS(), "iptables-restore", "--noflush"); err != nil {
			return err
		}
		s.lastRules = rules
	}
	return s.syncAddresses(ctx, lbs)
}

// assignLBs gives each LoadBalancer Service an address (keeping the one it
// has when it is this cluster's and not another Service's) and returns
// them by namespace/name.
func (s *serviceController) assignLBs(ctx context.Context, svcs []*corev1.Service) (map[string]netip.Addr, error) {
	first, last := netip.MustParseAddr(s.spec.LBFirst), netip.MustParseAddr(s.spec.LBLast)
	inRange := func(a netip.Addr) bool { return !a.Less(first) && !last.Less(a) }
	out := map[string]netip.Addr{}
	used := map[netip.Addr]bool{}
	var want []*corev1.Service
	for _, svc := range svcs {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		if in := svc.Status.LoadBalancer.Ingress; len(in) == 1 {
			if a, err := netip.ParseAddr(in[0].IP); err == nil && inRange(a) && !used[a] {
				out[key], used[a] = a, true
				continue
			}
		}
		want = append(want, svc)
	}
	var errs []error
	for _, svc := range want {
		var addr netip.Addr
		for a := first; a.IsValid() && !last.Less(a); a = a.Next() {
			if !used[a] {
				addr = a
				break
			}
		}
		if !addr.IsValid() {
			errs = append(errs, fmt.Errorf("service %s/%s: no load-balancer address left in %s-%s", svc.Namespace, svc.Name, first, last))
			continue
		}
		cp := svc.DeepCopy()
		cp.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr.String(), IPMode: ptrTo(corev1.LoadBalancerIPModeVIP)}}
		if _, err := s.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("service %s/%s: load-balancer status: %w", svc.Namespace, svc.Name, err))
			continue
		}
		s.logf("services: %s/%s gets load-balancer address %s", svc.Namespace, svc.Name, addr)
		out[svc.Namespace+"/"+svc.Name], used[addr] = addr, true
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%v", errs)
	}
	return out, nil
}

func ptrTo[T any](v T) *T { return &v }

// syncAddresses makes the router's public interface hold exactly its own
// address and the load-balancer addresses in use.
func (s *serviceController) syncAddresses(ctx context.Context, lbs map[string]netip.Addr) error {
	out, err := runCmd(ctx, nil, "ip", "-n", s.spec.RouterNS(), "-o", "-4", "addr", "show", "dev", "pub0")
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				have[f[i+1]] = true
			}
		}
	}
	want := map[string]bool{}
	for _, a := range lbs {
		want[a.String()+"/32"] = true
	}
	for a := range want {
		if !have[a] {
			if _, err := runCmd(ctx, nil, "ip", "-n", s.spec.RouterNS(), "addr", "add", a, "dev", "pub0"); err != nil {
				return err
			}
		}
	}
	for a := range have {
		if strings.HasSuffix(a, "/32") && !want[a] {
			if _, err := runCmd(ctx, nil, "ip", "-n", s.spec.RouterNS(), "addr", "del", a, "dev", "pub0"); err != nil {
				return err
			}
		}
	}
	return nil
}

// HostsFile is the hosts file of a cluster's pods: each Service with a
// ClusterIP as NAME.NS.svc.cluster.local, NAME.NS.svc and NAME.NS.
func HostsFile(svcs []*corev1.Service) string {
	var b strings.Builder
	b.WriteString(hostsHeader)
	for _, svc := range svcs {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		n := svc.Name + "." + svc.Namespace
		fmt.Fprintf(&b, "%s\t%s.svc.cluster.local %s.svc %s\n", ip, n, n, n)
	}
	return b.String()
}

// ServiceRules is the iptables-restore input that sets the router's
// Service chain: for each Service port, its ClusterIP and its
// load-balancer address (lbs by namespace/name) DNATed to the ready
// endpoints of its EndpointSlices, chosen at random; default/kubernetes's
// port 443 to apiserver when it has none.
func ServiceRules(svcs []*corev1.Service, eps []*discoveryv1.EndpointSlice, lbs map[string]netip.Addr, apiserver string) string {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, e := range eps {
		if name := e.Labels[discoveryv1.LabelServiceName]; name != "" && e.AddressType == discoveryv1.AddressTypeIPv4 {
			bySvc[e.Namespace+"/"+name] = append(bySvc[e.Namespace+"/"+name], e)
		}
	}
	var b strings.Builder
	b.WriteString("*nat\n:" + servicesChain + " - [0:0]\n")
	for _, svc := range svcs {
		key := svc.Namespace + "/" + svc.Name
		var vips []string
		if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
			vips = append(vips, ip)
		}
		if a, ok := lbs[key]; ok {
			vips = append(vips, a.String())
		}
		if len(vips) == 0 {
			continue
		}
		for _, port := range svc.Spec.Ports {
			proto := strings.ToLower(string(port.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			if proto != "tcp" && proto != "udp" {
				continue
			}
			dests := readyEndpoints(bySvc[key], port)
			if len(dests) == 0 && key == "default/kubernetes" && port.Port == 443 && apiserver != "" {
				dests = []string{apiserver}
			}
			for _, vip := range vips {
				for i, d := range dests {
					rule := fmt.Sprintf("-A %s -d %s/32 -p %s -m %s --dport %d", servicesChain, vip, proto, proto, port.Port)
					if left := len(dests) - i; left > 1 {
						rule += fmt.Sprintf(" -m statistic --mode random --probability %.5f", 1/float64(left))
					}
					fmt.Fprintf(&b, "%s -m comment --comment %q -j DNAT --to-destination %s\n", rule, key+":"+port.Name, d)
				}
			}
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// readyEndpoints are ADDRESS:PORT of the slices' ready endpoints for a
// Service port (the slice port of the same name), sorted, once each.
func readyEndpoints(eps []*discoveryv1.EndpointSlice, sp corev1.ServicePort) []string {
	var out []string
	for _, e := range eps {
		for _, p := range e.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != sp.Name) || (p.Name == nil && sp.Name != "") {
				continue
			}
			if p.Protocol != nil && *p.Protocol != sp.Protocol && sp.Protocol != "" {
				continue
			}
			for _, ep := range e.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, a := range ep.Addresses {
					out = append(out, fmt.Sprintf("%s:%d", a, *p.Port))
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
