package model

import (
	"fmt"
	"regexp"
)

// clusterIDRE is the character set of Secret data keys: a remote cluster's ID
// is the data key of its kubeconfig Secret (the walkthrough's remote_kubecfg).
var clusterIDRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// ValidateClusterID returns why id cannot be a cluster ID, or nil.
func ValidateClusterID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("cluster ID is empty")
	case len(id) > 253:
		return fmt.Errorf("invalid cluster ID %q: longer than 253 characters", id)
	case !clusterIDRE.MatchString(id) || id == "." || id == "..":
		return fmt.Errorf("invalid cluster ID %q: only letters, digits, '-', '_' and '.' are allowed, and not . or ..", id)
	}
	return nil
}
