package meshnetworks

import (
	"fmt"
	"strings"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// recorder is a Sink that records every call in order ("applied ..." with
// the networks, "rejected ..." with the error) and hands each to the test.
type recorder struct{ *testkit.Events }

func newRecorder() recorder { return recorder{testkit.NewEvents()} }

func (r recorder) SetMeshNetworks(n *model.MeshNetworks, _ model.Diagnostics) {
	r.Add("applied " + describeNetworks(n))
}

func (r recorder) MeshNetworksRejected(err error) { r.Add("rejected " + err.Error()) }

// describe summarises networks as "name[registries] gw addr:port; ...".
func describeNetworks(n *model.MeshNetworks) string {
	if len(n.Networks) == 0 {
		return "(no networks)"
	}
	var parts []string
	for _, net := range n.Networks {
		s := fmt.Sprintf("%s%v", net.Name, net.Registries)
		for _, g := range net.Gateways {
			s += fmt.Sprintf(" gw %s:%d", g.Address, g.Port)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
