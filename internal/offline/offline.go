// Package offline assembles a mesh from files: cluster manifest directories,
// a meshNetworks file and PeerAuthentications. `horizon translate` and the golden tests use it; the
// live server assembles the same model from informers instead.
package offline

import (
	"context"
	"fmt"

	"github.com/horizonmesh/horizon/internal/dnscache"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/istio"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/source/meshnetworks"
)

// Options say which files make up the mesh.
type Options struct {
	Clusters         []manifest.ClusterSource
	MeshNetworksFile string // optional
	DomainSuffix     string // default cluster.local
	SystemNamespace  string // default istio-system
	Resolver         model.Resolver
	// DestinationRulesFile (optional) holds Istio DestinationRules.
	DestinationRulesFile string
	// LocalityFailover is the mesh default (model.DefaultLocalityPolicy).
	LocalityFailover bool
	// PeerAuthenticationsFile holds Istio PeerAuthentications (optional).
	PeerAuthenticationsFile string
	// RootNamespace holds the mesh-wide PeerAuthentications (discovery's
	// --namespace); default istio-system.
	RootNamespace string
	// DefaultMTLSMode applies where no PeerAuthentication does (discovery's
	// --default-mtls-mode); default model.DefaultMTLSMode.
	DefaultMTLSMode model.MTLSMode
}

// Load reads every input and builds the mesh. All problems found are
// returned, not only the first; the mesh is nil when any is an error.
func Load(ctx context.Context, opts Options) (*model.Mesh, model.Diagnostics) {
	var diags model.Diagnostics
	if len(opts.Clusters) == 0 {
		diags.AddError("", "", "--cluster", "at least one cluster (ID=PATH) is required")
	}
	kopts := kube.Options{DomainSuffix: opts.DomainSuffix, SystemNamespace: opts.SystemNamespace}
	seen := map[model.ClusterID]string{}
	var snaps []*model.ClusterSnapshot
	for _, c := range opts.Clusters {
		if prev, dup := seen[c.ID]; dup {
			diags.AddError("", fmt.Sprintf("cluster %q", c.ID), "--cluster",
				fmt.Sprintf("duplicate cluster ID (paths %s and %s)", prev, c.Path))
			continue
		}
		seen[c.ID] = c.Path
		store, d := manifest.Load(c.Path)
		diags = append(diags, d...)
		snap, d := kube.Convert(c.ID, store, kopts)
		diags = append(diags, d...)
		snaps = append(snaps, snap)
	}
	var nets *model.MeshNetworks
	if opts.MeshNetworksFile != "" {
		var d model.Diagnostics
		nets, d = meshnetworks.ParseFile(opts.MeshNetworksFile)
		diags = append(diags, d...)
	}
	var rules []*model.DestinationRule
	if opts.DestinationRulesFile != "" {
		var d model.Diagnostics
		rules, d = istio.LoadDestinationRulesFile(opts.DestinationRulesFile)
		diags = append(diags, d...)
	}
	pa := &model.PeerAuthentications{RootNamespace: opts.RootNamespace, Default: opts.DefaultMTLSMode}
	if pa.RootNamespace == "" {
		pa.RootNamespace = "istio-system"
	}
	if opts.PeerAuthenticationsFile != "" {
		var d model.Diagnostics
		pa.Policies, d = istio.LoadPeerAuthenticationsFile(opts.PeerAuthenticationsFile)
		diags = append(diags, d...)
	}
	if diags.Err() != nil {
		return nil, diags
	}
	// Build is pure: a first build says which gateway names it needs; they
	// are resolved (each bounded) and the mesh built again with the answers.
	in := model.BuildInput{Clusters: snaps, Networks: nets, DomainSuffix: opts.DomainSuffix, DestinationRules: rules, PeerAuth: pa}
	if opts.LocalityFailover {
		in.DefaultPolicy = model.DefaultLocalityPolicy()
	}
	m, d := model.Build(in)
	if names := m.GatewayNames(); len(names) > 0 && opts.Resolver != nil {
		in.Names = dnscache.ResolveAll(ctx, opts.Resolver, names)
		m, d = model.Build(in)
	}
	diags = append(diags, d...)
	if diags.Err() != nil {
		return nil, diags
	}
	return m, diags
}
