// Package manifest reads cluster snapshots from Kubernetes manifests: a
// directory of YAML/JSON files, or one multi-document file, decoded with the
// real Kubernetes types into a kube.Store.
package manifest

import (
	"fmt"
	"strings"

	"github.com/horizonmesh/horizon/internal/model"
)

// ClusterSource is a parsed --cluster ID=PATH.
type ClusterSource struct {
	ID   model.ClusterID
	Path string
}

// ParseClusterFlag parses ID=PATH.
func ParseClusterFlag(s string) (ClusterSource, error) {
	id, path, ok := strings.Cut(s, "=")
	if !ok {
		return ClusterSource{}, fmt.Errorf("--cluster %q: want ID=PATH", s)
	}
	if err := model.ValidateClusterID(id); err != nil {
		return ClusterSource{}, fmt.Errorf("--cluster %q: %w", s, err)
	}
	if path == "" {
		return ClusterSource{}, fmt.Errorf("--cluster %q: PATH is empty", s)
	}
	return ClusterSource{ID: model.ClusterID(id), Path: path}, nil
}
