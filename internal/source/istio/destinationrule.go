package istio

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	versioned "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/horizonmesh/horizon/internal/model"
)

// ConvertDestinationRule turns a DestinationRule into the model: its host
// and the top-level trafficPolicy's localityLbSetting, outlierDetection and
// connectionPool, validated as Istio does (an error names the object and
// the field). Subsets, portLevelSettings, tls and exportTo are not read.
//
// A rule with localityLbSetting (unless enabled: false) or with
// outlierDetection makes its service locality-aware: Istio's mesh-wide
// locality setting is on by default and takes effect with outlier
// detection, which a localityLbSetting alone gets with Istio's defaults.
func ConvertDestinationRule(dr *networkingv1.DestinationRule) (*model.DestinationRule, error) {
	obj := "DestinationRule " + dr.Namespace + "/" + dr.Name
	host := dr.Spec.GetHost()
	switch {
	case host == "":
		return nil, fmt.Errorf("%s: spec.host is empty", obj)
	case strings.Contains(host, "*"):
		return nil, fmt.Errorf("%s: spec.host %q: wildcard hosts are not supported; name the service", obj, host)
	}
	out := &model.DestinationRule{Name: dr.Name, Namespace: dr.Namespace, Host: host}
	tp := dr.Spec.GetTrafficPolicy()
	const base = "spec.trafficPolicy."
	if l := tp.GetLoadBalancer().GetLocalityLbSetting(); l != nil {
		if e := l.GetEnabled(); e != nil && !e.GetValue() {
			out.Policy.LocalityOff = true
		} else {
			loc, err := convertLocality(l)
			if err != nil {
				return nil, fmt.Errorf("%s: %sloadBalancer.localityLbSetting.%w", obj, base, err)
			}
			out.Policy.Locality = loc
		}
	}
	if od := tp.GetOutlierDetection(); od != nil {
		o, err := convertOutlier(od)
		if err != nil {
			return nil, fmt.Errorf("%s: %soutlierDetection.%w", obj, base, err)
		}
		out.Policy.Outlier = o
		if out.Policy.Locality == nil && !out.Policy.LocalityOff {
			out.Policy.Locality = &model.LocalityLB{}
		}
	}
	if cp := tp.GetConnectionPool(); cp != nil {
		p, err := convertPool(cp)
		if err != nil {
			return nil, fmt.Errorf("%s: %sconnectionPool.%w", obj, base, err)
		}
		out.Policy.Pool = p
	}
	out.Policy = out.Policy.Seal()
	return out, nil
}

func convertLocality(l *v1alpha3.LocalityLoadBalancerSetting) (*model.LocalityLB, error) {
	out := &model.LocalityLB{}
	if len(l.GetDistribute()) > 0 && (len(l.GetFailover()) > 0 || len(l.GetFailoverPriority()) > 0) {
		return nil, fmt.Errorf("distribute: cannot be set with failover or failoverPriority")
	}
	for i, d := range l.GetDistribute() {
		if d.GetFrom() == "" {
			return nil, fmt.Errorf("distribute[%d].from is empty", i)
		}
		sum := uint32(0)
		for loc, w := range d.GetTo() {
			if loc == "" {
				return nil, fmt.Errorf("distribute[%d].to: an empty locality", i)
			}
			sum += w
		}
		if sum != 100 {
			return nil, fmt.Errorf("distribute[%d].to: weights sum to %d, not 100", i, sum)
		}
		out.Distribute = append(out.Distribute, model.LocalityDistribute{From: d.GetFrom(), To: d.GetTo()})
	}
	for i, f := range l.GetFailover() {
		switch {
		case f.GetFrom() == "" || f.GetTo() == "":
			return nil, fmt.Errorf("failover[%d]: from and to must both be regions", i)
		case strings.Contains(f.GetFrom(), "/") || strings.Contains(f.GetTo(), "/"):
			return nil, fmt.Errorf("failover[%d]: from %q and to %q must be regions, without '/'", i, f.GetFrom(), f.GetTo())
		case f.GetFrom() == f.GetTo():
			return nil, fmt.Errorf("failover[%d]: from and to are the same region %q", i, f.GetFrom())
		}
		out.Failover = append(out.Failover, model.LocalityFailover{From: f.GetFrom(), To: f.GetTo()})
	}
	for i, p := range l.GetFailoverPriority() {
		key, value, pair := strings.Cut(p, "=")
		switch {
		case key == "" || (pair && value == ""):
			return nil, fmt.Errorf("failoverPriority[%d] %q: want a label key or key=value", i, p)
		case !pair && !topologyKey(key):
			// The client's own value of any other label would make every
			// label value a view of its own.
			return nil, fmt.Errorf("failoverPriority[%d] %q: a label without a value must be one of %s, %s, %s, %s, %s (write %s=VALUE to prefer endpoints with that label)",
				i, p, model.LabelNetwork, model.LabelCluster, model.LabelRegion, model.LabelZone, model.LabelSubzone, key)
		}
		out.FailoverPriority = append(out.FailoverPriority, p)
	}
	return out, nil
}

func topologyKey(k string) bool {
	switch k {
	case model.LabelNetwork, model.LabelCluster, model.LabelRegion, model.LabelZone, model.LabelSubzone:
		return true
	}
	return false
}

func convertOutlier(od *v1alpha3.OutlierDetection) (*model.OutlierDetection, error) {
	o := model.DefaultOutlierDetection()
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		o.Consecutive5xx = v.GetValue()
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		o.ConsecutiveGatewayErrors = v.GetValue()
	}
	if od.GetSplitExternalLocalOriginErrors() {
		o.SplitExternalLocalOriginErrors, o.ConsecutiveLocalOriginFailures = true, 5
		if v := od.GetConsecutiveLocalOriginFailures(); v != nil {
			o.ConsecutiveLocalOriginFailures = v.GetValue()
		}
	}
	var err error
	if o.Interval, err = duration("interval", od.GetInterval(), o.Interval); err != nil {
		return nil, err
	}
	if o.BaseEjectionTime, err = duration("baseEjectionTime", od.GetBaseEjectionTime(), o.BaseEjectionTime); err != nil {
		return nil, err
	}
	if p := od.GetMaxEjectionPercent(); p < 0 || p > 100 {
		return nil, fmt.Errorf("maxEjectionPercent %d is not in 0..100", p)
	} else if p > 0 {
		o.MaxEjectionPercent = uint32(p)
	}
	if p := od.GetMinHealthPercent(); p < 0 || p > 100 {
		return nil, fmt.Errorf("minHealthPercent %d is not in 0..100", p)
	} else {
		o.MinHealthPercent = uint32(p)
	}
	return o, nil
}

func convertPool(cp *v1alpha3.ConnectionPoolSettings) (*model.ConnectionPool, error) {
	p := &model.ConnectionPool{}
	tcp, http := cp.GetTcp(), cp.GetHttp()
	for _, f := range []struct {
		name string
		v    int32
		dst  *uint32
	}{
		{"tcp.maxConnections", tcp.GetMaxConnections(), &p.MaxConnections},
		{"http.http1MaxPendingRequests", http.GetHttp1MaxPendingRequests(), &p.HTTP1MaxPendingRequests},
		{"http.http2MaxRequests", http.GetHttp2MaxRequests(), &p.HTTP2MaxRequests},
		{"http.maxRequestsPerConnection", http.GetMaxRequestsPerConnection(), &p.MaxRequestsPerConnection},
		{"http.maxRetries", http.GetMaxRetries(), &p.MaxRetries},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("%s %d is negative", f.name, f.v)
		}
		*f.dst = uint32(f.v)
	}
	var err error
	if p.ConnectTimeout, err = duration("tcp.connectTimeout", tcp.GetConnectTimeout(), 0); err != nil {
		return nil, err
	}
	if p.IdleTimeout, err = duration("http.idleTimeout", http.GetIdleTimeout(), 0); err != nil {
		return nil, err
	}
	return p, nil
}

// duration reads an optional duration of at least 1ms, as Istio requires.
func duration(field string, d *durationpb.Duration, def time.Duration) (time.Duration, error) {
	if d == nil {
		return def, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	if v := d.AsDuration(); v < time.Millisecond {
		return 0, fmt.Errorf("%s %v is under 1ms", field, v)
	}
	return d.AsDuration(), nil
}

// DestinationRuleSink receives the current set of valid DestinationRules.
type DestinationRuleSink interface {
	SetDestinationRules([]*model.DestinationRule)
	DestinationRuleError(object, msg string)
}

// WatchDestinationRules follows networking.istio.io DestinationRules in
// every namespace of the config cluster until ctx ends (one v1 watch sees
// every served version). Invalid rules are reported and left out; the
// others keep applying.
func WatchDestinationRules(ctx context.Context, client versioned.Interface, sink DestinationRuleSink) {
	factory := istioinformers.NewSharedInformerFactory(client, 0)
	inf := factory.Networking().V1().DestinationRules()
	follow(ctx, factory.Start, inf.Informer(),
		func() []*networkingv1.DestinationRule { l, _ := inf.Lister().List(labels.Everything()); return l },
		func(dr *networkingv1.DestinationRule) string { return dr.Namespace + "/" + dr.Name },
		ConvertDestinationRule, sink.SetDestinationRules, sink.DestinationRuleError)
}
