package bootstrap

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// CASecretName is the plug-in CA Secret, as in the walkthrough's
// `kubectl create secret generic cacerts -n istio-system ...`.
const CASecretName = "cacerts"

// loadAuthority picks the CA: --cacerts-dir, else the cacerts Secret in the
// control plane's namespace, else a self-signed root (with a loud warning).
// Invalid cacerts stop the start-up.
func loadAuthority(ctx context.Context, c Config, local kubernetes.Interface, log *slog.Logger) (*ca.Authority, error) {
	if c.CACertsDir != "" {
		a, err := ca.LoadDir(c.CACertsDir)
		if err != nil {
			return nil, fmt.Errorf("--cacerts-dir %s: %w", c.CACertsDir, err)
		}
		log.Info("CA: plug-in certificates", "dir", c.CACertsDir)
		return a, nil
	}
	if local != nil {
		s, err := local.CoreV1().Secrets(c.Namespace).Get(ctx, CASecretName, metav1.GetOptions{})
		switch {
		case err == nil:
			a, err := ca.Load(s.Data)
			if err != nil {
				return nil, fmt.Errorf("Secret %s/%s: %w", c.Namespace, CASecretName, err)
			}
			log.Info("CA: plug-in certificates", "secret", c.Namespace+"/"+CASecretName)
			return a, nil
		case !apierrors.IsNotFound(err):
			return nil, apiError{fmt.Errorf("Secret %s/%s: %w", c.Namespace, CASecretName, err)}
		}
	}
	log.Warn("!!! NO PLUG-IN CA: using a self-signed root. Workloads of other control planes or clusters will " +
		"not trust these certificates. Give --cacerts-dir or create the cacerts Secret for anything but a trial. !!!")
	if local == nil {
		return ca.SelfSigned(c.TrustDomain)
	}
	return sharedSelfSigned(ctx, c, local, log)
}

// SelfSignedSecretName holds the self-signed root that replicas share when
// there is no cacerts Secret (cacerts layout).
const SelfSignedSecretName = "horizon-ca-root"

// sharedSelfSigned loads the self-signed root the first replica stored, or
// creates and stores it. Two replicas starting together both try to create
// it; the one that loses the race loads the winner's, so the mesh has one
// root whichever replica signs a certificate.
func sharedSelfSigned(ctx context.Context, c Config, local kubernetes.Interface, log *slog.Logger) (*ca.Authority, error) {
	return SharedSelfSignedIn(ctx, local, c.Namespace, SelfSignedSecretName, c.TrustDomain, log)
}

// SharedSelfSignedIn loads the self-signed CA stored in Secret
// namespace/name, or creates and stores one.
func SharedSelfSignedIn(ctx context.Context, local kubernetes.Interface, namespace, name, trustDomain string, log *slog.Logger) (*ca.Authority, error) {
	secrets := local.CoreV1().Secrets(namespace)
	for attempt := 0; attempt < 2; attempt++ {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			a, err := ca.Load(s.Data)
			if err != nil {
				return nil, fmt.Errorf("Secret %s/%s: %w", namespace, name, err)
			}
			log.Info("CA: the shared self-signed root", "secret", namespace+"/"+name)
			return a, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, apiError{fmt.Errorf("Secret %s/%s: %w", namespace, name, err)}
		}
		a, err := ca.SelfSigned(trustDomain)
		if err != nil {
			return nil, err
		}
		files, err := a.Files()
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Data: files}, metav1.CreateOptions{})
		if err == nil {
			log.Info("CA: created the self-signed root other replicas will share", "secret", namespace+"/"+name)
			return a, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, apiError{fmt.Errorf("storing the self-signed root in Secret %s/%s: %w", namespace, name, err)}
		}
		// Another replica stored one first: load it.
	}
	return nil, fmt.Errorf("Secret %s/%s: created and deleted concurrently", namespace, name)
}

// serverCredentials makes the secure port's TLS config: a serving
// certificate from the mesh CA for the names agents dial; client
// certificates verified against the mesh roots when given (the CSR call has
// none yet; xDS streams without one are refused by the tracker).
func serverCredentials(a *ca.Authority, c Config) (credentials.TransportCredentials, error) {
	cert, err := servingCert(a, ca.Identity(c.TrustDomain, c.Namespace, install.DiscoveryName), c.SecureSANs)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    a.Roots(),
	}), nil
}

// defaultSecureSANs are the names and addresses agents are likely to dial.
func defaultSecureSANs(namespace string) []string {
	out := []string{"localhost", "127.0.0.1", "::1", "horizon." + namespace + ".svc", "istiod." + namespace + ".svc"}
	if h, err := os.Hostname(); err == nil {
		out = append(out, h)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
				out = append(out, n.IP.String())
			}
		}
	}
	return out
}

// newTokenReviewer is the one token reviewer of the CSR service and the
// xDS TLS port: TokenReviews through each cluster's review client (its own
// rate limits, see kube.Clients.NewClient), results cached, peers that keep
// presenting bad tokens backed off (authn).
func newTokenReviewer(c Config, clients *kube.Clients, reg prometheus.Registerer, log *slog.Logger) *authn.Reviewer {
	backend := &ca.TokenReviewer{Audiences: c.TokenAudiences, Clients: clients.Review}
	return authn.NewReviewer(backend, c.TokenReview, reg, log)
}

// newSecureServer serves ADS and the CSR service over TLS.
func newSecureServer(ctx context.Context, c Config, cp *controlplane.ControlPlane, a *ca.Authority, clients *kube.Clients,
	reg prometheus.Registerer, log *slog.Logger) (*grpc.Server, error) {
	creds, err := serverCredentials(a, c)
	if err != nil {
		return nil, err
	}
	reviewer := newTokenReviewer(c, clients, reg, log)
	// xDS on this port: a mesh client certificate, or (Istio's agents)
	// the same service-account token the CSR service reviews.
	cp.Tracker.AcceptTokens(&server.TokenAuth{LocalCluster: model.ClusterID(c.ClusterID),
		Review: func(ctx context.Context, cluster model.ClusterID, token string) (string, string, error) {
			caller, err := reviewer.Authenticate(ctx, cluster, token)
			return caller.Namespace, caller.ServiceAccount, err
		}})
	g := server.NewGRPC(ctx, cp.Views, cp.Tracker, grpc.Creds(creds), grpc.ChainStreamInterceptor(shutdownStatus(ctx)))
	securityv1alpha1.RegisterIstioCertificateServiceServer(g, &ca.Service{
		CA: a, LocalCluster: model.ClusterID(c.ClusterID), TrustDomain: c.TrustDomain, DefaultTTL: c.CertTTL, MaxTTL: c.MaxCertTTL, Log: log,
		Auth: reviewer,
	})
	return g, nil
}
