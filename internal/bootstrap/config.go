package bootstrap

import (
	"fmt"
	"time"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/ops"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/source/manifest"
	"github.com/horizonmesh/horizon/internal/xds/server"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// Config is everything `horizon-discovery discovery` is configured with.
type Config struct {
	Kubeconfig        string
	ClusterID         string
	Namespace         string
	SystemNamespace   string
	MeshNetworksFile  string
	Clusters          []string
	XDSAddr           string
	HTTPAddr          string
	Debounce          time.Duration
	DebounceMax       time.Duration
	RemoteSyncTimeout time.Duration
	// StaleEndpointTTL withdraws a remote cluster's endpoints once its API
	// server has not answered for that long; 0: never (fail static).
	StaleEndpointTTL time.Duration
	AllowInsecure    bool
	DomainSuffix     string
	PollInterval     time.Duration
	DNSRefresh       time.Duration
	// The CA and the TLS port.
	CACertsDir     string
	TrustDomain    string
	SecureAddr     string
	SecureSANs     []string
	TokenAudiences []string
	CertTTL        time.Duration
	MaxCertTTL     time.Duration

	// OutboundTrafficPolicy is ALLOW_ANY or REGISTRY_ONLY
	// (translate.Options.OutboundTrafficPolicy).
	OutboundTrafficPolicy string
	// LocalityFailover applies Istio's locality failover (and its outlier
	// detection defaults) to every service without a DestinationRule.
	LocalityFailover bool
	// DefaultMTLSMode is how sidecars accept inbound connections where no
	// PeerAuthentication says: PERMISSIVE (Istio's default) or STRICT.
	DefaultMTLSMode string

	// TokenReview sizes the bearer-token path of both (its own client
	// per cluster, cache, per-peer back-off).
	TokenReview authn.Config

	// HTTPIdleTimeout closes ops HTTP keep-alive connections idle that long.
	HTTPIdleTimeout time.Duration

	// ShutdownGrace bounds a graceful stop: streams are ended with
	// Unavailable and in-flight calls may finish; then connections close.
	ShutdownGrace time.Duration
	// MaxViews and MaxStreams bound what xDS clients can make discovery
	// hold (views are also freed with their last stream).
	MaxViews   int
	MaxStreams int
	// MaxStreamsPerClient bounds one client's streams (a proved identity,
	// else a peer address); 0: a quarter of MaxStreams.
	MaxStreamsPerClient int
	// Sidecar injection (needs a local cluster and the CA): the webhook's
	// TLS address, and what the injected sidecars are told.
	InjectAddr             string
	Network                string
	ProxyImage             string
	InjectDiscoveryAddress string
}

// MinStaleEndpointTTL is the shortest --stale-endpoint-ttl: a shorter one
// would withdraw a cluster at every hiccup of its API server (a watch
// re-established, a leader change).
const MinStaleEndpointTTL = time.Second

// DefaultConfig is the configuration with every flag at its default.
func DefaultConfig() Config {
	return Config{
		ClusterID: "Kubernetes", Namespace: "istio-system", SystemNamespace: "istio-system",
		XDSAddr: ":15010", HTTPAddr: "127.0.0.1:15014", SecureAddr: ":15012", ShutdownGrace: 10 * time.Second,
		HTTPIdleTimeout: ops.DefaultIdleTimeout, MaxViews: server.DefaultMaxViews, MaxStreams: 10000, ProxyImage: "horizon/proxy:latest",
		Debounce: 10 * time.Millisecond, DebounceMax: time.Second, RemoteSyncTimeout: 30 * time.Second,
		DomainSuffix: model.DefaultDomainSuffix, PollInterval: 2 * time.Second, DNSRefresh: 30 * time.Second,
		TrustDomain: "cluster.local", OutboundTrafficPolicy: "ALLOW_ANY", DefaultMTLSMode: string(model.DefaultMTLSMode), TokenAudiences: []string{"istio-ca"}, CertTTL: 24 * time.Hour, MaxCertTTL: 7 * 24 * time.Hour,
		TokenReview: authn.DefaultConfig(),
	}
}

// UsageError marks a Config that cannot run as given: a setting out of
// range, missing or contradicting another, named by its flag (the command
// exits 2 on it).
type UsageError struct{ error }

func (u UsageError) Unwrap() error { return u.error }

func usageErrorf(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// Validate checks c as Run would before starting anything.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}

// validate checks c and returns its manifest clusters.
func (c Config) validate() ([]manifest.ClusterSource, error) {
	if err := model.ValidateClusterID(c.ClusterID); err != nil {
		return nil, usageErrorf("--cluster-id: %v", err)
	}
	if c.Debounce <= 0 || c.DebounceMax < c.Debounce {
		return nil, usageErrorf("--debounce must be > 0 and --debounce-max >= --debounce")
	}
	if c.RemoteSyncTimeout <= 0 || c.PollInterval <= 0 || c.DNSRefresh <= 0 {
		return nil, usageErrorf("--remote-sync-timeout, --poll-interval and --dns-refresh must be > 0")
	}
	if c.StaleEndpointTTL != 0 && c.StaleEndpointTTL < MinStaleEndpointTTL {
		return nil, usageErrorf("--stale-endpoint-ttl %s: must be 0 (never withdraw) or at least %s", c.StaleEndpointTTL, MinStaleEndpointTTL)
	}
	if err := model.ValidateTrustDomain(c.TrustDomain); err != nil {
		return nil, usageErrorf("--trust-domain: %v", err)
	}
	if err := translate.ValidateOutboundTrafficPolicy(c.OutboundTrafficPolicy); err != nil {
		return nil, usageErrorf("--outbound-traffic-policy: %v", err)
	}
	if err := model.ValidateDefaultMTLSMode(c.DefaultMTLSMode); err != nil {
		return nil, usageErrorf("--default-mtls-mode: %v", err)
	}
	if c.InjectAddr != "" {
		if err := c.InjectConfig().Validate(); err != nil {
			return nil, usageErrorf("sidecar injection: %v", err)
		}
	}
	if c.MaxViews < 1 || c.MaxStreams < 1 || c.MaxStreamsPerClient < 0 {
		return nil, usageErrorf("--max-views and --max-streams must be at least 1, --max-streams-per-client at least 0")
	}
	if c.HTTPAddr == "" {
		return nil, usageErrorf("--http-addr is required")
	}
	if c.HTTPIdleTimeout <= 0 {
		return nil, usageErrorf("--http-idle-timeout must be > 0")
	}
	if c.ShutdownGrace <= 0 {
		return nil, usageErrorf("--shutdown-grace must be > 0")
	}
	if len(c.TokenAudiences) == 0 {
		return nil, usageErrorf("--token-audience must not be empty")
	}
	if c.CertTTL <= 0 || c.MaxCertTTL < c.CertTTL {
		return nil, usageErrorf("--cert-ttl must be > 0 and --max-cert-ttl >= --cert-ttl")
	}
	if c.TokenReview.QPS <= 0 || c.TokenReview.Burst < 1 {
		return nil, usageErrorf("--token-review-qps must be > 0 and --token-review-burst >= 1")
	}
	var out []manifest.ClusterSource
	seen := map[model.ClusterID]bool{model.ClusterID(c.ClusterID): c.Kubeconfig != ""}
	for _, s := range c.Clusters {
		cs, err := manifest.ParseClusterFlag(s)
		if err != nil {
			return nil, UsageError{err}
		}
		if seen[cs.ID] {
			return nil, usageErrorf("--cluster %q: cluster ID %s is defined twice", s, cs.ID)
		}
		seen[cs.ID] = true
		out = append(out, cs)
	}
	return out, nil
}

// convertOptions say how every cluster's objects are read into the model.
func (c Config) convertOptions() kube.Options {
	return kube.Options{DomainSuffix: c.DomainSuffix, SystemNamespace: c.SystemNamespace}
}
