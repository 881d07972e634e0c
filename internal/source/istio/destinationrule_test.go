package istio

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/model"
)

func dr(host string, tp *v1alpha3.TrafficPolicy) *networkingv1.DestinationRule {
	return &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "hw", Namespace: "sample"},
		Spec: v1alpha3.DestinationRule{Host: host, TrafficPolicy: tp}}
}

func lb(l *v1alpha3.LocalityLoadBalancerSetting) *v1alpha3.TrafficPolicy {
	return &v1alpha3.TrafficPolicy{LoadBalancer: &v1alpha3.LoadBalancerSettings{LocalityLbSetting: l}}
}

// Istio's locality failover task: failover, outlier detection, a pool.
func TestConvertDestinationRuleFailoverTask(t *testing.T) {
	tp := lb(&v1alpha3.LocalityLoadBalancerSetting{Failover: []*v1alpha3.LocalityLoadBalancerSetting_Failover{{From: "region1", To: "region2"}}})
	tp.OutlierDetection = &v1alpha3.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(1), Interval: durationpb.New(time.Second), BaseEjectionTime: durationpb.New(time.Minute)}
	tp.ConnectionPool = &v1alpha3.ConnectionPoolSettings{Http: &v1alpha3.ConnectionPoolSettings_HTTPSettings{MaxRequestsPerConnection: 1}}
	got, err := ConvertDestinationRule(dr("helloworld.sample.svc.cluster.local", tp))
	if err != nil {
		t.Fatal(err)
	}
	p := got.Policy
	if !p.LocalityAware() || len(p.Locality.Failover) != 1 || p.Locality.Failover[0] != (model.LocalityFailover{From: "region1", To: "region2"}) {
		t.Errorf("locality %+v", p.Locality)
	}
	want := model.OutlierDetection{Consecutive5xx: 1, Interval: time.Second, BaseEjectionTime: time.Minute, MaxEjectionPercent: 10}
	if p.Outlier == nil || *p.Outlier != want {
		t.Errorf("outlier %+v, want %+v (Istio's defaults for what is not set)", p.Outlier, want)
	}
	if p.Pool == nil || p.Pool.MaxRequestsPerConnection != 1 || p.Key() == "" {
		t.Errorf("pool %+v, key %q", p.Pool, p.Key())
	}
}

// outlierDetection alone opts in (Istio's mesh-wide locality setting is on
// by default); enabled: false keeps the service out; a pool alone does not
// opt in.
func TestConvertDestinationRuleOptIn(t *testing.T) {
	for _, tc := range []struct {
		name string
		tp   *v1alpha3.TrafficPolicy
		want bool
	}{
		{"outlierDetection alone", &v1alpha3.TrafficPolicy{OutlierDetection: &v1alpha3.OutlierDetection{}}, true},
		{"localityLbSetting alone", lb(&v1alpha3.LocalityLoadBalancerSetting{}), true},
		{"enabled false", lb(&v1alpha3.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(false)}), false},
		{"connectionPool alone", &v1alpha3.TrafficPolicy{ConnectionPool: &v1alpha3.ConnectionPoolSettings{}}, false},
		{"no trafficPolicy", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ConvertDestinationRule(dr("hw", tc.tp))
			if err != nil {
				t.Fatal(err)
			}
			if got.Policy.LocalityAware() != tc.want {
				t.Errorf("locality-aware %v, want %v", got.Policy.LocalityAware(), tc.want)
			}
		})
	}
}

func TestConvertDestinationRuleRefused(t *testing.T) {
	for _, tc := range []struct {
		name, host string
		tp         *v1alpha3.TrafficPolicy
		want       string
	}{
		{"no host", "", nil, "spec.host is empty"},
		{"wildcard", "*.sample.svc.cluster.local", nil, "wildcard hosts are not supported"},
		{"distribute and failover", "hw", lb(&v1alpha3.LocalityLoadBalancerSetting{
			Distribute: []*v1alpha3.LocalityLoadBalancerSetting_Distribute{{From: "r1/*", To: map[string]uint32{"r1/*": 100}}},
			Failover:   []*v1alpha3.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2"}}}),
			"localityLbSetting.distribute: cannot be set with failover"},
		{"weights not 100", "hw", lb(&v1alpha3.LocalityLoadBalancerSetting{
			Distribute: []*v1alpha3.LocalityLoadBalancerSetting_Distribute{{From: "r1/*", To: map[string]uint32{"r1/*": 60}}}}),
			"distribute[0].to: weights sum to 60, not 100"},
		{"failover to a zone", "hw", lb(&v1alpha3.LocalityLoadBalancerSetting{
			Failover: []*v1alpha3.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2/z1"}}}), "failover[0]: from \"r1\" and to \"r2/z1\" must be regions"},
		{"failover to itself", "hw", lb(&v1alpha3.LocalityLoadBalancerSetting{
			Failover: []*v1alpha3.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r1"}}}), "same region"},
		{"a client label", "hw", lb(&v1alpha3.LocalityLoadBalancerSetting{FailoverPriority: []string{"version"}}),
			`failoverPriority[0] "version": a label without a value must be one of`},
		{"empty value", "hw", lb(&v1alpha3.LocalityLoadBalancerSetting{FailoverPriority: []string{"version="}}), "want a label key or key=value"},
		{"ejection percent", "hw", &v1alpha3.TrafficPolicy{OutlierDetection: &v1alpha3.OutlierDetection{MaxEjectionPercent: 101}},
			"spec.trafficPolicy.outlierDetection.maxEjectionPercent 101 is not in 0..100"},
		{"interval under 1ms", "hw", &v1alpha3.TrafficPolicy{OutlierDetection: &v1alpha3.OutlierDetection{Interval: durationpb.New(time.Microsecond)}},
			"outlierDetection.interval 1µs is under 1ms"},
		{"negative pool", "hw", &v1alpha3.TrafficPolicy{ConnectionPool: &v1alpha3.ConnectionPoolSettings{Tcp: &v1alpha3.ConnectionPoolSettings_TCPSettings{MaxConnections: -1}}},
			"spec.trafficPolicy.connectionPool.tcp.maxConnections -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ConvertDestinationRule(dr(tc.host, tc.tp))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "DestinationRule sample/hw") {
				t.Fatalf("error %v, want one naming DestinationRule sample/hw and %q", err, tc.want)
			}
		})
	}
}
