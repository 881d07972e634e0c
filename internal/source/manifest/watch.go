package manifest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
)

// Registry is where manifest clusters are reported (the control plane).
type Registry interface {
	SetCluster(id model.ClusterID, source string, local bool, store *kube.Store, synced func() bool, lastEvent func() time.Time)
	ClusterError(id model.ClusterID, source, msg string)
}

// Watch loads a cluster from its manifests now and again whenever a file
// under the path changes (polled every interval), until ctx ends. Invalid
// manifests at start are an error; later, an invalid change is reported and
// the last good snapshot keeps serving.
func Watch(ctx context.Context, src ClusterSource, interval time.Duration, reg Registry) error {
	source := "manifests " + src.Path
	load := func() (*kube.Store, error) {
		store, diags := Load(src.Path)
		if err := diags.Err(); err != nil {
			return nil, err
		}
		return store, nil
	}
	store, err := load()
	if err != nil {
		return fmt.Errorf("cluster %s: %w", src.ID, err)
	}
	loaded := time.Now()
	always := func() bool { return true }
	reg.SetCluster(src.ID, source, true, store, always, func() time.Time { return loaded })
	print := fingerprint(src.Path)
	seen := print
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// Reload once the files look the same on two polls in a row, so
			// a half-written file is never loaded.
			next := fingerprint(src.Path)
			stable := next == seen
			seen = next
			if !stable || next == print {
				continue
			}
			print = next
			store, err := load()
			if err != nil {
				reg.ClusterError(src.ID, source, "change rejected, last good manifests keep serving: "+err.Error())
				continue
			}
			at := time.Now()
			reg.SetCluster(src.ID, source, true, store, always, func() time.Time { return at })
			reg.ClusterError(src.ID, source, "")
		}
	}()
	return nil
}

// fingerprint summarises the names, sizes and modification times of the
// manifest files under path.
func fingerprint(path string) string {
	var b strings.Builder
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}
