// Package bearer reads the credentials Istio's agents send with a gRPC
// call — a service-account token (authorization: Bearer <token>) and the
// cluster whose API server reviews it (clusterid) — for the CSR service
// and the xDS TLS port alike.
package bearer

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/horizonmesh/horizon/internal/model"
)

// ClusterIDHeader names, in gRPC metadata, the cluster whose API server
// reviews the caller's token, as Istio's agents send it.
const ClusterIDHeader = "clusterid"

var (
	// ErrNoToken: the call carries no bearer token.
	ErrNoToken = errors.New("no bearer token in the authorization metadata")
	// ErrNotBearer: the call's authorization is of another scheme.
	ErrNotBearer = errors.New("authorization metadata is not a bearer token")
)

// FromMetadata returns the call's token and the cluster that reviews it:
// the one named in clusterid, or local when it names none (Istio's agent
// without ISTIO_META_CLUSTER_ID sends an empty one, and istiod takes it as
// its own cluster). The token is checked first (ErrNoToken, ErrNotBearer),
// then the cluster ID.
func FromMetadata(md metadata.MD, local model.ClusterID) (model.ClusterID, string, error) {
	auth := first(md.Get("authorization"))
	if auth == "" {
		return "", "", ErrNoToken
	}
	t, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return "", "", ErrNotBearer
	}
	token := strings.TrimSpace(t)
	if token == "" {
		return "", "", ErrNoToken
	}
	cluster := model.ClusterID(first(md.Get(ClusterIDHeader)))
	if cluster == "" {
		cluster = local
	}
	if err := model.ValidateClusterID(string(cluster)); err != nil {
		return "", "", fmt.Errorf("metadata %s: %w", ClusterIDHeader, err)
	}
	return cluster, token, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
