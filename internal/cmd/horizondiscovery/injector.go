package horizondiscovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/model"
)

// InjectorConfig configures `horizon-discovery injector`, the sidecar injector of a
// remote cluster, which runs no discovery of its own.
type InjectorConfig struct {
	Kubeconfig                     string
	Namespace                      string
	ClusterID                      string
	Network                        string
	TrustDomain                    string
	ProxyImage                     string
	Addr                           string
	DiscoveryAddress, DiscoverySAN string
}

// InjectorServiceName is the remote cluster's injector Service.
const InjectorServiceName = "horizon-injector"

// injectorCASecret holds the CA of the injector's serving certificate,
// shared by its replicas (so they agree on the webhook's caBundle). It is
// not the mesh CA: the injector signs nothing for workloads.
const injectorCASecret = "horizon-injector-ca"

func newInjectorCommand(logger *slog.Logger) *cobra.Command {
	c := InjectorConfig{Namespace: "istio-system", ClusterID: "Kubernetes", TrustDomain: "cluster.local",
		ProxyImage: "horizon/proxy:latest", Addr: ":15017"}
	cmd := &cobra.Command{
		Use:   "injector",
		Short: "Inject sidecars in a remote cluster (no discovery there): their CLUSTER_ID, NETWORK and the primary's discovery address",
		Long: `injector serves the sidecar-injection webhook of a remote cluster. Injected sidecars get
this cluster's --cluster-id and --network and dial the primary's discovery at
--discovery-address (the primary's east-west gateway, port 15443) as --discovery-san. It
publishes the mesh root certificate (root-cert.pem of the cacerts Secret in --namespace, the
walkthrough's shared CA) as ConfigMap istio-ca-root-cert in every namespace, and keeps the
webhook configuration's caBundle equal to its own serving CA (Secret horizon-injector-ca).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return RunInjector(ctx, c, logger, nil)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig of this (remote) cluster; empty: in-cluster config")
	fl.StringVar(&c.Namespace, "namespace", c.Namespace, "namespace of the cacerts Secret and the injector")
	fl.StringVar(&c.ClusterID, "cluster-id", c.ClusterID, "this cluster's ID, given to injected sidecars")
	fl.StringVar(&c.Network, "network", "", "this cluster's network, given to injected sidecars")
	fl.StringVar(&c.TrustDomain, "trust-domain", c.TrustDomain, "SPIFFE trust domain")
	fl.StringVar(&c.ProxyImage, "proxy-image", c.ProxyImage, "image of injected sidecars")
	fl.StringVar(&c.Addr, "inject-addr", c.Addr, "TLS address of the webhook")
	fl.StringVar(&c.DiscoveryAddress, "discovery-address", "", "host:port where injected sidecars reach discovery (required)")
	fl.StringVar(&c.DiscoverySAN, "discovery-san", "", "name in discovery's certificate as reached there (through a gateway: outbound_.15012_._.horizon.istio-system.svc.cluster.local)")
	return cmd
}

// RunInjector serves until ctx ends. lis, if given, replaces --inject-addr.
func RunInjector(ctx context.Context, c InjectorConfig, log *slog.Logger, lis net.Listener) error {
	if err := model.ValidateTrustDomain(c.TrustDomain); err != nil {
		return cmdutil.Usagef("--trust-domain: %v", err)
	}
	cfg := bootstrap.DefaultConfig().InjectConfig()
	cfg.ClusterID, cfg.Network, cfg.TrustDomain, cfg.ProxyImage = c.ClusterID, c.Network, c.TrustDomain, c.ProxyImage
	cfg.DiscoveryAddress, cfg.DiscoverySAN = c.DiscoveryAddress, c.DiscoverySAN
	if err := cfg.Validate(); err != nil {
		return cmdutil.Usagef("%v", err)
	}
	restCfg, err := bootstrap.LocalConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	if restCfg == nil {
		return cmdutil.Usagef("no cluster: give --kubeconfig or run in a cluster")
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	root, err := meshRoot(ctx, client, c.Namespace)
	if err != nil {
		return err
	}
	serving, err := bootstrap.SharedSelfSignedIn(ctx, client, c.Namespace, injectorCASecret, c.TrustDomain, log)
	if err != nil {
		return err
	}
	if lis == nil {
		if lis, err = net.Listen("tcp", c.Addr); err != nil {
			return fmt.Errorf("--inject-addr: %w", err)
		}
	}
	names := []string{InjectorServiceName + "." + c.Namespace + ".svc", InjectorServiceName + "." + c.Namespace + ".svc.cluster.local",
		"localhost", "127.0.0.1"}
	ws, err := bootstrap.WebhookServer(ctx, cfg, client, serving, ca.Identity(c.TrustDomain, c.Namespace, InjectorServiceName), names, log)
	if err != nil {
		lis.Close()
		return err
	}
	bootstrap.PublishRootCert(ctx, client, root, log)
	log.Info("serving sidecar injection", "addr", lis.Addr().String(), "cluster", c.ClusterID, "network", c.Network, "discovery", c.DiscoveryAddress)
	done := make(chan error, 1)
	go func() { done <- ws.ServeTLS(lis, "", "") }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ws.Shutdown(shutdown)
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("injector stopped")
	return nil
}

// meshRoot reads the mesh root from the cacerts Secret, retrying while the
// API server cannot be reached: without it injected pods could trust
// nothing.
func meshRoot(ctx context.Context, client kubernetes.Interface, namespace string) ([]byte, error) {
	backoff := time.Second
	for {
		s, err := client.CoreV1().Secrets(namespace).Get(ctx, bootstrap.CASecretName, metav1.GetOptions{})
		switch {
		case err == nil:
			if len(s.Data[ca.RootCertFile]) == 0 {
				return nil, fmt.Errorf("Secret %s/%s has no %s", namespace, bootstrap.CASecretName, ca.RootCertFile)
			}
			return s.Data[ca.RootCertFile], nil
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("Secret %s/%s not found: a remote cluster shares the primary's CA (create cacerts as on the primary)", namespace, bootstrap.CASecretName)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
