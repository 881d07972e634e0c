package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestSDSServesAndRotates: Envoy's view of the agent's SDS socket — the
// certificate and root, then a rotated certificate pushed on the same stream.
func TestSDSServesAndRotates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sds := NewSDS()
	if err := sds.Update(&Identity{KeyPEM: []byte("key-1"), ChainPEM: []byte("chain-1"), RootPEM: []byte("root")}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "sds.sock")
	go func() { _ = sds.Serve(ctx, sock) }()
	var conn *grpc.ClientConn
	var stream secretv3.SecretDiscoveryService_StreamSecretsClient
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			stream, err = secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
			if err == nil {
				err = stream.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: "envoy"}, TypeUrl: resource.SecretType,
					ResourceNames: []string{"default", "ROOTCA"}})
			}
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer conn.Close()
	chainOf := func(r *discovery.DiscoveryResponse) (string, string) {
		var chain, root string
		for _, a := range r.Resources {
			s := &tlsv3.Secret{}
			if err := a.UnmarshalTo(s); err != nil {
				t.Fatal(err)
			}
			switch s.Name {
			case "default":
				chain = string(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
			case "ROOTCA":
				root = string(s.GetValidationContext().GetTrustedCa().GetInlineBytes())
			}
		}
		return chain, root
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if chain, root := chainOf(r); chain != "chain-1" || root != "root" {
		t.Fatalf("first response: chain %q root %q", chain, root)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: []string{"default", "ROOTCA"},
		VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}
	if err := sds.Update(&Identity{KeyPEM: []byte("key-2"), ChainPEM: []byte("chain-2"), RootPEM: []byte("root")}); err != nil {
		t.Fatal(err)
	}
	r, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if chain, _ := chainOf(r); chain != "chain-2" {
		t.Errorf("after rotation: chain %q", chain)
	}
}
