package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/bearer"
	"github.com/horizonmesh/horizon/internal/model"
)

// ClusterIDHeader names, in a stream's gRPC metadata, the cluster whose API
// server reviews its bearer token, as Istio's agents send it.
const ClusterIDHeader = bearer.ClusterIDHeader

// TokenReviewer reviews a Kubernetes service-account token with the API
// server of cluster and returns whose it is.
type TokenReviewer func(ctx context.Context, cluster model.ClusterID, token string) (namespace, serviceAccount string, err error)

// TokenAuth lets proxies without a client certificate authenticate xDS
// on the TLS port with their service-account token, as Istio's agents do
// (authorization: Bearer <token>, clusterid: <cluster>).
type TokenAuth struct {
	// Review is, in discovery, the CSR service's authn.Reviewer: results
	// cached, peers that keep failing backed off, so junk tokens cannot
	// starve the reviews of legitimate streams. The stream's context
	// carries its peer address for that.
	Review TokenReviewer
	// LocalCluster reviews the token of a stream that names no cluster
	// (Istio's agent without ISTIO_META_CLUSTER_ID sends an empty one).
	LocalCluster model.ClusterID
	// Timeout bounds one review (0: 10 s): a slow API server delays only
	// the stream being opened.
	Timeout time.Duration
}

// tokenCaller is a stream's identity from a reviewed token.
type tokenCaller struct {
	cluster                   model.ClusterID
	namespace, serviceAccount string
	local                     model.ClusterID // the cluster of a node that names none
}

// client is who the token's stream counts as (see clientOf).
func (c *tokenCaller) client() string { return workloadClient(c.namespace, c.serviceAccount) }

func (c *tokenCaller) String() string {
	return "token of system:serviceaccount:" + c.namespace + ":" + c.serviceAccount + " (cluster " + string(c.cluster) + ")"
}

// clientOf is who a proved identity counts as for the per-client bounds
// (streams, claimed views, log lines): the workload, namespace and
// service account, however it proved it. A client certificate of any
// trust domain (checkIdentity accepts any) and a token reviewed by any
// cluster are the same client, or one workload would get a budget per
// way of proving itself. An id of another shape (which checkIdentity
// refuses at the first request) counts as itself.
func clientOf(spiffeID string) string {
	rest, ok := strings.CutPrefix(spiffeID, "spiffe://")
	if !ok {
		return spiffeID
	}
	_, path, _ := strings.Cut(rest, "/")
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return spiffeID
	}
	return workloadClient(parts[1], parts[3])
}

func workloadClient(namespace, serviceAccount string) string {
	return "workload " + namespace + "/" + serviceAccount
}

// peerIdentity returns the SPIFFE id of a TLS peer's verified client
// certificate; secure reports whether the connection is TLS at all.
func peerIdentity(ctx context.Context) (id string, secure bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", false
	}
	for _, chain := range info.State.VerifiedChains {
		if len(chain) > 0 {
			for _, u := range chain[0].URIs {
				if u.Scheme == "spiffe" {
					return u.String(), true
				}
			}
		}
	}
	return "", true
}

// reviewToken authenticates a TLS stream without a client certificate by
// the bearer token in its metadata; nil without error when it carries no
// token (the request check then refuses it).
func (a *TokenAuth) reviewToken(ctx context.Context) (*tokenCaller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	cluster, token, err := bearer.FromMetadata(md, a.LocalCluster)
	switch {
	case errors.Is(err, bearer.ErrNoToken):
		return nil, nil
	case err != nil:
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ns, sa, err := a.Review(ctx, cluster, token)
	if err != nil {
		// ResourceExhausted when the peer is throttled (nothing was
		// reviewed; retry later), else Unauthenticated.
		return nil, status.Errorf(authn.Code(err), "bearer token: %v", err)
	}
	return &tokenCaller{cluster: cluster, namespace: ns, serviceAccount: sa, local: a.LocalCluster}, nil
}

// checkIdentity enforces, on the TLS port, that a proxy is who its node
// says: its client certificate's spiffe://<any trust domain>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>,
// or else the service account its token was reviewed as, in the node's
// cluster.
func checkIdentity(id string, token *tokenCaller, p Proxy) error {
	if id == "" && token != nil {
		if token.namespace != p.Namespace || token.serviceAccount != p.ServiceAccount {
			return fmt.Errorf("the %s does not match the node's %s %q and %s %q", token,
				MetaNamespace, p.Namespace, MetaServiceAccount, p.ServiceAccount)
		}
		if c := p.Cluster; token.cluster != c && (c != "" || token.cluster != token.local) {
			return fmt.Errorf("the %s does not match the node's %s %q", token, MetaClusterID, p.Cluster)
		}
		return nil
	}
	if id == "" {
		return fmt.Errorf("no mesh client certificate or bearer token: xDS on the secure port needs one")
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return fmt.Errorf("client certificate id %q is not a SPIFFE id", id)
	}
	_, path, _ := strings.Cut(rest, "/")
	if want := "ns/" + p.Namespace + "/sa/" + p.ServiceAccount; path != want {
		return fmt.Errorf("client certificate %s does not match the node's %s %q and %s %q", id,
			MetaNamespace, p.Namespace, MetaServiceAccount, p.ServiceAccount)
	}
	return nil
}
