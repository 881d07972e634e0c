package bootstrap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/inject"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/ops"
	"github.com/horizonmesh/horizon/internal/rootcert"
)

// InjectConfig is the sidecar the webhook injects into this cluster's pods.
func (c Config) InjectConfig() inject.Config {
	cfg := inject.Defaults()
	cfg.ClusterID, cfg.Network, cfg.TrustDomain = c.ClusterID, c.Network, c.TrustDomain
	cfg.ProxyImage = c.ProxyImage
	cfg.DiscoveryAddress = c.InjectDiscoveryAddress
	if cfg.DiscoveryAddress == "" {
		cfg.DiscoveryAddress = fmt.Sprintf("%s.%s.svc:%d", install.DiscoveryName, c.Namespace, install.PortSecure)
	}
	return cfg
}

// injectionServer serves the sidecar-injection webhook over TLS with a
// certificate from the mesh CA, whose root it keeps in the webhook
// configuration's caBundle so the API server trusts it.
func injectionServer(ctx context.Context, c Config, local kubernetes.Interface, a *ca.Authority, log *slog.Logger) (*http.Server, error) {
	names := append([]string{
		install.DiscoveryName + "." + c.Namespace + ".svc",
		install.DiscoveryName + "." + c.Namespace + ".svc.cluster.local"}, c.SecureSANs...)
	return WebhookServer(ctx, c.InjectConfig(), local, a, ca.Identity(c.TrustDomain, c.Namespace, install.DiscoveryName), names, log)
}

// WebhookServer serves inject.Handler for cfg over TLS with a certificate
// of serving for names, and keeps the webhook configuration's caBundle
// equal to serving's root.
func WebhookServer(ctx context.Context, cfg inject.Config, local kubernetes.Interface, serving *ca.Authority, id *url.URL, names []string, log *slog.Logger) (*http.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, usageErrorf("injection: %v", err)
	}
	lookup := func(name string) (*corev1.Namespace, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return local.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	}
	cert, err := servingCert(serving, id, names)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(inject.WebhookPath, inject.Handler(cfg, lookup, log))
	go keepCABundle(ctx, local, serving.RootPEM(), log)
	// The API server keeps its connections to a webhook alive; anyone
	// else who reaches the port could hold idle ones forever.
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10, IdleTimeout: ops.DefaultIdleTimeout,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}}, nil
}

// servingCert signs a TLS serving certificate for names with a.
func servingCert(a *ca.Authority, id *url.URL, names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	var dns []string
	var ips []net.IP
	for _, s := range names {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, s)
		}
	}
	leaf, err := a.SignServer(&key.PublicKey, id, dns, ips, 365*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	var chain [][]byte
	for _, p := range append([]string{string(leaf)}, a.ChainPEM()...) {
		b, _ := pem.Decode([]byte(p))
		chain = append(chain, b.Bytes)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}, nil
}

// keepCABundle sets the root on every webhook of Horizon's
// MutatingWebhookConfiguration, now and whenever it drifts (an install
// re-applied without it, another replica with another root), checking
// every 10 s; a missing configuration is waited for.
func keepCABundle(ctx context.Context, client kubernetes.Interface, root []byte, log *slog.Logger) {
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	warned := false
	for {
		err := func() error {
			cur, err := mwcs.Get(ctx, install.WebhookName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			changed := false
			for i := range cur.Webhooks {
				if !bytes.Equal(cur.Webhooks[i].ClientConfig.CABundle, root) {
					cur.Webhooks[i].ClientConfig.CABundle, changed = root, true
				}
			}
			if !changed {
				return nil
			}
			if _, err := mwcs.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
				return err
			}
			log.Info("injection webhook caBundle set", "webhook", install.WebhookName)
			return nil
		}()
		if err != nil && !warned && ctx.Err() == nil {
			if apierrors.IsNotFound(err) {
				log.Info("no injection webhook configuration yet; will set its caBundle when it appears", "webhook", install.WebhookName)
			} else {
				log.Warn("injection webhook caBundle", "error", err)
			}
			warned = true
		} else if err == nil {
			warned = false
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// PublishRootCert keeps istio-ca-root-cert in every namespace of the
// local cluster.
func PublishRootCert(ctx context.Context, local kubernetes.Interface, root []byte, log *slog.Logger) {
	p := &rootcert.Publisher{Client: local, RootPEM: root, Log: log,
		Labels: map[string]string{install.ManagedByLabel: install.ManagedBy}}
	go p.Run(ctx)
}
