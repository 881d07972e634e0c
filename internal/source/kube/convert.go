package kube

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/horizonmesh/horizon/internal/model"
)

// Convert builds the cluster's snapshot from the store's current contents.
// It is deterministic and never modifies the stored objects. Invalid objects
// are left out with an error diagnostic; the rest of the cluster converts.
func Convert(id model.ClusterID, s *Store, opts Options) (*model.ClusterSnapshot, model.Diagnostics) {
	return convertStore(id, s, opts, nil)
}

// convertCache is what the last conversion of a store made, per service,
// for the next one to reuse (Source.Snapshot).
type convertCache struct {
	store      *Store
	id         model.ClusterID
	opts       Options
	everything uint64
	services   map[objectKey]convertedService
	serviceSet uint64      // changes.serviceSet when order was sorted
	order      []objectKey // the Service keys, sorted
	pods       podsCache
}

type convertedService struct {
	svc   *model.ClusterService // nil: left out (diags say why)
	diags model.Diagnostics
	gen   uint64 // the store's changes.gen when converted
}

// convertStore converts the store service by service: a Service and its
// EndpointSlices (and the Pods and Nodes they name) make one
// ClusterService; and its Pods into the Pod table (convertPods). With a cache, a service no change has touched since the
// cache's conversion (changes.svcGen) is reused as it was — the same
// pointer — so a conversion costs what changed, not the cluster; the
// result is what a conversion without cache gives.
func convertStore(id model.ClusterID, s *Store, opts Options, cache *convertCache) (*model.ClusterSnapshot, model.Diagnostics) {
	snap := &model.ClusterSnapshot{ID: id}
	if s == nil {
		return snap, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ns, ok := s.namespaces[objectKey{"", opts.systemNamespace()}]; ok {
		snap.SystemNamespaceNetwork = ns.obj.Labels[LabelNetwork]
	}
	reuse := cache != nil && cache.store == s && cache.id == id && cache.opts == opts && cache.everything == s.changes.everything
	next := make(map[objectKey]convertedService, len(s.services))
	var diags model.Diagnostics
	var order []objectKey
	if cache != nil && cache.store == s && cache.serviceSet == s.changes.serviceSet && cache.order != nil {
		order = cache.order // the same Service keys: no sort
	} else {
		order = sortedKeys(s.services)
	}
	for _, k := range order {
		cs, ok := convertedService{}, false
		if reuse {
			cs, ok = cache.services[k]
			ok = ok && cs.gen >= s.changes.svcGen[k]
		}
		if !ok {
			c := converter{id: id, s: s, seen: map[*model.ClusterService]map[addrPort]bool{}}
			cs = convertedService{svc: c.convertService(k), diags: c.diags, gen: s.changes.gen}
		}
		next[k] = cs
		diags = append(diags, cs.diags...)
		if cs.svc != nil {
			snap.Services = append(snap.Services, cs.svc)
		}
	}
	// Slices of no (existing) Service: each gets its warning.
	var orphans []objectKey
	for sk, svc := range s.changes.sliceSvc {
		if _, ok := s.services[svc]; !ok {
			orphans = append(orphans, sk)
		}
	}
	sortObjectKeys(orphans)
	c := converter{id: id, s: s}
	for _, sk := range orphans {
		e := s.slices[sk]
		c.slice(e.obj, e.origin, nil)
	}
	diags = append(diags, c.diags...)
	var podsFrom *podsCache
	if cache != nil && cache.store == s {
		podsFrom = &cache.pods
	}
	pods, podDiags := c.convertPods(podsFrom)
	snap.Pods = pods.table
	diags = append(diags, podDiags...)
	if cache != nil {
		*cache = convertCache{store: s, id: id, opts: opts, everything: s.changes.everything, services: next,
			serviceSet: s.changes.serviceSet, order: order, pods: pods}
	}
	return snap, diags
}

// convertService converts the Service at k with its EndpointSlices, or
// returns nil (with diagnostics) when it is left out.
func (c *converter) convertService(k objectKey) *model.ClusterService {
	e := c.s.services[k]
	cs := c.service(e.obj, e.origin)
	if cs == nil {
		return nil
	}
	c.seen[cs] = map[addrPort]bool{}
	slices := make([]objectKey, 0, len(c.s.changes.svcSlices[k]))
	for sk := range c.s.changes.svcSlices[k] {
		slices = append(slices, sk)
	}
	sortObjectKeys(slices)
	only := map[objectKey]*model.ClusterService{k: cs}
	for _, sk := range slices {
		se := c.s.slices[sk]
		c.slice(se.obj, se.origin, only)
	}
	for _, eps := range cs.Endpoints {
		sort.Slice(eps, func(i, j int) bool {
			if cmp := eps[i].Address.Compare(eps[j].Address); cmp != 0 {
				return cmp < 0
			}
			return eps[i].Port < eps[j].Port
		})
	}
	return cs
}

type converter struct {
	id    model.ClusterID
	s     *Store
	diags model.Diagnostics
	// seen holds each service's endpoints so far, to count each once.
	seen map[*model.ClusterService]map[addrPort]bool
}

func objName(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// service converts a Service, or returns nil (with a diagnostic) when it has
// no usable port. Kubernetes allows headless and ExternalName Services without
// ports: those are left out with a warning only.
func (c *converter) service(svc *corev1.Service, origin string) *model.ClusterService {
	obj := objName("Service", svc.Namespace, svc.Name)
	if len(svc.Spec.Ports) == 0 {
		if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			c.diags.AddWarning(origin, obj, "spec.ports", "headless or ExternalName service has no ports; ignored")
		} else {
			c.diags.AddError(origin, obj, "spec.ports", "service has no ports")
		}
		return nil
	}
	cs := &model.ClusterService{
		Name: svc.Name, Namespace: svc.Namespace, Labels: svc.Labels,
		Endpoints:   map[uint32][]*model.Endpoint{},
		ExternalIPs: svc.Spec.ExternalIPs,
		Headless:    svc.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if ip != "" && ip != corev1.ClusterIPNone {
			cs.ClusterIPs = append(cs.ClusterIPs, ip)
		}
	}
	names := map[string]bool{}
	numbers := map[string]bool{}
	for i, p := range svc.Spec.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		switch {
		case p.Port < 1 || p.Port > 65535:
			c.diags.AddError(origin, obj, field+".port", fmt.Sprintf("port %d out of range 1-65535", p.Port))
			continue
		case names[p.Name]:
			c.diags.AddError(origin, obj, field+".name", fmt.Sprintf("duplicate port name %q", p.Name))
			continue
		case numbers[fmt.Sprint(p.Port, proto)]:
			c.diags.AddError(origin, obj, field+".port", fmt.Sprintf("duplicate port %d/%s", p.Port, proto))
			continue
		}
		names[p.Name] = true
		numbers[fmt.Sprint(p.Port, proto)] = true
		sp := model.ServicePort{Name: p.Name, Port: uint32(p.Port), Protocol: proto}
		if p.AppProtocol != nil {
			sp.AppProtocol = *p.AppProtocol
		}
		cs.Ports = append(cs.Ports, sp)
	}
	if len(cs.Ports) == 0 {
		return nil // every port was invalid; already reported
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		switch {
		case ing.IP != "":
			cs.LoadBalancer = append(cs.LoadBalancer, ing.IP)
		case ing.Hostname != "":
			cs.LoadBalancer = append(cs.LoadBalancer, ing.Hostname)
		}
	}
	return cs
}

// slice adds the endpoints of one EndpointSlice to its Service.
func (c *converter) slice(sl *discoveryv1.EndpointSlice, origin string, services map[objectKey]*model.ClusterService) {
	obj := objName("EndpointSlice", sl.Namespace, sl.Name)
	svcName, ok := sl.Labels[LabelServiceName]
	if !ok || svcName == "" {
		c.diags.AddWarning(origin, obj, "metadata.labels["+LabelServiceName+"]", "no service-name label; slice ignored")
		return
	}
	key := objectKey{sl.Namespace, svcName}
	cs := services[key]
	if cs == nil {
		if _, exists := c.s.services[key]; !exists {
			c.diags.AddWarning(origin, obj, "metadata.labels["+LabelServiceName+"]",
				fmt.Sprintf("service %s/%s does not exist; slice ignored", sl.Namespace, svcName))
		} // else the Service was left out, with its own diagnostic
		return
	}
	if sl.AddressType == discoveryv1.AddressTypeFQDN {
		c.diags.AddWarning(origin, obj, "addressType", "FQDN endpoints are not supported; slice ignored")
		return
	}
	// Parse the endpoints once (diagnostics once per slice), then add them
	// for every service port the slice has a port for.
	eps := c.sliceEndpoints(sl, origin, obj)
	seen := c.seen[cs]
	for _, sp := range endpointPorts(cs.Ports) {
		target, ok := slicePort(sl, sp.Name)
		if !ok {
			continue
		}
		for _, tmpl := range eps {
			ap := addrPort{tmpl.Address, sp.Port, target}
			if seen[ap] {
				continue // listed twice or by two slices: counts once
			}
			seen[ap] = true
			e := tmpl
			e.Port = target
			cs.Endpoints[sp.Port] = append(cs.Endpoints[sp.Port], &e)
		}
	}
}

// addrPort identifies an endpoint of one service port.
type addrPort struct {
	addr             netip.Addr
	svcPort, tgtPort uint32
}

// endpointPorts returns the Service ports whose endpoints are kept: one per
// port number, because model.ClusterService.Endpoints is keyed by number. When
// a number is listed for two protocols (kube-dns: 53/UDP and 53/TCP), the TCP
// port wins, the protocol Envoy proxies; otherwise the first one listed.
func endpointPorts(ports []model.ServicePort) []model.ServicePort {
	idx := map[uint32]int{}
	var out []model.ServicePort
	for _, p := range ports {
		i, dup := idx[p.Port]
		switch {
		case !dup:
			idx[p.Port] = len(out)
			out = append(out, p)
		case p.Protocol == string(corev1.ProtocolTCP) && out[i].Protocol != string(corev1.ProtocolTCP):
			out[i] = p
		}
	}
	return out
}

// slicePort finds the slice port whose name matches the Service port's name
// (an unnamed port matches an unnamed one).
func slicePort(sl *discoveryv1.EndpointSlice, name string) (uint32, bool) {
	for _, p := range sl.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil && *p.Port > 0 && *p.Port <= 65535 {
			return uint32(*p.Port), true
		}
	}
	return 0, false
}

// sliceEndpoints returns one endpoint (without Port) per address of the
// slice's ready endpoints, reporting invalid addresses.
func (c *converter) sliceEndpoints(sl *discoveryv1.EndpointSlice, origin, obj string) []model.Endpoint {
	var out []model.Endpoint
	for i := range sl.Endpoints {
		ep := &sl.Endpoints[i]
		if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue
		}
		pod := c.pod(sl, ep)
		nodeName := ""
		if ep.NodeName != nil {
			nodeName = *ep.NodeName
		}
		if pod != nil && pod.Spec.NodeName != "" {
			nodeName = pod.Spec.NodeName
		}
		tmpl := model.Endpoint{Cluster: c.id, Locality: c.locality(nodeName)}
		if pod != nil {
			tmpl.Namespace, tmpl.PodName, tmpl.Labels = pod.Namespace, pod.Name, pod.Labels
			tmpl.ServiceAccount = pod.Spec.ServiceAccountName
			if tmpl.ServiceAccount == "" {
				tmpl.ServiceAccount = DefaultServiceAcct
			}
			tmpl.PodNetwork = pod.Labels[LabelNetwork]
			tmpl.MTLS = pod.Labels[LabelTLSMode] == TLSModeIstio
		}
		for j, a := range ep.Addresses {
			addr, err := netip.ParseAddr(a)
			if err != nil || addr.Zone() != "" {
				c.diags.AddError(origin, obj, fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), fmt.Sprintf("invalid IP %q; address ignored", a))
				continue
			}
			e := tmpl
			e.Address = addr.Unmap()
			out = append(out, e)
		}
	}
	return out
}

// pod returns the Pod an endpoint's targetRef names, or nil when there is
// none or it is not (yet) known: informers deliver in any order, and the
// endpoint is re-evaluated when the Pod arrives.
func (c *converter) pod(sl *discoveryv1.EndpointSlice, ep *discoveryv1.Endpoint) *corev1.Pod {
	ref := ep.TargetRef
	if ref == nil || (ref.Kind != "" && ref.Kind != "Pod") {
		return nil
	}
	ns := ref.Namespace
	if ns == "" {
		ns = sl.Namespace
	}
	if e, ok := c.s.pods[objectKey{ns, ref.Name}]; ok {
		return e.obj
	}
	return nil
}

func (c *converter) locality(nodeName string) model.Locality {
	if nodeName == "" {
		return model.Locality{}
	}
	n, ok := c.s.nodes[objectKey{"", nodeName}]
	if !ok {
		return model.Locality{}
	}
	l := n.obj.Labels
	return model.Locality{Region: l[LabelRegion], Zone: l[LabelZone], Subzone: l[LabelSubzone]}
}

func sortedKeys[T any](m map[objectKey]T) []objectKey {
	keys := make([]objectKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortObjectKeys(keys)
	return keys
}

func sortObjectKeys(keys []objectKey) {
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].namespace != keys[j].namespace {
			return keys[i].namespace < keys[j].namespace
		}
		return keys[i].name < keys[j].name
	})
}
