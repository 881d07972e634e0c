// The push: debounced changes rebuild the mesh and update the views.

package controlplane

import (
	"context"
	"fmt"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
)

func (cp *ControlPlane) changed() {
	cp.mu.Lock()
	if cp.pending.IsZero() {
		cp.pending = time.Now()
	}
	cp.mu.Unlock()
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// Run debounces changes into pushes until ctx ends.
func (cp *ControlPlane) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second) // readiness deadlines
	defer tick.Stop()
	if cp.names != nil {
		go cp.names.Run(ctx)
	}
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.kick:
			cp.mu.Lock()
			first := cp.pending
			cp.mu.Unlock()
			wait := min(cp.opts.Debounce, time.Until(first.Add(cp.opts.DebounceMax)))
			quiet = time.After(max(wait, 0))
		case <-quiet:
			quiet = nil
			cp.push(ctx)
		case <-tick.C:
			// A stale cluster reaching its TTL is no event: the tick
			// finds it (and any return a source did not announce).
			if !cp.ready.Load() || cp.staleDue() {
				cp.push(ctx)
			}
		}
	}
}

// push rebuilds the mesh from every synced cluster and updates the views.
func (cp *ControlPlane) push(ctx context.Context) {
	cp.mu.Lock()
	first := cp.pending
	cp.pending = time.Time{}
	var snaps []*model.ClusterSnapshot
	allLocal, allRemote := true, true
	now := cp.opts.Now()
	for _, c := range cp.clusters {
		synced := c.src.Synced()
		cp.metrics.clusterSynced.WithLabelValues(string(c.id)).Set(b2f(synced))
		if !synced {
			if c.local {
				allLocal = false
			} else if time.Since(c.added) < cp.opts.RemoteSyncTimeout {
				allRemote = false
			}
		}
		if cp.withdrawStale(c, now) {
			continue // stale past the TTL: out of the mesh, its state kept for its return
		}
		if !synced {
			if c.snap == nil {
				continue // never synced: nothing to serve yet
			}
		} else if c.dirty || c.snap == nil {
			snap, diags := c.src.Snapshot(c.id)
			// Every event re-converts the cluster: log a set of problems
			// when it changes, not on every push.
			if p := fmt.Sprint(diags.Errors()); p != c.problems {
				c.problems = p
				for _, d := range diags.Errors() {
					cp.log.Warn("object skipped", "cluster", c.id, "problem", d.String())
				}
			}
			c.snap, c.dirty = snap, false
		}
		snaps = append(snaps, c.snap)
	}
	nets, rules, peerAuth := cp.networks, cp.rules, cp.peerAuth
	gatesOK := true
	for _, ok := range cp.gates {
		gatesOK = gatesOK && ok()
	}
	cp.mu.Unlock()

	in := model.BuildInput{Clusters: snaps, Networks: nets, DomainSuffix: cp.opts.DomainSuffix, Previous: cp.mesh.Load(),
		DestinationRules: rules, DefaultPolicy: cp.defaultPolicy, PeerAuth: peerAuth}
	if cp.names != nil {
		in.Names = cp.names
	}
	m, diags := model.Build(in)
	if cp.names != nil {
		cp.names.Want(m.GatewayNames()) // new names: resolved, then pushed again
	}
	if p := fmt.Sprint(diags); p != cp.meshProblems {
		cp.meshProblems = p
		for _, d := range diags {
			cp.log.Warn("mesh", "severity", d.Severity.String(), "problem", d.String())
		}
	}
	prev := cp.mesh.Swap(m)
	cp.reclassify(prev, m)
	cp.updateViews(m)
	if !first.IsZero() {
		cp.metrics.pushLatency.Observe(time.Since(first).Seconds())
	}
	if !cp.ready.Load() && allLocal && gatesOK && allRemote {
		cp.ready.Store(true)
		cp.log.Info("ready: serving xDS", "clusters", len(snaps), "services", len(m.Services()))
	}
	cp.seq.completed()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
