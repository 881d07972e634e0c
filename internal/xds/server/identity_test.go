package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/model"
)

// fakeReviewer answers reviews from a table of token -> cluster/ns/sa and
// records the clusters it was asked.
type fakeReviewer struct {
	mu     sync.Mutex
	asked  []model.ClusterID
	tokens map[string][3]string // token -> cluster, namespace, service account
}

func (r *fakeReviewer) review(_ context.Context, cluster model.ClusterID, token string) (string, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, cluster)
	who, ok := r.tokens[token]
	if !ok || who[0] != string(cluster) {
		return "", "", errors.New("token not authenticated by cluster " + string(cluster))
	}
	return who[1], who[2], nil
}

// tokenPeer is a TLS stream without a client certificate whose metadata
// carries md (authorization, clusterid).
func tokenPeer(md ...string) context.Context {
	return metadata.NewIncomingContext(tlsPeer(""), metadata.Pairs(md...))
}

// clusterNode is node() with a CLUSTER_ID.
func clusterNode(id, cluster, ns, sa string) *corev3.Node {
	n := node(id, "", ns, sa)
	if cluster != "" {
		n.Metadata.Fields[MetaClusterID] = structpb.NewStringValue(cluster)
	}
	return n
}

// On the TLS port, a stream without a client certificate authenticates
// with its service-account token (as Istio's agents do), reviewed once by
// the cluster it names (the local one when it names none); every request
// is then checked against the reviewed identity and cluster.
func TestTLSStreamsAuthenticateWithBearerTokens(t *testing.T) {
	rv := &fakeReviewer{tokens: map[string][3]string{
		"sleep-token": {"cluster1", "sample", "sleep"},
		"c2-token":    {"cluster2", "sample", "sleep"},
	}}
	f := newFixture(t, 0, Limits{})
	f.tr.AcceptTokens(&TokenAuth{Review: rv.review, LocalCluster: "cluster1"})
	id := int64(0)
	open := func(ctx context.Context) (int64, error) {
		id++
		return id, f.port.open(ctx, id)
	}

	// The token's service account, in the node's cluster: served, and
	// /debug/syncz tells how the stream authenticated.
	s, err := open(tokenPeer("authorization", "Bearer sleep-token", ClusterIDHeader, "cluster1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.port.request(s, sotw(clusterNode("sleep", "cluster1", "sample", "sleep"), resource.ClusterType)); err != nil {
		t.Fatalf("a stream with a matching token: %v", err)
	}
	if got := f.tr.Streams()[0].Identity; !strings.Contains(got, "system:serviceaccount:sample:sleep") || !strings.Contains(got, "cluster1") {
		t.Fatalf("syncz identity %q", got)
	}
	// A later request of the same stream may not claim another identity.
	err = f.port.request(s, sotw(clusterNode("sleep", "cluster1", "sample", "admin"), resource.EndpointType))
	wantCode(t, err, codes.PermissionDenied)

	// A node claiming another service account, or another cluster than
	// the one that reviewed the token, is refused.
	s, _ = open(tokenPeer("authorization", "Bearer sleep-token", ClusterIDHeader, "cluster1"))
	err = f.port.request(s, sotw(clusterNode("sleep", "cluster1", "sample", "helloworld"), resource.ClusterType))
	wantCode(t, err, codes.PermissionDenied)
	s, _ = open(tokenPeer("authorization", "Bearer c2-token", ClusterIDHeader, "cluster2"))
	err = f.port.request(s, sotw(clusterNode("sleep", "cluster1", "sample", "sleep"), resource.ClusterType))
	wantCode(t, err, codes.PermissionDenied)

	// No clusterid (Istio's agent without ISTIO_META_CLUSTER_ID): the
	// local cluster reviews it; a node naming no cluster is the local one's.
	rv.asked = nil
	s, err = open(tokenPeer("authorization", "Bearer sleep-token"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.asked) != 1 || rv.asked[0] != "cluster1" {
		t.Fatalf("reviews asked of %v, want cluster1", rv.asked)
	}
	if err := f.port.request(s, sotw(clusterNode("sleep", "", "sample", "sleep"), resource.ClusterType)); err != nil {
		t.Fatalf("a node naming no cluster, token of the local cluster: %v", err)
	}

	// A token its cluster does not authenticate, or a token named for one
	// cluster but presented to another, ends the stream at once.
	_, err = open(tokenPeer("authorization", "Bearer forged", ClusterIDHeader, "cluster1"))
	wantCode(t, err, codes.Unauthenticated)
	_, err = open(tokenPeer("authorization", "Bearer c2-token", ClusterIDHeader, "cluster1"))
	wantCode(t, err, codes.Unauthenticated)
	_, err = open(tokenPeer("authorization", "Basic c2xlZXA6", ClusterIDHeader, "cluster1"))
	wantCode(t, err, codes.Unauthenticated)
	_, err = open(tokenPeer("authorization", "Bearer sleep-token", ClusterIDHeader, "../etc"))
	wantCode(t, err, codes.Unauthenticated)

	// A client certificate is what counts when there is one: its token is
	// not even reviewed.
	rv.asked = nil
	ctx := metadata.NewIncomingContext(tlsPeer("spiffe://cluster.local/ns/sample/sa/sleep"),
		metadata.Pairs("authorization", "Bearer c2-token", ClusterIDHeader, "cluster2"))
	s, err = open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.port.request(s, sotw(clusterNode("sleep", "cluster1", "sample", "sleep"), resource.ClusterType)); err != nil {
		t.Fatalf("certificate stream: %v", err)
	}
	if len(rv.asked) != 0 {
		t.Fatalf("a certificate stream's token was reviewed by %v", rv.asked)
	}

	// Neither certificate nor token: refused at once, before it takes a
	// stream slot.
	_, err = open(tlsPeer(""))
	wantCode(t, err, codes.Unauthenticated)
}

// Without TokenAuth, a token is no substitute for a client certificate.
func TestTokensAreRefusedUnlessAccepted(t *testing.T) {
	f := newFixture(t, 0, Limits{})
	err := f.port.open(tokenPeer("authorization", "Bearer sleep-token"), 1)
	wantCode(t, err, codes.Unauthenticated)
	if len(f.tr.Streams()) != 0 {
		t.Fatalf("a refused stream is tracked: %+v", f.tr.Streams())
	}
}
