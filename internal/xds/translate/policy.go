package translate

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/horizonmesh/horizon/internal/model"
)

// applyPolicy sets what a service's traffic policy asks of its outbound
// cluster (Istio's mapping of a DestinationRule's trafficPolicy):
//   - outlierDetection → outlier_detection, consecutive errors enforced at
//     100%, and minHealthPercent as the healthy panic threshold (0: a
//     priority never panics into its ejected hosts, so traffic moves to the
//     next one);
//   - locality distribute → locality-weighted load balancing;
//   - connectionPool → the circuit breaker's default thresholds
//     (maxConnections, http1MaxPendingRequests, http2MaxRequests,
//     maxRetries), connect_timeout, and on HTTP ports the common HTTP
//     options (idleTimeout, maxRequestsPerConnection).
func applyPolicy(c *clusterv3.Cluster, pol *model.TrafficPolicy, proto model.Protocol, http map[string]*anypb.Any) map[string]*anypb.Any {
	if pol == nil {
		return http
	}
	if o := pol.Outlier; o != nil {
		od := &clusterv3.OutlierDetection{
			Interval:           durationpb.New(o.Interval),
			BaseEjectionTime:   durationpb.New(o.BaseEjectionTime),
			MaxEjectionPercent: wrapperspb.UInt32(o.MaxEjectionPercent),
			// Success-rate ejection is Envoy's default, not Istio's.
			EnforcingSuccessRate: wrapperspb.UInt32(0),
			// Since Envoy 1.27 max_ejection_percent is a hard limit: with
			// the default 10 % a cluster of fewer than ten hosts (a local
			// endpoint and a remote network's gateway) never ejects one
			// (ejections_overflow), and failover rests on retries alone,
			// each request paying for the dead endpoint again. As Envoy
			// did before, and as Istio's documentation promises, one host
			// may always be ejected.
			AlwaysEjectOneHost: wrapperspb.Bool(true),
		}
		od.Consecutive_5Xx, od.EnforcingConsecutive_5Xx = threshold(o.Consecutive5xx)
		od.ConsecutiveGatewayFailure, od.EnforcingConsecutiveGatewayFailure = threshold(o.ConsecutiveGatewayErrors)
		if o.SplitExternalLocalOriginErrors {
			od.SplitExternalLocalOriginErrors = true
			od.ConsecutiveLocalOriginFailure, od.EnforcingConsecutiveLocalOriginFailure = threshold(o.ConsecutiveLocalOriginFailures)
		}
		c.OutlierDetection = od
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(o.MinHealthPercent)}}
	}
	if l := pol.Locality; l != nil && len(l.Distribute) > 0 {
		if c.CommonLbConfig == nil {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		c.CommonLbConfig.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}
	}
	p := pol.Pool
	if p == nil {
		return http
	}
	if p.ConnectTimeout > 0 {
		c.ConnectTimeout = durationpb.New(p.ConnectTimeout)
	}
	t := &clusterv3.CircuitBreakers_Thresholds{}
	set := false
	for _, f := range []struct {
		v   uint32
		dst **wrapperspb.UInt32Value
	}{{p.MaxConnections, &t.MaxConnections}, {p.HTTP1MaxPendingRequests, &t.MaxPendingRequests},
		{p.HTTP2MaxRequests, &t.MaxRequests}, {p.MaxRetries, &t.MaxRetries}} {
		if f.v > 0 {
			*f.dst, set = wrapperspb.UInt32(f.v), true
		}
	}
	if set {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
	}
	if (p.IdleTimeout == 0 && p.MaxRequestsPerConnection == 0) || !(proto.IsHTTP() || proto == model.ProtocolUnknown) {
		return http
	}
	common := &corev3.HttpProtocolOptions{}
	if p.IdleTimeout > 0 {
		common.IdleTimeout = durationpb.New(p.IdleTimeout)
	}
	if p.MaxRequestsPerConnection > 0 {
		common.MaxRequestsPerConnection = wrapperspb.UInt32(p.MaxRequestsPerConnection)
	}
	o := &httpv3.HttpProtocolOptions{}
	if a := http[httpProtocolOptionsName]; a != nil {
		if err := a.UnmarshalTo(o); err != nil {
			panic("translate: re-reading built HTTP options: " + err.Error())
		}
	} else {
		// Envoy's default, HTTP/1.1, said explicitly: the options need one.
		o.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}}
	}
	o.CommonHttpProtocolOptions = common
	return map[string]*anypb.Any{httpProtocolOptionsName: mustAny(o)}
}

// threshold is a consecutive-errors setting: n errors, enforced always; 0
// is off (enforced never; Envoy counts anyway, with its default of 5).
func threshold(n uint32) (count, enforcing *wrapperspb.UInt32Value) {
	if n == 0 {
		return nil, wrapperspb.UInt32(0)
	}
	return wrapperspb.UInt32(min(n, math.MaxUint32)), wrapperspb.UInt32(100)
}
