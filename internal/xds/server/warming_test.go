package server

import (
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Envoy keeps a cluster it receives again (changed) warming, the old one
// serving, until its load assignment arrives — also an unchanged one (xDS
// "resource warming"; otherwise only after initial_fetch_timeout, 15 s).
// So after a CDS response that changes clusters the proxy had, the
// stream sends those clusters' load assignments again, and only those; a
// first CDS response, or one for an EDS stream not yet answered, sends
// nothing more. State of the world and delta alike.
func TestChangedClustersGetTheirLoadAssignmentsAgain(t *testing.T) {
	w := newVCWorld(0)
	cds, eds := cdsView("n1"), edsView("n1")
	w.set(cds, map[string]types.Resource{"a": cluster("a", time.Second), "b": cluster("b", time.Second)})
	w.set(eds, map[string]types.Resource{"a": cla("a", "10.0.0.1"), "b": cla("b", "10.0.0.2")})
	env := newADS(t, w)
	s, d := env.sotw(t, "p1", "n1"), env.delta(t, "p2", "n1")
	s.sub(t, resource.ClusterType)
	s.recv(t, resource.ClusterType)
	s.ack(t, resource.ClusterType)
	s.sub(t, resource.EndpointType, "a", "b")
	first := s.recv(t, resource.EndpointType)
	s.ack(t, resource.EndpointType)
	s.mustBlock(t)
	d.sub(t, resource.ClusterType, nil, nil)
	d.recv(t, resource.ClusterType)
	d.ack(t, resource.ClusterType)
	d.sub(t, resource.EndpointType, []string{"a", "b"}, nil)
	d.recv(t, resource.EndpointType)
	d.ack(t, resource.EndpointType)
	d.mustBlock(t)

	// Cluster a changes (as a DestinationRule's outlier detection would),
	// its endpoints do not.
	w.set(cds, map[string]types.Resource{"a": cluster("a", 2*time.Second), "b": cluster("b", time.Second)})
	if _, err := w.vc.Update(cds, w.contents[cds]); err != nil {
		t.Fatal(err)
	}
	s.recv(t, resource.ClusterType)
	r := s.recv(t, resource.EndpointType)
	if got := names(sotwContent(t, r)); !slices.Equal(got, []string{"a"}) || r.GetVersionInfo() != first.GetVersionInfo() {
		t.Errorf("state of the world: after cluster a changed, load assignments %v at %q; want a's again, at %q", got, r.GetVersionInfo(), first.GetVersionInfo())
	}
	s.ack(t, resource.ClusterType)
	s.ack(t, resource.EndpointType)
	s.mustBlock(t)
	d.recv(t, resource.ClusterType)
	if dr := d.recv(t, resource.EndpointType); !slices.Equal(dr.names, []string{"a"}) || len(dr.removed) != 0 {
		t.Errorf("delta: after cluster a changed, load assignments %v (removed %v); want a's again", dr.names, dr.removed)
	}
	d.ack(t, resource.ClusterType)
	d.ack(t, resource.EndpointType)
	d.mustBlock(t)
}
