package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/controlplane"
	istiosource "github.com/horizonmesh/horizon/internal/source/istio"
)

// startPeerAuthentications follows Istio PeerAuthentications in the config
// (local) cluster, in the newest security.istio.io version it serves (one
// watch sees objects written in any version); without the CRD there are
// none and the default mode applies. As for Gateways, the CRD is looked up
// until the API server answers, and readiness waits for the first set:
// a sidecar must not be served PERMISSIVE for a moment where a policy says
// STRICT.
func startPeerAuthentications(ctx context.Context, cfg *rest.Config, local kubernetes.Interface, cp *controlplane.ControlPlane, log *slog.Logger) error {
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("istio client: %w", err)
	}
	var read atomic.Bool
	cp.AddReadinessGate("Istio PeerAuthentications", read.Load)
	go func() {
		backoff := time.Second
		for {
			version, err := peerAuthVersionServed(local)
			if err == nil && version == "" {
				log.Info("no security.istio.io PeerAuthentication CRD in the config cluster: the default mTLS mode everywhere")
				read.Store(true)
				return
			}
			if err == nil {
				if err := istiosource.WatchPeerAuthentications(ctx, ic, version, cp); err != nil {
					log.Error("PeerAuthentications", "error", err)
					return
				}
				read.Store(true)
				return
			}
			log.Warn("cannot tell whether Istio PeerAuthentications are served yet; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
	return nil
}

// peerAuthVersionServed returns the newest security.istio.io version that
// serves peerauthentications ("" for none); an error means the API server
// did not say.
func peerAuthVersionServed(local kubernetes.Interface) (string, error) {
	for _, v := range istiosource.PeerAuthVersions {
		resources, err := local.Discovery().ServerResourcesForGroupVersion("security.istio.io/" + v)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		for _, r := range resources.APIResources {
			if r.Name == "peerauthentications" {
				return v, nil
			}
		}
	}
	return "", nil
}
