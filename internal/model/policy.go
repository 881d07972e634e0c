package model

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Topology labels a failoverPriority may name without a value: the client's
// own value is compared (Istio's list, less kubernetes.io/hostname).
const (
	LabelNetwork = NetworkLabel
	LabelCluster = "topology.istio.io/cluster"
	LabelRegion  = "topology.kubernetes.io/region"
	LabelZone    = "topology.kubernetes.io/zone"
	LabelSubzone = "topology.istio.io/subzone"
)

// DestinationRule is the part of an Istio DestinationRule Horizon applies:
// the top-level traffic policy of one host. Subsets, port-level settings,
// TLS and exportTo are not read (see docs/architecture.md).
type DestinationRule struct {
	Name, Namespace string
	// Host as written: a short name (relative to Namespace) or an FQDN.
	Host   string
	Policy TrafficPolicy
}

// TrafficPolicy is what a DestinationRule (or the mesh default) sets for a
// service's clients. A nil field is not set.
type TrafficPolicy struct {
	// Locality, when set, orders the service's endpoints into priorities by
	// where the client stands (LocalityLB); nil keeps one priority and the
	// same endpoints for every client of a network.
	Locality *LocalityLB
	// LocalityOff is localityLbSetting.enabled: false, which keeps the mesh
	// default's locality setting off this service.
	LocalityOff bool
	// Outlier ejects failing hosts (an endpoint, or a gateway as one host).
	Outlier *OutlierDetection
	Pool    *ConnectionPool

	key string // identity of the settings, computed once (Key)
}

// LocalityLB is Istio's LocalityLoadBalancerSetting once enabled: at most
// one of Distribute and Failover/FailoverPriority is set.
type LocalityLB struct {
	Distribute []LocalityDistribute
	Failover   []LocalityFailover
	// FailoverPriority are label keys ("topology.kubernetes.io/zone") or
	// key=value pairs ("version=v1"), in order.
	FailoverPriority []string
}

// LocalityDistribute sends the clients of From's localities to To's in the
// given weights (patterns region/zone/subzone with "*").
type LocalityDistribute struct {
	From string
	To   map[string]uint32
}

// LocalityFailover sends a region's clients, when their region has no
// healthy endpoint, to To before any other region.
type LocalityFailover struct{ From, To string }

// OutlierDetection is Istio's OutlierDetection with its defaults applied.
type OutlierDetection struct {
	Consecutive5xx                 uint32 // 0: off
	ConsecutiveGatewayErrors       uint32 // 0: off
	SplitExternalLocalOriginErrors bool
	ConsecutiveLocalOriginFailures uint32 // 0: off (only with Split...)
	Interval                       time.Duration
	BaseEjectionTime               time.Duration
	MaxEjectionPercent             uint32
	MinHealthPercent               uint32
}

// DefaultOutlierDetection is Istio's OutlierDetection with every field at
// its documented default: 5 consecutive 5xx, a 10s sweep, 30s base
// ejection, at most 10% of hosts ejected (Envoy always allows one), no
// minimum health. Applied when a policy enables locality load balancing
// without outlier detection, which failover needs to work at all.
func DefaultOutlierDetection() *OutlierDetection {
	return &OutlierDetection{Consecutive5xx: 5, Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionPercent: 10}
}

// ConnectionPool is Istio's ConnectionPoolSettings; zero fields are unset.
type ConnectionPool struct {
	MaxConnections           uint32
	ConnectTimeout           time.Duration
	HTTP1MaxPendingRequests  uint32
	HTTP2MaxRequests         uint32
	MaxRequestsPerConnection uint32
	MaxRetries               uint32
	IdleTimeout              time.Duration
}

// DefaultLocalityPolicy is the mesh default `--locality-failover` applies
// to every service without a DestinationRule: Istio's locality order and
// outlier detection defaults.
func DefaultLocalityPolicy() *TrafficPolicy {
	p := &TrafficPolicy{Locality: &LocalityLB{}, Outlier: DefaultOutlierDetection()}
	p.seal()
	return p
}

// Key identifies the policy's settings: two policies with the same key
// build the same resources.
func (p *TrafficPolicy) Key() string {
	if p == nil {
		return ""
	}
	return p.key
}

// LocalityAware reports whether the policy's load assignments depend on
// where the client stands.
func (p *TrafficPolicy) LocalityAware() bool { return p != nil && p.Locality != nil }

// seal computes the key; called once the policy is complete.
func (p *TrafficPolicy) seal() {
	var b strings.Builder
	if p.LocalityOff {
		b.WriteString("locality-off;")
	}
	if l := p.Locality; l != nil {
		b.WriteString("locality")
		for _, d := range l.Distribute {
			fmt.Fprintf(&b, " d:%s>", d.From)
			keys := make([]string, 0, len(d.To))
			for k := range d.To {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "%s=%d,", k, d.To[k])
			}
		}
		for _, f := range l.Failover {
			fmt.Fprintf(&b, " f:%s>%s", f.From, f.To)
		}
		fmt.Fprintf(&b, " p:%q", l.FailoverPriority)
	}
	if o := p.Outlier; o != nil {
		fmt.Fprintf(&b, ";outlier %+v", *o)
	}
	if c := p.Pool; c != nil {
		fmt.Fprintf(&b, ";pool %+v", *c)
	}
	p.key = b.String()
}

// Seal returns p complete (its Key computed); sources call it on the
// policies they convert.
func (p TrafficPolicy) Seal() TrafficPolicy {
	p.seal()
	return p
}

// effectivePolicy is what a service's clients apply: the DestinationRule's
// policy, its locality setting taken from the mesh default when it has
// none, and Istio's outlier defaults when locality is on without them.
func effectivePolicy(dr *TrafficPolicy, mesh *TrafficPolicy) *TrafficPolicy {
	if dr == nil {
		return mesh
	}
	p := *dr
	if p.Locality == nil && mesh != nil && !dr.LocalityOff {
		p.Locality = mesh.Locality
	}
	if p.Locality != nil && p.Outlier == nil {
		p.Outlier = DefaultOutlierDetection()
	}
	p.seal()
	return &p
}

// resolvePolicies keys DestinationRules by the FQDN of their host (a name
// without a dot is short for name.<rule's namespace>.svc.<suffix>, as Istio
// reads it) and applies the mesh default to each. One rule per host: the
// one in the host's own namespace, else the first by namespace/name; the
// others are reported and left out (Istio's per-client-namespace choice
// would make every namespace a view).
func resolvePolicies(rules []*DestinationRule, def *TrafficPolicy, suffix string, diags *Diagnostics) map[string]*TrafficPolicy {
	sorted := make([]*DestinationRule, 0, len(rules))
	for _, r := range rules {
		if r != nil {
			sorted = append(sorted, r)
		}
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Namespace != sorted[j].Namespace {
			return sorted[i].Namespace < sorted[j].Namespace
		}
		return sorted[i].Name < sorted[j].Name
	})
	chosen := map[string]*DestinationRule{}
	var hosts []string
	for _, r := range sorted {
		host := strings.ToLower(r.Host)
		if !strings.Contains(host, ".") {
			host = Hostname(host, r.Namespace, suffix)
		}
		prev, ok := chosen[host]
		switch {
		case !ok:
			hosts = append(hosts, host)
			chosen[host] = r
			continue
		case r.Namespace == hostNamespace(host, suffix) && prev.Namespace != r.Namespace:
			chosen[host], r = r, prev
		}
		diags.AddWarning("", "DestinationRule "+r.Namespace+"/"+r.Name, "spec.host",
			fmt.Sprintf("host %s already has DestinationRule %s/%s; this one is ignored", host, chosen[host].Namespace, chosen[host].Name))
	}
	out := make(map[string]*TrafficPolicy, len(chosen))
	for _, h := range hosts {
		out[h] = effectivePolicy(&chosen[h].Policy, def)
	}
	return out
}

// hostNamespace is the namespace of a service hostname name.ns.svc.suffix
// ("" for another host).
func hostNamespace(host, suffix string) string {
	rest, ok := strings.CutSuffix(host, ".svc."+suffix)
	if !ok {
		return ""
	}
	_, ns, _ := strings.Cut(rest, ".")
	return ns
}

// Policy returns the traffic policy of a service's clients: its
// DestinationRule's, else the mesh default; nil when neither.
func (m *Mesh) Policy(host string) *TrafficPolicy {
	if p, ok := m.policies[host]; ok {
		return p
	}
	return m.defaultPolicy
}
