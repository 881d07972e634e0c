package bootstrap

import (
	"context"
	"net/url"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ops"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// The injection webhook's server bounds what a caller that is not the API
// server can hold: idle keep-alive connections close, headers are bounded
// in time and size.
func TestWebhookServerIsBounded(t *testing.T) {
	a, err := ca.SelfSigned("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id, _ := url.Parse("spiffe://cluster.local/ns/istio-system/sa/horizon")
	srv, err := WebhookServer(ctx, DefaultConfig().InjectConfig(), fake.NewClientset(), a, id, []string{"horizon.istio-system.svc"}, testkit.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if srv.IdleTimeout != ops.DefaultIdleTimeout || srv.ReadHeaderTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("webhook server: idle %v, header timeout %v, header bytes %d; want all bounded", srv.IdleTimeout, srv.ReadHeaderTimeout, srv.MaxHeaderBytes)
	}
}
