package bearer

import (
	"errors"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/horizonmesh/horizon/internal/model"
)

func TestFromMetadata(t *testing.T) {
	for _, tt := range []struct {
		name    string
		md      metadata.MD
		cluster model.ClusterID
		token   string
		err     error // errors.Is, or nil; "bad" for any other error
	}{
		{"token and cluster", metadata.Pairs("authorization", "Bearer t1", ClusterIDHeader, "c2"), "c2", "t1", nil},
		{"no cluster: the local one", metadata.Pairs("authorization", "Bearer t1"), "local", "t1", nil},
		{"empty cluster: the local one", metadata.Pairs("authorization", "Bearer t1", ClusterIDHeader, ""), "local", "t1", nil},
		{"no authorization", metadata.Pairs(ClusterIDHeader, "c2"), "", "", ErrNoToken},
		{"empty bearer", metadata.Pairs("authorization", "Bearer   "), "", "", ErrNoToken},
		{"another scheme", metadata.Pairs("authorization", "Basic c2xlZXA6"), "", "", ErrNotBearer},
		{"token checked before the cluster", metadata.Pairs("authorization", "Basic x", ClusterIDHeader, "../etc"), "", "", ErrNotBearer},
	} {
		cluster, token, err := FromMetadata(tt.md, "local")
		if !errors.Is(err, tt.err) || cluster != tt.cluster || token != tt.token {
			t.Errorf("%s: %q %q %v; want %q %q %v", tt.name, cluster, token, err, tt.cluster, tt.token, tt.err)
		}
	}
	if _, _, err := FromMetadata(metadata.Pairs("authorization", "Bearer t", ClusterIDHeader, "../etc"), "local"); err == nil ||
		errors.Is(err, ErrNoToken) || errors.Is(err, ErrNotBearer) {
		t.Errorf("an invalid cluster ID: %v, want a clusterid error", err)
	}
}
