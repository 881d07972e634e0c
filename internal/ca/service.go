package ca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/bearer"
	"github.com/horizonmesh/horizon/internal/model"
)

// ClusterIDHeader names the caller's cluster in gRPC metadata, as Istio's
// agents send it.
const ClusterIDHeader = bearer.ClusterIDHeader

// Caller is an authenticated workload.
type Caller = authn.Identity

// Authenticator checks a caller's token against its cluster. In discovery
// it is an *authn.Reviewer over a TokenReviewer, shared with the xDS TLS
// port: results cached, peers that keep failing backed off.
type Authenticator interface {
	Authenticate(ctx context.Context, cluster model.ClusterID, token string) (Caller, error)
}

// TokenReviewer authenticates Kubernetes service-account tokens with a
// TokenReview sent to the caller's own cluster's API server. The token's
// own faults are marked authn.Refused (cached and counted against the
// peer by an authn.Reviewer); an API server that does not answer is not.
type TokenReviewer struct {
	Audiences []string // the token must be for one of these (istio-ca)
	// Clients returns a cluster's TokenReview client (kube.Clients.Review:
	// its own rate limits), nil for an unknown cluster.
	Clients func(model.ClusterID) kubernetes.Interface
}

// Authenticate implements Authenticator.
func (r *TokenReviewer) Authenticate(ctx context.Context, cluster model.ClusterID, token string) (Caller, error) {
	client := r.Clients(cluster)
	if client == nil {
		return Caller{}, authn.Refused(fmt.Errorf("unknown cluster %q", cluster))
	}
	tr, err := client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: r.Audiences}}, metav1.CreateOptions{})
	if err != nil {
		err = fmt.Errorf("TokenReview in cluster %s: %w", cluster, err)
		if apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err) {
			err = authn.Refused(err) // the API server's answer to this token
		}
		return Caller{}, err
	}
	if !tr.Status.Authenticated {
		return Caller{}, authn.Refused(fmt.Errorf("token not authenticated by cluster %s: %s", cluster, tr.Status.Error))
	}
	if !slices.ContainsFunc(tr.Status.Audiences, func(a string) bool { return slices.Contains(r.Audiences, a) }) {
		return Caller{}, authn.Refused(fmt.Errorf("token audiences %v include none of %v", tr.Status.Audiences, r.Audiences))
	}
	parts := strings.Split(tr.Status.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return Caller{}, authn.Refused(fmt.Errorf("%q is not a service account", tr.Status.User.Username))
	}
	return Caller{Namespace: parts[2], ServiceAccount: parts[3]}, nil
}

// Service is the CSR service (Istio's IstioCertificateService).
type Service struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	CA   *Authority
	Auth Authenticator
	// LocalCluster reviews the token of a caller that names no cluster (no
	// clusterid metadata, or an empty one: Istio's agent without
	// ISTIO_META_CLUSTER_ID), as istiod does. Empty: such callers are
	// refused.
	LocalCluster model.ClusterID
	TrustDomain  string
	DefaultTTL   time.Duration
	MaxTTL       time.Duration
	Log          *slog.Logger
}

// CreateCertificate authenticates the caller with its bearer token against
// the cluster it names and signs its CSR for its own identity only.
func (s *Service) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	cluster, token, err := bearer.FromMetadata(md, s.LocalCluster)
	if errors.Is(err, bearer.ErrNotBearer) {
		err = bearer.ErrNoToken
	}
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	caller, err := s.Auth.Authenticate(ctx, cluster, token)
	if err != nil {
		// Not logged here: a client can send any number of these. The
		// authn.Reviewer logs refusals, one line per peer per interval.
		// A throttled peer gets ResourceExhausted (retry later).
		return nil, status.Errorf(authn.Code(err), "authentication failed: %v", err)
	}
	ttl := s.DefaultTTL
	if v := req.GetValidityDuration(); v > 0 {
		// Compare in seconds: v * time.Second overflows past ~292 years.
		ttl = s.MaxTTL
		if v < int64(s.MaxTTL/time.Second) {
			ttl = time.Duration(v) * time.Second
		}
	}
	id := Identity(s.TrustDomain, caller.Namespace, caller.ServiceAccount)
	leaf, err := s.CA.SignWorkload([]byte(req.GetCsr()), id, ttl)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	chain := s.CA.WorkloadChain(leaf)
	s.Log.Info("certificate signed", "identity", id.String(), "cluster", cluster, "ttl", ttl)
	return &securityv1alpha1.IstioCertificateResponse{CertChain: chain}, nil
}
