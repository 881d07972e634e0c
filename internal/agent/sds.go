package agent

import (
	"context"
	"net"
	"os"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	xdsserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// SDS serves the workload's certificate ("default") and the mesh root
// ("ROOTCA") to Envoy on a Unix socket; Update rotates them live.
type SDS struct {
	cache *cache.LinearCache
}

// NewSDS returns an SDS server with no secrets yet.
func NewSDS() *SDS { return &SDS{cache: cache.NewLinearCache(resource.SecretType)} }

// Update publishes a new identity to Envoy.
func (s *SDS) Update(id *Identity) error {
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	return s.cache.UpdateResources(map[string]types.Resource{
		translate.SecretDefault: &tlsv3.Secret{Name: translate.SecretDefault, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(id.ChainPEM), PrivateKey: inline(id.KeyPEM)}}},
		translate.SecretRootCA: &tlsv3.Secret{Name: translate.SecretRootCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(id.RootPEM)}}},
	}, nil)
}

// Serve serves SDS on the Unix socket path until ctx ends. The socket is
// private to the proxy's uid.
func (s *SDS) Serve(ctx context.Context, path string) error {
	_ = os.Remove(path)
	lis, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	_ = os.Chmod(path, 0o600)
	g := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(g, xdsserver.NewServer(ctx, s.cache, nil))
	go func() { <-ctx.Done(); g.Stop() }()
	return g.Serve(lis)
}
