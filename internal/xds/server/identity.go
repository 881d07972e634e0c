package server

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

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

// checkIdentity enforces, on the TLS port, that a proxy is who its node
// says: spiffe://<any trust domain>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>.
func checkIdentity(id string, p Proxy) error {
	if id == "" {
		return fmt.Errorf("no mesh client certificate: xDS on the secure port needs one")
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
