package model

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// MTLSMode is how a workload's sidecar accepts inbound connections, as
// Istio's PeerAuthentication says it.
type MTLSMode string

const (
	// MTLSUnset inherits the mode of the next level up (port → workload →
	// namespace → mesh → the install default).
	MTLSUnset MTLSMode = ""
	// MTLSDisable accepts plaintext only; mesh clients send plaintext too.
	MTLSDisable MTLSMode = "DISABLE"
	// MTLSPermissive accepts mesh mTLS and anything else (plaintext, or the
	// application's own TLS) on the same port.
	MTLSPermissive MTLSMode = "PERMISSIVE"
	// MTLSStrict accepts mesh mTLS only.
	MTLSStrict MTLSMode = "STRICT"
)

// DefaultMTLSMode is Istio's default when no PeerAuthentication applies.
const DefaultMTLSMode = MTLSPermissive

// ParseMTLSMode reads a mode as Istio spells it (UNSET included, "" is
// UNSET too); anything else is an error.
func ParseMTLSMode(s string) (MTLSMode, error) {
	switch m := MTLSMode(s); m {
	case MTLSDisable, MTLSPermissive, MTLSStrict:
		return m, nil
	case MTLSUnset, "UNSET":
		return MTLSUnset, nil
	}
	return MTLSUnset, fmt.Errorf("%q is not UNSET, DISABLE, PERMISSIVE or STRICT", s)
}

// ValidateDefaultMTLSMode accepts what an install may set as the mesh's
// default: PERMISSIVE (Istio's) or STRICT. DISABLE mesh-wide is a
// PeerAuthentication's to say, not a default.
func ValidateDefaultMTLSMode(s string) error {
	switch MTLSMode(s) {
	case MTLSPermissive, MTLSStrict:
		return nil
	}
	return fmt.Errorf("%q is neither %s nor %s", s, MTLSPermissive, MTLSStrict)
}

// PeerAuthentication is an Istio PeerAuthentication, validated.
type PeerAuthentication struct {
	Name      string
	Namespace string
	// Created orders policies of one level: the oldest wins (then the name).
	Created time.Time
	// Selector is spec.selector.matchLabels; empty: the whole namespace
	// (or, in the root namespace, the whole mesh).
	Selector map[string]string
	Mode     MTLSMode
	// PortLevel overrides Mode per workload port (the container port, not
	// the Service port); only with a Selector.
	PortLevel map[uint32]MTLSMode
}

// PeerAuthentications are the mesh's PeerAuthentications and what applies
// when none does.
type PeerAuthentications struct {
	// RootNamespace holds the mesh-wide policies (Istio's root namespace,
	// the control plane's).
	RootNamespace string
	// Default is the install default (DefaultMTLSMode when unset).
	Default  MTLSMode
	Policies []*PeerAuthentication
}

// PolicyMTLS is the mTLS resolution of one workload: its mode and the
// modes of the ports its workload policy names.
type PolicyMTLS struct {
	Mode    MTLSMode
	PerPort map[uint32]MTLSMode
}

// Port is the mode of one workload port.
func (p PolicyMTLS) Port(port uint32) MTLSMode {
	if m, ok := p.PerPort[port]; ok {
		return m
	}
	return p.Mode
}

// ForWorkload resolves, as Istio does, the mTLS mode of a workload in
// namespace with labels: the workload's policy (selector matching, in its
// namespace; the oldest wins) over its namespace's policy (no selector) over
// the mesh policy (no selector, in the root namespace) over the install
// default; UNSET inherits from the level above, and a port-level UNSET from
// the workload level. A selector policy in the root namespace is ignored
// (Istio: such policies are ignored when deployed in the root namespace).
// A nil receiver resolves to DefaultMTLSMode.
func (pa *PeerAuthentications) ForWorkload(namespace string, labels map[string]string) PolicyMTLS {
	out := PolicyMTLS{Mode: DefaultMTLSMode}
	if pa == nil {
		return out
	}
	if pa.Default != MTLSUnset {
		out.Mode = pa.Default
	}
	var mesh, ns, wl *PeerAuthentication
	for _, p := range pa.Policies {
		switch {
		case len(p.Selector) == 0 && p.Namespace == pa.RootNamespace:
			mesh = older(mesh, p)
		case len(p.Selector) == 0 && p.Namespace == namespace:
			ns = older(ns, p)
		case len(p.Selector) > 0 && p.Namespace == namespace && p.Namespace != pa.RootNamespace && selects(p.Selector, labels):
			wl = older(wl, p)
		}
	}
	for _, p := range []*PeerAuthentication{mesh, ns, wl} {
		if p != nil && p.Mode != MTLSUnset {
			out.Mode = p.Mode
		}
	}
	if wl != nil && len(wl.PortLevel) > 0 {
		out.PerPort = make(map[uint32]MTLSMode, len(wl.PortLevel))
		for port, m := range wl.PortLevel {
			if m == MTLSUnset {
				m = out.Mode
			}
			out.PerPort[port] = m
		}
	}
	return out
}

// MayDisable reports whether any workload port can resolve to DISABLE: a
// push then checks every endpoint; otherwise none needs to be.
func (pa *PeerAuthentications) MayDisable() bool {
	if pa == nil {
		return false
	}
	if pa.Default == MTLSDisable {
		return true
	}
	for _, p := range pa.Policies {
		if p.Mode == MTLSDisable {
			return true
		}
		for _, m := range p.PortLevel {
			if m == MTLSDisable {
				return true
			}
		}
	}
	return false
}

// older returns the one of a and b Istio picks among policies of one
// level: the oldest by creation time, then by name.
func older(a, b *PeerAuthentication) *PeerAuthentication {
	switch {
	case a == nil:
		return b
	case b.Created.Before(a.Created):
		return b
	case a.Created.Before(b.Created):
		return a
	case strings.Compare(b.Namespace+"/"+b.Name, a.Namespace+"/"+a.Name) < 0:
		return b
	}
	return a
}

// selects reports whether every selector label is among labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// Equal reports whether a and b resolve every workload alike (the same
// policies, in any order, the same default and root namespace): a
// change that is not one need not rebuild anything.
func (pa *PeerAuthentications) Equal(o *PeerAuthentications) bool {
	if pa == nil || o == nil {
		return pa == o
	}
	if pa.RootNamespace != o.RootNamespace || pa.Default != o.Default || len(pa.Policies) != len(o.Policies) {
		return false
	}
	key := func(p *PeerAuthentication) string { return p.Namespace + "/" + p.Name }
	sorted := func(ps []*PeerAuthentication) []*PeerAuthentication {
		out := slices.Clone(ps)
		slices.SortFunc(out, func(a, b *PeerAuthentication) int { return strings.Compare(key(a), key(b)) })
		return out
	}
	return slices.EqualFunc(sorted(pa.Policies), sorted(o.Policies), func(a, b *PeerAuthentication) bool {
		return key(a) == key(b) && a.Created.Equal(b.Created) && a.Mode == b.Mode &&
			maps.Equal(a.Selector, b.Selector) && maps.Equal(a.PortLevel, b.PortLevel)
	})
}
