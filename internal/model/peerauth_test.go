package model

import (
	"maps"
	"net/netip"
	"testing"
	"time"
)

func TestParseMTLSMode(t *testing.T) {
	for in, want := range map[string]MTLSMode{"": MTLSUnset, "UNSET": MTLSUnset, "DISABLE": MTLSDisable,
		"PERMISSIVE": MTLSPermissive, "STRICT": MTLSStrict} {
		if got, err := ParseMTLSMode(in); err != nil || got != want {
			t.Errorf("ParseMTLSMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"strict", "ISTIO_MUTUAL", "X"} {
		if _, err := ParseMTLSMode(bad); err == nil {
			t.Errorf("ParseMTLSMode(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"PERMISSIVE", "STRICT"} {
		if err := ValidateDefaultMTLSMode(ok); err != nil {
			t.Errorf("default %s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "DISABLE", "UNSET", "strict"} {
		if err := ValidateDefaultMTLSMode(bad); err == nil {
			t.Errorf("default %q accepted", bad)
		}
	}
}

// ForWorkload follows Istio's resolution: workload > namespace > mesh >
// install default; the oldest policy of a level wins (then the name);
// UNSET inherits; port-level modes come only from the workload policy.
func TestForWorkload(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	pa := func(ns, name string, age int, sel map[string]string, mode MTLSMode, ports map[uint32]MTLSMode) *PeerAuthentication {
		return &PeerAuthentication{Namespace: ns, Name: name, Created: t0.Add(time.Duration(age) * time.Hour),
			Selector: sel, Mode: mode, PortLevel: ports}
	}
	app := map[string]string{"app": "web"}
	type want struct {
		mode  MTLSMode
		ports map[uint32]MTLSMode
	}
	for _, tc := range []struct {
		name     string
		def      MTLSMode
		policies []*PeerAuthentication
		ns       string
		labels   map[string]string
		want     want
	}{
		{"nothing: Istio's PERMISSIVE", "", nil, "ns", app, want{MTLSPermissive, nil}},
		{"install default STRICT", MTLSStrict, nil, "ns", app, want{MTLSStrict, nil}},
		{"mesh over default", MTLSPermissive, []*PeerAuthentication{pa("istio-system", "default", 0, nil, MTLSStrict, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"mesh UNSET inherits the default", MTLSStrict, []*PeerAuthentication{pa("istio-system", "default", 0, nil, MTLSUnset, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"namespace over mesh", "", []*PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil), pa("ns", "default", 0, nil, MTLSPermissive, nil)},
			"ns", app, want{MTLSPermissive, nil}},
		{"another namespace's policy does not apply", "", []*PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil), pa("other", "default", 0, nil, MTLSDisable, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"namespace UNSET inherits mesh", "", []*PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil), pa("ns", "default", 0, nil, MTLSUnset, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"workload over namespace", "", []*PeerAuthentication{
			pa("ns", "default", 0, nil, MTLSStrict, nil), pa("ns", "web", 0, app, MTLSDisable, nil)},
			"ns", app, want{MTLSDisable, nil}},
		{"selector not matching", "", []*PeerAuthentication{
			pa("ns", "default", 0, nil, MTLSStrict, nil), pa("ns", "db", 0, map[string]string{"app": "db"}, MTLSDisable, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"selector needs every label", "", []*PeerAuthentication{
			pa("ns", "web", 0, map[string]string{"app": "web", "v": "1"}, MTLSDisable, nil)},
			"ns", app, want{MTLSPermissive, nil}},
		{"workload selector in the root namespace is ignored", "", []*PeerAuthentication{
			pa("istio-system", "web", 0, app, MTLSStrict, nil)},
			"ns", app, want{MTLSPermissive, nil}},
		{"oldest workload policy wins", "", []*PeerAuthentication{
			pa("ns", "b-new", 2, app, MTLSDisable, nil), pa("ns", "a-old", 1, app, MTLSStrict, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"same age: the first name wins", "", []*PeerAuthentication{
			pa("ns", "zz", 1, app, MTLSDisable, nil), pa("ns", "aa", 1, app, MTLSStrict, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"oldest namespace policy wins", "", []*PeerAuthentication{
			pa("ns", "new", 5, nil, MTLSDisable, nil), pa("ns", "old", 1, nil, MTLSStrict, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"oldest mesh policy wins", "", []*PeerAuthentication{
			pa("istio-system", "new", 5, nil, MTLSDisable, nil), pa("istio-system", "old", 1, nil, MTLSStrict, nil)},
			"ns", app, want{MTLSStrict, nil}},
		{"port level over workload", "", []*PeerAuthentication{
			pa("ns", "web", 0, app, MTLSStrict, map[uint32]MTLSMode{8080: MTLSDisable, 9090: MTLSPermissive})},
			"ns", app, want{MTLSStrict, map[uint32]MTLSMode{8080: MTLSDisable, 9090: MTLSPermissive}}},
		{"port UNSET inherits the workload level", "", []*PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
			pa("ns", "web", 0, app, MTLSUnset, map[uint32]MTLSMode{8080: MTLSDisable, 9090: MTLSUnset})},
			"ns", app, want{MTLSStrict, map[uint32]MTLSMode{8080: MTLSDisable, 9090: MTLSStrict}}},
		{"port level of a newer workload policy is not used", "", []*PeerAuthentication{
			pa("ns", "old", 0, app, MTLSStrict, nil),
			pa("ns", "new", 1, app, MTLSUnset, map[uint32]MTLSMode{8080: MTLSDisable})},
			"ns", app, want{MTLSStrict, nil}},
		{"workload in the root namespace: its namespace policy is the mesh's", "", []*PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil)},
			"istio-system", app, want{MTLSStrict, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := &PeerAuthentications{RootNamespace: "istio-system", Default: tc.def, Policies: tc.policies}
			got := all.ForWorkload(tc.ns, tc.labels)
			if got.Mode != tc.want.mode || !maps.Equal(got.PerPort, tc.want.ports) {
				t.Fatalf("ForWorkload = %+v, want %+v", got, tc.want)
			}
			for port, m := range tc.want.ports {
				if got.Port(port) != m {
					t.Errorf("Port(%d) = %s, want %s", port, got.Port(port), m)
				}
			}
			if got.Port(1) != tc.want.mode {
				t.Errorf("Port(1) = %s, want the workload mode %s", got.Port(1), tc.want.mode)
			}
		})
	}
	var none *PeerAuthentications
	if got := none.ForWorkload("ns", app); got.Mode != MTLSPermissive || none.MayDisable() {
		t.Errorf("nil PeerAuthentications: %+v, may disable %v", got, none.MayDisable())
	}
}

// Build clears MTLS where a workload port resolves to DISABLE, so EDS,
// gateways and SANs see one truth; WorkloadAt reports each port's mode.
func TestBuildAppliesPeerAuthentication(t *testing.T) {
	ep := func(port uint32) *Endpoint {
		return &Endpoint{Address: netip.MustParseAddr("10.0.0.1"), Port: port, Namespace: "ns", PodName: "p",
			ServiceAccount: "sa", Labels: map[string]string{"app": "web"}, MTLS: true}
	}
	c1 := &ClusterSnapshot{ID: "c1", Services: []*ClusterService{{Name: "web", Namespace: "ns",
		Ports:     []ServicePort{{Name: "http", Port: 80}, {Name: "tcp", Port: 90}},
		Endpoints: map[uint32][]*Endpoint{80: {ep(8080)}, 90: {ep(9090)}}}}}
	pa := &PeerAuthentications{RootNamespace: "istio-system", Default: MTLSStrict, Policies: []*PeerAuthentication{
		{Namespace: "ns", Name: "web", Selector: map[string]string{"app": "web"}, PortLevel: map[uint32]MTLSMode{9090: MTLSDisable}}}}
	m := mustBuild(t, BuildInput{Clusters: []*ClusterSnapshot{c1}, PeerAuth: pa})
	svc := m.Service("web.ns.svc.cluster.local")
	if !svc.Endpoints[80][0].MTLS || svc.Endpoints[90][0].MTLS {
		t.Fatalf("MTLS of 8080 %v (want true), of 9090 %v (want false: DISABLE)", svc.Endpoints[80][0].MTLS, svc.Endpoints[90][0].MTLS)
	}
	if !c1.Services[0].Endpoints[90][0].MTLS {
		t.Fatal("Build modified its input")
	}
	w, ok := m.WorkloadAt("c1", []netip.Addr{netip.MustParseAddr("10.0.0.1")}, "", "")
	if want := map[uint32]MTLSMode{8080: MTLSStrict, 9090: MTLSDisable}; !ok || !maps.Equal(w.Modes, want) {
		t.Fatalf("WorkloadAt modes %v (found %v), want %v", w.Modes, ok, want)
	}

	// Reuse: the same policies reuse the Service; others rebuild it.
	again, _ := Build(BuildInput{Clusters: []*ClusterSnapshot{c1}, PeerAuth: pa, Previous: m})
	if again.Service(svc.Hostname) != svc {
		t.Error("the same inputs and policies did not reuse the Service")
	}
	none, _ := Build(BuildInput{Clusters: []*ClusterSnapshot{c1}, Previous: m})
	if s := none.Service(svc.Hostname); s == svc || !s.Endpoints[90][0].MTLS {
		t.Error("without the policy the Service was reused or 9090 stayed plaintext")
	}
	if w, _ := none.WorkloadAt("c1", []netip.Addr{netip.MustParseAddr("10.0.0.1")}, "", ""); w.Modes[8080] != MTLSPermissive {
		t.Errorf("without policies: modes %v, want PERMISSIVE (Istio's default)", w.Modes)
	}
}

func TestPeerAuthenticationsEqual(t *testing.T) {
	a := &PeerAuthentication{Namespace: "ns", Name: "a", Mode: MTLSStrict}
	b := &PeerAuthentication{Namespace: "ns", Name: "b", Selector: map[string]string{"x": "y"}, PortLevel: map[uint32]MTLSMode{1: MTLSDisable}}
	b2 := *b
	b2.PortLevel = map[uint32]MTLSMode{1: MTLSStrict}
	x := &PeerAuthentications{RootNamespace: "r", Default: MTLSPermissive, Policies: []*PeerAuthentication{a, b}}
	if !x.Equal(&PeerAuthentications{RootNamespace: "r", Default: MTLSPermissive, Policies: []*PeerAuthentication{b, a}}) {
		t.Error("order matters")
	}
	if x.Equal(&PeerAuthentications{RootNamespace: "r", Default: MTLSPermissive, Policies: []*PeerAuthentication{a, &b2}}) {
		t.Error("a port-level change is not seen")
	}
	if x.Equal(&PeerAuthentications{RootNamespace: "r", Default: MTLSStrict, Policies: []*PeerAuthentication{a, b}}) {
		t.Error("a default change is not seen")
	}
}
