package translate

import (
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/horizonmesh/horizon/internal/model"
)

// Locality ranks of the default order (without failoverPriority alone): the
// proxy's subzone, zone, region, `failover`'s region for the proxy's, any
// other endpoint reached directly, and last the gateways of other networks.
const (
	rankSubzone = iota
	rankZone
	rankRegion
	rankFailover
	rankOther
	rankGateway
)

// applyLocality orders a locality-aware service's groups for a proxy in
// view v (see docs/architecture.md, "Locality failover"):
//   - with Distribute, the groups keep priority 0 and, for a proxy whose
//     locality matches a rule's From, take that rule's weights;
//   - otherwise the endpoints reached directly go into priorities by
//     locality as Istio orders them — same subzone, same zone, same region,
//     Failover's region, the rest — and the gateways of other networks into
//     the last one, each gateway once with the weight of everything it
//     stands for (with Failover's region, a gateway standing only for
//     endpoints there counts as that region); with FailoverPriority the labels order the endpoints
//     (within each locality priority when Failover is set too), a gateway
//     answering only for its network and cluster.
//
// Empty priorities are left out: Envoy's are numbered without gaps.
func applyLocality(l *model.LocalityLB, v EDSView, groups []*localityGroup) []*localityGroup {
	if len(l.Distribute) > 0 {
		return distribute(l.Distribute, v, groups)
	}
	n := uint32(len(l.FailoverPriority))
	labelsOnly := n > 0 && len(l.Failover) == 0
	failoverTo := ""
	for _, f := range l.Failover {
		if v.Located && f.From == v.Locality.Region {
			failoverTo = f.To
			break
		}
	}
	type slot struct {
		key      uint32
		locality model.Locality
	}
	slots := map[slot]*localityGroup{}
	at := func(key uint32, loc model.Locality) *localityGroup {
		s := slot{key, loc}
		g := slots[s]
		if g == nil {
			g = &localityGroup{priority: key, locality: loc}
			slots[s] = g
		}
		return g
	}
	gwShare := map[*model.Gateway]uint64{}
	// A gateway all of whose endpoints (of this service) are in Failover's
	// region for the proxy's counts as that region: the user asked for it
	// by name, network or not.
	gwFailover := map[*model.Gateway]bool{}
	for _, g := range groups {
		for gw := range g.gateways {
			in, seen := gwFailover[gw]
			gwFailover[gw] = failoverTo != "" && g.locality.Region == failoverTo && (in || !seen)
		}
	}
	for _, g := range groups {
		for i, e := range g.direct {
			rank := uint32(0)
			if !labelsOnly {
				rank = localityRank(v, e.Locality, failoverTo)
			}
			key := rank*(n+1) + n - matched(l.FailoverPriority, v, endpointLabel(e))
			dst := at(key, e.Locality)
			dst.direct = append(dst.direct, e)
			dst.weights = append(dst.weights, g.weights[i])
		}
		for gw, w := range g.gateways {
			gwShare[gw] += w
		}
	}
	for gw, w := range gwShare {
		rank := uint32(0)
		switch {
		case labelsOnly:
		case gwFailover[gw]:
			rank = rankFailover
		default:
			rank = rankGateway
		}
		key := rank*(n+1) + n - matched(l.FailoverPriority, v, gatewayLabel(gw))
		dst := at(key, model.Locality{})
		if dst.gateways == nil {
			dst.gateways = map[*model.Gateway]uint64{}
		}
		dst.gateways[gw] += w
	}
	// Compact the keys into priorities 0, 1, 2...
	var keys []uint32
	for s := range slots {
		keys = append(keys, s.key)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	out := make([]*localityGroup, 0, len(slots))
	for _, g := range slots {
		g.priority = uint32(slices.Index(keys, g.priority))
		out = append(out, g)
	}
	return out
}

// localityRank is where an endpoint at loc stands from the proxy of v.
func localityRank(v EDSView, loc model.Locality, failoverTo string) uint32 {
	pl := v.Locality
	switch {
	case !v.Located || pl.Region == "" || loc.Region != pl.Region:
		if failoverTo != "" && loc.Region == failoverTo {
			return rankFailover
		}
		return rankOther
	case loc.Zone != pl.Zone:
		return rankRegion
	case loc.Subzone != pl.Subzone:
		return rankZone
	}
	return rankSubzone
}

// matched counts the leading failoverPriority labels an endpoint matches: a
// key alone matches when the endpoint's value equals the proxy's, and the
// proxy has one; key=value when the endpoint's value is value.
func matched(labels []string, v EDSView, value func(string) string) uint32 {
	for i, l := range labels {
		key, want, pair := strings.Cut(l, "=")
		if !pair {
			want = proxyLabel(v, key)
			if want == "" {
				return uint32(i)
			}
		}
		if value(key) != want {
			return uint32(i)
		}
	}
	return uint32(len(labels))
}

// proxyLabel is the value of a topology label for the proxy of v; other
// labels are refused without a value when the rule is read.
func proxyLabel(v EDSView, key string) string {
	if key == model.LabelNetwork {
		return v.Network
	}
	if !v.Located {
		return ""
	}
	switch key {
	case model.LabelCluster:
		return string(v.Cluster)
	case model.LabelRegion:
		return v.Locality.Region
	case model.LabelZone:
		return v.Locality.Zone
	case model.LabelSubzone:
		return v.Locality.Subzone
	}
	return ""
}

func endpointLabel(e *model.Endpoint) func(string) string {
	return func(key string) string {
		switch key {
		case model.LabelNetwork:
			return e.Network
		case model.LabelCluster:
			return string(e.Cluster)
		case model.LabelRegion:
			return e.Locality.Region
		case model.LabelZone:
			return e.Locality.Zone
		case model.LabelSubzone:
			return e.Locality.Subzone
		}
		return e.Labels[key]
	}
}

// gatewayLabel answers for a gateway's network and cluster only: it stands
// for endpoints of many localities and labels.
func gatewayLabel(gw *model.Gateway) func(string) string {
	return func(key string) string {
		switch key {
		case model.LabelNetwork:
			return gw.Network
		case model.LabelCluster:
			return string(gw.Cluster)
		}
		return ""
	}
}

// distribute applies the first rule whose From matches the proxy's
// locality: each To pattern's weight is shared by the groups it matches
// (the most specific pattern first; a group counts for one pattern), in
// proportion to their endpoints' weights; a group no pattern matches, or
// one of weight 0, gets no traffic and is left out. Gateways stay in the
// localities of the endpoints they stand for.
func distribute(rules []model.LocalityDistribute, v EDSView, groups []*localityGroup) []*localityGroup {
	if !v.Located {
		return groups
	}
	i := slices.IndexFunc(rules, func(d model.LocalityDistribute) bool { return LocalityMatch(v.Locality, d.From) })
	if i < 0 {
		return groups
	}
	to := make([]string, 0, len(rules[i].To))
	for p := range rules[i].To {
		to = append(to, p)
	}
	sort.Slice(to, func(a, b int) bool {
		if sa, sb := specificity(to[a]), specificity(to[b]); sa != sb {
			return sa > sb
		}
		return to[a] < to[b]
	})
	taken := map[*localityGroup]bool{}
	var out []*localityGroup
	for _, p := range to {
		var members []*localityGroup
		var total uint64
		for _, g := range groups {
			if !taken[g] && LocalityMatch(g.locality, p) {
				taken[g] = true
				members = append(members, g)
				total += naturalWeight(g)
			}
		}
		w := uint64(rules[i].To[p])
		if w == 0 || total == 0 {
			continue
		}
		for _, g := range members {
			g.weight = min(max(1, (naturalWeight(g)*w+total-1)/total), math.MaxUint32)
			out = append(out, g)
		}
	}
	return out
}

// naturalWeight is a group's weight without distribute: its members' sum.
func naturalWeight(g *localityGroup) uint64 {
	var t uint64
	for _, w := range g.weights {
		t += uint64(w)
	}
	for _, w := range g.gateways {
		t += max(1, min(w, math.MaxUint32))
	}
	return t
}

// specificity counts a locality pattern's segments that are not "*".
func specificity(p string) int {
	n := 0
	for _, s := range strings.Split(p, "/") {
		if s != "*" && s != "" {
			n++
		}
	}
	return n
}

// LocalityMatch reports whether loc matches a pattern region[/zone[/subzone]]
// where "*" matches any value and missing segments match anything.
func LocalityMatch(loc model.Locality, pattern string) bool {
	parts := strings.Split(pattern, "/")
	vals := []string{loc.Region, loc.Zone, loc.Subzone}
	for i, p := range parts {
		if i >= len(vals) {
			return false
		}
		if p != "*" && p != vals[i] {
			return false
		}
	}
	return true
}
