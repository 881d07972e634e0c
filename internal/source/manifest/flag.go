// Package manifest reads cluster snapshots from Kubernetes manifests: a
// directory of YAML/JSON files, or one multi-document file, decoded with the
// real Kubernetes types into a kube.Store.
package manifest

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/horizonmesh/horizon/internal/model"
)

// ClusterSource is a parsed --cluster ID=PATH.
type ClusterSource struct {
	ID   model.ClusterID
	Path string
}

// clusterIDRE is the character set of Secret data keys: a remote cluster's ID
// is the data key of its kubeconfig Secret (the walkthrough's remote_kubecfg).
var clusterIDRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// ValidClusterID returns an error when id cannot be a cluster ID.
func ValidClusterID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("cluster ID is empty")
	case len(id) > 253:
		return fmt.Errorf("cluster ID %q is longer than 253 characters", id)
	case !clusterIDRE.MatchString(id) || id == "." || id == "..":
		return fmt.Errorf("cluster ID %q may hold only letters, digits, '-', '_' and '.'", id)
	}
	return nil
}

// ParseClusterFlag parses ID=PATH.
func ParseClusterFlag(s string) (ClusterSource, error) {
	id, path, ok := strings.Cut(s, "=")
	if !ok {
		return ClusterSource{}, fmt.Errorf("--cluster %q: want ID=PATH", s)
	}
	if err := ValidClusterID(id); err != nil {
		return ClusterSource{}, fmt.Errorf("--cluster %q: %v", s, err)
	}
	if path == "" {
		return ClusterSource{}, fmt.Errorf("--cluster %q: PATH is empty", s)
	}
	return ClusterSource{ID: model.ClusterID(id), Path: path}, nil
}
