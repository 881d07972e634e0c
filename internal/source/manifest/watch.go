package manifest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/filewatch"
	"github.com/horizonmesh/horizon/internal/source/kube"
)

// Registry is where manifest clusters are reported (the control plane).
type Registry interface {
	SetCluster(source.Cluster)
	ClusterError(id model.ClusterID, origin, msg string)
}

// Watch loads a cluster from its manifests now and again each time a file
// under the path changes, until ctx ends. The path and its directories are
// watched with inotify (a mounted ConfigMap's `..data` swap included) and
// re-read every poll as a safety net; see package filewatch for when a
// change counts as written.
//
// Invalid manifests at start are an error. Later, an invalid change (or a
// missing path) is logged on log and reported with ClusterError, and the
// last good snapshot keeps serving; the next valid state is applied.
//
// Validation cannot tell a half-written manifest from a cluster that really
// lost objects: a file cut at the end of a document, or after `endpoints:`,
// still decodes. So a change is applied only after the settle time without
// events and only if every file decodes; writers that pause longer than the
// settle time should write a temporary file and rename it instead.
//
// convert says how the manifests are read into the model (domain suffix,
// system namespace).
func Watch(ctx context.Context, src ClusterSource, poll time.Duration, convert kube.Options, reg Registry, log *slog.Logger) error {
	return watch(ctx, src, filewatch.Options{Poll: poll, Logger: log}, convert, reg)
}

func watch(ctx context.Context, src ClusterSource, opts filewatch.Options, convert kube.Options, reg Registry) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	origin := "manifests " + src.Path
	loads := 0 // calls to load never overlap
	load := func(s filewatch.Snapshot) error {
		store, diags := Load(src.Path)
		if s.Changed() {
			return filewatch.ErrChanged // Load may have read a file mid-write
		}
		if err := diags.Err(); err != nil {
			return err
		}
		at := time.Now()
		reg.SetCluster(source.Cluster{ID: src.ID, Origin: origin, Local: true,
			Source: &kube.Source{Store: store, Options: convert, Last: func() time.Time { return at }}})
		if loads++; loads > 1 {
			reg.ClusterError(src.ID, origin, "")
			log.Info("cluster manifests applied", "cluster", src.ID, "path", src.Path)
		}
		return nil
	}
	rejected := func(err error) {
		log.Error("cluster manifests change rejected; the last good manifests keep serving", "cluster", src.ID, "path", src.Path, "error", err)
		reg.ClusterError(src.ID, origin, "change rejected, last good manifests keep serving: "+err.Error())
	}
	if err := filewatch.Start(ctx, src.Path, opts, load, rejected); err != nil {
		return fmt.Errorf("cluster %s: %w", src.ID, err)
	}
	return nil
}
