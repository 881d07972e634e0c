package meshnetworks

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"istio.io/api/mesh/v1alpha1"

	"github.com/horizonmesh/horizon/internal/model"
)

// network is one parsed network, plus the field path each registry came
// from (for diagnostics about registries shared between networks).
type network struct {
	object   string
	cfg      *model.NetworkConfig
	regField []string
}

func networkObject(name string) string {
	if checkNetworkName(name) != "" {
		return fmt.Sprintf("network %q", name)
	}
	return "network " + name
}

// network decodes and validates one network.
func (p *parser) network(name string, v any) *network {
	n := &network{object: networkObject(name), cfg: &model.NetworkConfig{Name: name}}
	if msg := checkNetworkName(name); msg != "" {
		p.errorf(n.object, "", "%s", msg)
	}
	if v == nil {
		return n // a network with neither endpoints nor gateways
	}
	m, ok := v.(map[string]any)
	if !ok {
		p.errorf(n.object, "", "must be a mapping with endpoints and/or gateways, got %s", describe(v))
		return n
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "endpoints":
			p.endpoints(n, m[k])
		case "gateways":
			p.gateways(n, m[k])
		default:
			p.errorf(n.object, k, "unknown field %q; a network has only endpoints and gateways", k)
		}
	}
	return n
}

// list checks that v (the value of field) is a list; null is an empty list.
func (p *parser) list(object, field string, v any) []any {
	if v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		p.errorf(object, field, "must be a list, got %s", describe(v))
	}
	return l
}

func (p *parser) endpoints(n *network, v any) {
	seenReg := map[model.ClusterID]string{}
	seenCIDR := map[netip.Prefix]string{}
	for i, e := range p.list(n.object, "endpoints", v) {
		field := fmt.Sprintf("endpoints[%d]", i)
		ep, ok := p.decodeEndpoint(n.object, field, e)
		if ep == nil {
			continue
		}
		switch ne := ep.GetNe().(type) {
		case *v1alpha1.Network_NetworkEndpoints_FromRegistry:
			f := field + ".fromRegistry"
			if msg := checkClusterID(ne.FromRegistry); msg != "" {
				p.errorf(n.object, f, "%s", msg)
				continue
			}
			id := model.ClusterID(ne.FromRegistry)
			if prev, dup := seenReg[id]; dup {
				p.warnf(n.object, f, "cluster %q is already listed at %s; the duplicate is ignored", id, prev)
				continue
			}
			seenReg[id] = f
			if ok {
				n.cfg.Registries = append(n.cfg.Registries, id)
				n.regField = append(n.regField, f)
			}
		case *v1alpha1.Network_NetworkEndpoints_FromCidr:
			f := field + ".fromCidr"
			prefix, msg := parseCIDR(ne.FromCidr)
			if msg != "" {
				p.errorf(n.object, f, "%s", msg)
				continue
			}
			if prev, dup := seenCIDR[prefix]; dup {
				p.warnf(n.object, f, "CIDR %s is already listed at %s; the duplicate is ignored", prefix, prev)
				continue
			}
			seenCIDR[prefix] = f
			if ok {
				n.cfg.CIDRs = append(n.cfg.CIDRs, prefix)
			}
		}
	}
}

// endpointFields maps the accepted spellings (protojson accepts both the JSON
// and the proto name) of endpoint fields to their JSON names.
var endpointFields = map[string]string{
	"fromRegistry": "fromRegistry", "from_registry": "fromRegistry",
	"fromCidr": "fromCidr", "from_cidr": "fromCidr",
}

// decodeEndpoint checks an endpoints entry's shape and decodes it into the
// Istio type. ok is false if the entry has errors; ep is then still set when
// its registry or CIDR can be validated further.
func (p *parser) decodeEndpoint(object, field string, v any) (ep *v1alpha1.Network_NetworkEndpoints, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap {
		p.errorf(object, field, "must be a mapping with fromRegistry or fromCidr, got %s", describe(v))
		return nil, false
	}
	clean, ok := p.stringFields(object, field, m, endpointFields, "fromRegistry or fromCidr")
	switch len(clean) {
	case 0:
		if ok { // else an unknown field (likely a misspelling) was reported
			p.errorf(object, field, "must set one of fromRegistry or fromCidr; neither is set")
		}
		return nil, false
	case 2:
		p.errorf(object, field, "sets both fromRegistry %q and fromCidr %q; set exactly one", clean["fromRegistry"], clean["fromCidr"])
		return nil, false
	}
	ep = &v1alpha1.Network_NetworkEndpoints{}
	if !p.protoDecode(object, field, clean, ep) {
		return nil, false
	}
	return ep, ok
}

func (p *parser) gateways(n *network, v any) {
	seen := map[model.GatewaySpec]string{}
	for i, g := range p.list(n.object, "gateways", v) {
		field := fmt.Sprintf("gateways[%d]", i)
		gw, ok := p.decodeGateway(n.object, field, g)
		if gw == nil {
			continue
		}
		spec := model.GatewaySpec{Port: gw.GetPort()}
		placeholder := false
		switch g := gw.GetGw().(type) {
		case *v1alpha1.Network_IstioNetworkGateway_Address:
			f := field + ".address"
			addr, isPlaceholder, msg := checkAddress(g.Address)
			if msg != "" {
				p.errorf(n.object, f, "%s", msg)
				ok = false
			}
			spec.Address, placeholder = addr, isPlaceholder
		case *v1alpha1.Network_IstioNetworkGateway_RegistryServiceName:
			f := field + ".registryServiceName"
			if msg := dnsNameError(g.RegistryServiceName); msg != "" {
				p.errorf(n.object, f, "invalid registryServiceName %q: must be the fully qualified DNS name of a Service, e.g. istio-eastwestgateway.istio-system.svc.cluster.local: %s", g.RegistryServiceName, msg)
				ok = false
			}
			spec.RegistryServiceName = g.RegistryServiceName
		}
		if !ok {
			continue
		}
		if placeholder {
			p.warnf(n.object, field+".address", "placeholder address %s means the network has no gateway yet; this gateway is ignored", spec.Address)
			continue
		}
		if prev, dup := seen[spec]; dup {
			p.warnf(n.object, field, "same gateway as %s; the duplicate is ignored", prev)
			continue
		}
		seen[spec] = field
		n.cfg.Gateways = append(n.cfg.Gateways, spec)
	}
}

// gatewayFields maps the accepted spellings of gateway string fields to their
// JSON names. port is handled separately.
var gatewayFields = map[string]string{
	"address":             "address",
	"registryServiceName": "registryServiceName", "registry_service_name": "registryServiceName",
	"locality": "locality",
}

// decodeGateway checks a gateways entry's shape and decodes it into the Istio
// type. ok is false if the entry has errors; gw is then still set when its
// address or registryServiceName can be validated further.
//
// locality is accepted and ignored: Horizon takes a gateway's locality from
// the endpoints it stands for.
func (p *parser) decodeGateway(object, field string, v any) (gw *v1alpha1.Network_IstioNetworkGateway, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap {
		p.errorf(object, field, "must be a mapping with address or registryServiceName, and port, got %s", describe(v))
		return nil, false
	}
	rest := maps.Clone(m)
	portVal, hasPort := rest["port"]
	delete(rest, "port")
	clean, ok := p.stringFields(object, field, rest, gatewayFields, "address, registryServiceName, port or locality")

	_, hasAddr := clean["address"]
	_, hasRSN := clean["registryServiceName"]
	switch {
	case hasAddr && hasRSN:
		p.errorf(object, field, "sets both address %q and registryServiceName %q; set exactly one", clean["address"], clean["registryServiceName"])
		delete(clean, "address")
		delete(clean, "registryServiceName")
		ok = false
	case !hasAddr && !hasRSN:
		if ok { // else an unknown field (likely a misspelling) was reported
			p.errorf(object, field, "must set one of address or registryServiceName; neither is set")
		}
		ok = false
	}

	if !hasPort || portVal == nil {
		p.errorf(object, field+".port", "port is required (1-65535)")
		ok = false
	} else if port, msg := parsePort(portVal); msg != "" {
		p.errorf(object, field+".port", "%s", msg)
		ok = false
	} else {
		clean["port"] = port
	}

	gw = &v1alpha1.Network_IstioNetworkGateway{}
	if !p.protoDecode(object, field, clean, gw) {
		return nil, false
	}
	return gw, ok
}

// stringFields checks that every key of m is one of fields (a spelling to
// JSON name map) and holds a string, reporting the others; null values count
// as unset. It returns the string values by JSON name and whether all was
// well.
func (p *parser) stringFields(object, field string, m map[string]any, fields map[string]string, expected string) (map[string]any, bool) {
	clean := map[string]any{}
	ok := true
	for _, k := range slices.Sorted(maps.Keys(m)) {
		f := field + "." + k
		name, known := fields[k]
		if !known {
			p.errorf(object, f, "unknown field %q; expected %s", k, expected)
			ok = false
			continue
		}
		v := m[k]
		if v == nil {
			continue
		}
		s, isString := v.(string)
		if !isString {
			p.errorf(object, f, "must be a string, got %s (quote it)", describe(v))
			ok = false
			continue
		}
		if _, dup := clean[name]; dup {
			p.errorf(object, f, "%s is set twice (in its camelCase and snake_case spellings)", name)
			ok = false
			continue
		}
		clean[name] = s
	}
	return clean, ok
}

// protoDecode decodes clean (already shape-checked, keyed by JSON names) into
// msg with protojson, rejecting unknown fields. A failure here would be a bug
// in the shape checks, but it is reported rather than trusted away.
func (p *parser) protoDecode(object, field string, clean map[string]any, msg proto.Message) bool {
	j, err := json.Marshal(clean)
	if err == nil {
		err = protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(j, msg)
	}
	if err != nil {
		p.errorf(object, field, "cannot decode: %v", err)
		return false
	}
	return true
}

// parsePort accepts a JSON number or a numeric string (as protojson does for
// uint32 fields) holding an integer in 1..65535.
func parsePort(v any) (uint32, string) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = v
	default:
		return 0, fmt.Sprintf("port must be a number, got %s", describe(v))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		switch {
		case ferr != nil && !isRangeErr(ferr):
			return 0, fmt.Sprintf("port must be an integer, got %q", s)
		case f != math.Trunc(f):
			return 0, fmt.Sprintf("port must be an integer, got %s", s)
		case f < 1 || f > 65535:
			return 0, fmt.Sprintf("port out of range (1-65535): %s", s)
		}
		n = int64(f)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Sprintf("port out of range (1-65535): %s", s)
	}
	return uint32(n), ""
}

func isRangeErr(err error) bool {
	ne, ok := errors.AsType[*strconv.NumError](err)
	return ok && errors.Is(ne.Err, strconv.ErrRange)
}
