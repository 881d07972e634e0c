package model

import (
	"strings"
	"testing"
)

func TestResolvePolicies(t *testing.T) {
	pool := TrafficPolicy{Pool: &ConnectionPool{MaxConnections: 1}}.Seal()
	loc := TrafficPolicy{Locality: &LocalityLB{}}.Seal()
	off := TrafficPolicy{LocalityOff: true}.Seal()
	rules := []*DestinationRule{
		{Name: "short", Namespace: "a", Host: "web", Policy: loc},                     // web.a.svc.cluster.local
		{Name: "fqdn", Namespace: "b", Host: "Web.A.svc.cluster.local", Policy: pool}, // the same host from b: a's own wins
		{Name: "other", Namespace: "a", Host: "db", Policy: pool},                     // pool only: the mesh default's locality
		{Name: "off", Namespace: "a", Host: "cache.a.svc.cluster.local", Policy: off}, // keeps the default off
		{Name: "dotted", Namespace: "a", Host: "api.b", Policy: loc},                  // taken as written, as Istio does
	}
	var diags Diagnostics
	def := DefaultLocalityPolicy()
	got := resolvePolicies(rules, def, "cluster.local", &diags)
	m := &Mesh{policies: got, defaultPolicy: def}
	web := m.Policy("web.a.svc.cluster.local")
	if web == nil || web.Pool != nil || !web.LocalityAware() || web.Outlier == nil {
		t.Errorf("web: %+v, want a's rule (locality) with Istio's outlier defaults", web)
	}
	if len(diags) != 1 || !strings.Contains(diags[0].String(), "DestinationRule b/fqdn") {
		t.Errorf("diagnostics %v, want one warning for b/fqdn", diags)
	}
	if db := m.Policy("db.a.svc.cluster.local"); db.Pool == nil || !db.LocalityAware() {
		t.Errorf("db: %+v, want its pool and the mesh default's locality", db)
	}
	if c := m.Policy("cache.a.svc.cluster.local"); c.LocalityAware() || c.Outlier != nil {
		t.Errorf("cache: %+v, want locality off", c)
	}
	if m.Policy("api.b") == nil || m.Policy("none.a.svc.cluster.local") != def {
		t.Error("a dotted host is taken as written; a service without a rule gets the default")
	}
	if web.Key() == m.Policy("db.a.svc.cluster.local").Key() {
		t.Error("different policies share a key")
	}
}
