// Package meshnetworks reads Istio's meshNetworks configuration (YAML or JSON)
// into a validated *model.MeshNetworks.
//
// It accepts, detecting the form automatically:
//
//  1. the ConfigMap data form: `networks: {NAME: {endpoints: [...], gateways: [...]}}`;
//  2. the same under a `meshNetworks` key: `meshNetworks: {networks: {...}}`;
//  3. the Helm values form, with network names directly under `meshNetworks`
//     or `global.meshNetworks` (other Helm values beside them are ignored);
//  4. a whole Kubernetes ConfigMap whose data.meshNetworks string holds one of
//     the forms above.
//
// Every entry is decoded into the istio.io/api mesh/v1alpha1 types and then
// validated. Problems are reported as model.Diagnostics; when there is any
// error the result is nil, so the caller can keep its last good config.
//
// A gateway's locality field is accepted and ignored: Horizon takes a
// gateway's locality from the endpoints it stands for.
package meshnetworks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/model"
)

// ParseFile reads the file at path and parses it with Parse, using path as the
// diagnostics' origin.
func ParseFile(path string) (*model.MeshNetworks, model.Diagnostics) {
	data, err := os.ReadFile(path)
	if err != nil {
		var ds model.Diagnostics
		ds.AddError(path, "", "", fmt.Sprintf("cannot read meshNetworks file: %v", err))
		return nil, ds
	}
	return Parse(path, data)
}

// Parse parses meshNetworks from data (YAML or JSON, in any of the forms the
// package comment lists). origin, e.g. a file path or "ConfigMap
// istio-system/istio key meshNetworks", becomes the diagnostics' File field.
//
// Empty input, or an empty set of networks, is valid and yields zero
// networks. If the diagnostics hold any error the result is nil; warnings come
// with a valid result. Networks are sorted by name; within a network the input
// order of registries, CIDRs and gateways is kept.
func Parse(origin string, data []byte) (*model.MeshNetworks, model.Diagnostics) {
	p := &parser{origin: origin}
	raw := p.document(data, true)

	var nets []*network
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		nets = append(nets, p.network(name, raw[name]))
	}
	p.dropSharedRegistries(nets)

	if len(p.ds.Errors()) > 0 {
		return nil, p.ds
	}
	out := &model.MeshNetworks{}
	for _, n := range nets {
		out.Networks = append(out.Networks, n.cfg)
	}
	return out, p.ds
}

// parser collects diagnostics for one input.
type parser struct {
	origin string
	ds     model.Diagnostics
}

func (p *parser) errorf(object, field, format string, args ...any) {
	p.ds.AddError(p.origin, object, field, fmt.Sprintf(format, args...))
}

func (p *parser) warnf(object, field, format string, args ...any) {
	p.ds.AddWarning(p.origin, object, field, fmt.Sprintf(format, args...))
}

// document decodes data and returns its networks by name (raw, undecoded
// values). It returns nil after reporting an error, and also for input
// without networks.
func (p *parser) document(data []byte, allowConfigMap bool) map[string]any {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	// Strict: duplicate keys (e.g. a network listed twice) are errors rather
	// than silently keeping the last one.
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		p.errorf("", "", "cannot parse as YAML or JSON: %v", err)
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber() // keep ports exact
	var tree any
	if err := dec.Decode(&tree); err != nil {
		p.errorf("", "", "cannot parse as YAML or JSON: %v", err)
		return nil
	}
	return p.topLevel(tree, allowConfigMap)
}

const expectedShapes = `expected "networks" (ConfigMap data form), "meshNetworks" (with "networks" under it, or network names directly under it as in Helm values), "global.meshNetworks" (Helm values), or a ConfigMap object ("kind: ConfigMap" with data.meshNetworks)`

// topLevel detects the input's form and returns its networks.
func (p *parser) topLevel(tree any, allowConfigMap bool) map[string]any {
	if tree == nil {
		return nil
	}
	top, ok := tree.(map[string]any)
	if !ok {
		p.errorf("", "", "unrecognised meshNetworks config: the top level is %s, not a mapping; %s", describe(tree), expectedShapes)
		return nil
	}
	if len(top) == 0 {
		return nil
	}
	if _, ok := top["kind"]; ok {
		return p.configMap(top, allowConfigMap)
	}
	_, hasNetworks := top["networks"]
	_, hasMeshNetworks := top["meshNetworks"]
	switch {
	case hasNetworks && hasMeshNetworks:
		p.errorf("", "", `both "networks" and "meshNetworks" are set at the top level; use one of them`)
		return nil
	case hasNetworks:
		p.unknownKeys(top, "", "networks")
		return p.networkMap(top["networks"], "networks")
	case hasMeshNetworks:
		p.unknownKeys(top, "", "meshNetworks")
		return p.meshNetworksValue(top["meshNetworks"], "meshNetworks")
	}
	if g, ok := top["global"]; ok {
		// A Helm values file: read global.meshNetworks, ignore the other values.
		global, ok := g.(map[string]any)
		if !ok {
			p.errorf("", "global", "must be a mapping holding meshNetworks, got %s", describe(g))
			return nil
		}
		mn, ok := global["meshNetworks"]
		if !ok {
			p.errorf("", "global", "Helm values have no global.meshNetworks (global has keys: %s)", keyList(global))
			return nil
		}
		return p.meshNetworksValue(mn, "global.meshNetworks")
	}
	p.errorf("", "", "unrecognised meshNetworks config with top-level keys %s; %s", keyList(top), expectedShapes)
	return nil
}

// meshNetworksValue handles the value of a meshNetworks key: either
// {networks: {...}} or, Helm style, network names directly.
func (p *parser) meshNetworksValue(v any, field string) map[string]any {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		p.errorf("", field, "must be a mapping, got %s", describe(v))
		return nil
	}
	if n, ok := m["networks"]; ok {
		if _, isMap := n.(map[string]any); isMap || n == nil {
			p.unknownKeys(m, field, "networks")
			return p.networkMap(n, field+".networks")
		}
	}
	return m
}

// networkMap checks that v maps network names to networks.
func (p *parser) networkMap(v any, field string) map[string]any {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		p.errorf("", field, "must be a mapping from network name to network, got %s", describe(v))
		return nil
	}
	return m
}

// configMap handles a whole Kubernetes ConfigMap object: the meshNetworks
// config is the string in data.meshNetworks.
func (p *parser) configMap(top map[string]any, allowConfigMap bool) map[string]any {
	if kind, _ := top["kind"].(string); kind != "ConfigMap" {
		p.errorf("", "kind", "unsupported kind %s; %s", describe(top["kind"]), expectedShapes)
		return nil
	}
	if !allowConfigMap {
		p.errorf("", "", "data.meshNetworks holds another ConfigMap; it must hold the meshNetworks config itself")
		return nil
	}
	cm := "ConfigMap"
	if meta, ok := top["metadata"].(map[string]any); ok {
		name, _ := meta["name"].(string)
		ns, _ := meta["namespace"].(string)
		switch {
		case ns != "" && name != "":
			cm += " " + ns + "/" + name
		case name != "":
			cm += " " + name
		}
	}
	dv, ok := top["data"]
	if !ok || dv == nil {
		p.errorf(cm, "data.meshNetworks", "the ConfigMap has no data, so no meshNetworks key")
		return nil
	}
	data, ok := dv.(map[string]any)
	if !ok {
		p.errorf(cm, "data", "must be a mapping, got %s", describe(dv))
		return nil
	}
	s, ok := data["meshNetworks"]
	if !ok {
		p.errorf(cm, "data.meshNetworks", "the ConfigMap has no meshNetworks key (data has keys: %s)", keyList(data))
		return nil
	}
	str, ok := s.(string)
	if !ok {
		p.errorf(cm, "data.meshNetworks", "must be a string holding the meshNetworks YAML, got %s", describe(s))
		return nil
	}
	if p.origin != "" {
		p.origin += ": "
	}
	p.origin += cm + " data.meshNetworks"
	return p.document([]byte(str), false)
}

// unknownKeys reports every key of m other than allowed.
func (p *parser) unknownKeys(m map[string]any, parent, allowed string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == allowed {
			continue
		}
		field := k
		if parent != "" {
			field = parent + "." + k
		}
		p.errorf("", field, "unknown field %q; only %q is expected here", k, allowed)
	}
}

// describe names a decoded JSON value's type (and value, for scalars) for
// error messages.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + v.String()
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// keyList renders m's keys sorted, for messages.
func keyList(m map[string]any) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%q", k)
	}
	return strings.Join(keys, ", ")
}
