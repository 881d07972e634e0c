package istio

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	k8stesting "k8s.io/client-go/testing"

	"github.com/horizonmesh/horizon/internal/model"
)

// crossNetworkGateway is the Gateway of Istio's multi-cluster, multi-network
// install (samples/multicluster/expose-services.yaml): every *.local
// service exposed by SNI on the east-west gateway's port 15443.
func crossNetworkGateway() *networkingv1.Gateway {
	return &networkingv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "cross-network-gateway", Namespace: "istio-system"},
		Spec: v1alpha3.Gateway{
			Selector: map[string]string{"istio": "eastwestgateway"},
			Servers: []*v1alpha3.Server{{
				Port:  &v1alpha3.Port{Number: 15443, Name: "tls", Protocol: "TLS"},
				Tls:   &v1alpha3.ServerTLSSettings{Mode: v1alpha3.ServerTLSSettings_AUTO_PASSTHROUGH},
				Hosts: []string{"*.local"},
			}},
		},
	}
}

func wantCrossNetwork() *model.IstioGateway {
	return &model.IstioGateway{
		Name: "cross-network-gateway", Namespace: "istio-system",
		Selector: map[string]string{"istio": "eastwestgateway"},
		Servers: []model.GatewayServer{{
			Port: 15443, PortName: "tls", Protocol: "TLS",
			TLSMode: model.TLSModeAutoPassthrough, Hosts: []string{"*.local"},
		}},
	}
}

func TestConvertCrossNetworkGateway(t *testing.T) {
	got, err := ConvertGateway(crossNetworkGateway())
	if err != nil {
		t.Fatal(err)
	}
	if want := wantCrossNetwork(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ConvertGateway:\n got %+v\nwant %+v", got, want)
	}
	if got.Servers[0].TLSMode != "AUTO_PASSTHROUGH" {
		t.Fatalf("TLS mode %q, want the Istio enum name AUTO_PASSTHROUGH", got.Servers[0].TLSMode)
	}
}

// Every server is kept, in order, with its TLS mode only when it has TLS
// settings; the port bounds 1 and 65535 are valid.
func TestConvertGatewayServers(t *testing.T) {
	g := &networkingv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "ingress", Namespace: "edge"},
		Spec: v1alpha3.Gateway{
			Selector: map[string]string{"istio": "ingressgateway", "app": "gw"},
			Servers: []*v1alpha3.Server{
				{Port: &v1alpha3.Port{Number: 1, Name: "http", Protocol: "HTTP"}, Hosts: []string{"*"}},
				{
					Port:  &v1alpha3.Port{Number: 65535, Name: "https", Protocol: "HTTPS"},
					Tls:   &v1alpha3.ServerTLSSettings{Mode: v1alpha3.ServerTLSSettings_SIMPLE},
					Hosts: []string{"sample/helloworld.sample.svc.cluster.local", "./*.example.com"},
				},
				{
					// TLS settings with no mode: the enum's zero value.
					Port:  &v1alpha3.Port{Number: 15443, Name: "tls", Protocol: "TLS"},
					Tls:   &v1alpha3.ServerTLSSettings{},
					Hosts: []string{"*/*.global"},
				},
			},
		},
	}
	got, err := ConvertGateway(g)
	if err != nil {
		t.Fatal(err)
	}
	want := &model.IstioGateway{
		Name: "ingress", Namespace: "edge",
		Selector: map[string]string{"istio": "ingressgateway", "app": "gw"},
		Servers: []model.GatewayServer{
			{Port: 1, PortName: "http", Protocol: "HTTP", Hosts: []string{"*"}},
			{Port: 65535, PortName: "https", Protocol: "HTTPS", TLSMode: "SIMPLE",
				Hosts: []string{"sample/helloworld.sample.svc.cluster.local", "./*.example.com"}},
			{Port: 15443, PortName: "tls", Protocol: "TLS", TLSMode: "PASSTHROUGH", Hosts: []string{"*/*.global"}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ConvertGateway:\n got %+v\nwant %+v", got, want)
	}
}

// A Gateway with a selector and no server is valid: it configures nothing.
func TestConvertGatewayWithoutServers(t *testing.T) {
	g := crossNetworkGateway()
	g.Spec.Servers = nil
	got, err := ConvertGateway(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Servers) != 0 || got.Name != "cross-network-gateway" || got.Selector["istio"] != "eastwestgateway" {
		t.Fatalf("ConvertGateway = %+v", got)
	}
}

func TestConvertGatewayErrors(t *testing.T) {
	second := func(s *v1alpha3.Server) func(*networkingv1.Gateway) {
		return func(g *networkingv1.Gateway) { g.Spec.Servers = append(g.Spec.Servers, s) }
	}
	for _, tc := range []struct {
		name   string
		mutate func(*networkingv1.Gateway)
		// want are substrings of the error: the field and the reason.
		want []string
	}{
		{"nil selector", func(g *networkingv1.Gateway) { g.Spec.Selector = nil },
			[]string{"spec.selector is empty"}},
		{"empty selector", func(g *networkingv1.Gateway) { g.Spec.Selector = map[string]string{} },
			[]string{"spec.selector is empty"}},
		{"port 0", second(&v1alpha3.Server{Port: &v1alpha3.Port{Number: 0, Name: "x", Protocol: "TLS"}, Hosts: []string{"*"}}),
			[]string{"spec.servers[1].port.number 0 out of range"}},
		{"no port", second(&v1alpha3.Server{Hosts: []string{"*"}}),
			[]string{"spec.servers[1].port.number 0 out of range"}},
		{"port 65536", second(&v1alpha3.Server{Port: &v1alpha3.Port{Number: 65536, Name: "x", Protocol: "TLS"}, Hosts: []string{"*"}}),
			[]string{"spec.servers[1].port.number 65536 out of range"}},
		{"port 2^32-1", second(&v1alpha3.Server{Port: &v1alpha3.Port{Number: 1<<32 - 1}, Hosts: []string{"*"}}),
			[]string{"spec.servers[1].port.number 4294967295 out of range"}},
		{"nil hosts", second(&v1alpha3.Server{Port: &v1alpha3.Port{Number: 443, Name: "https", Protocol: "HTTPS"}}),
			[]string{"spec.servers[1].hosts is empty"}},
		{"empty hosts", func(g *networkingv1.Gateway) { g.Spec.Servers[0].Hosts = []string{} },
			[]string{"spec.servers[0].hosts is empty"}},
		// The first invalid server is the one reported.
		{"first bad server", func(g *networkingv1.Gateway) {
			g.Spec.Servers[0].Port.Number = 70000
			g.Spec.Servers = append(g.Spec.Servers, &v1alpha3.Server{Port: &v1alpha3.Port{Number: 80}})
		}, []string{"spec.servers[0].port.number 70000 out of range"}},
		// The selector is checked before the servers.
		{"selector and port", func(g *networkingv1.Gateway) {
			g.Spec.Selector = nil
			g.Spec.Servers[0].Port.Number = 0
		}, []string{"spec.selector is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := crossNetworkGateway()
			g.Namespace, g.Name = "sample", "bad-gw"
			tc.mutate(g)
			got, err := ConvertGateway(g)
			if err == nil {
				t.Fatalf("ConvertGateway accepted it: %+v", got)
			}
			if got != nil {
				t.Errorf("ConvertGateway returned %+v with its error", got)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "Gateway sample/bad-gw: ") {
				t.Errorf("error %q does not start by naming the object (Gateway sample/bad-gw)", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// sinkEvent is one call to a Sink: a set of Gateways, or an error.
type sinkEvent struct {
	set    []*model.IstioGateway
	isErr  bool
	object string
	msg    string
}

// chanSink records every call in order on one channel, so that a test
// sees a push's errors and then its set, as WatchGateways makes them.
type chanSink struct{ events chan sinkEvent }

func (s chanSink) SetIstioGateways(gws []*model.IstioGateway) {
	s.events <- sinkEvent{set: gws}
}

func (s chanSink) IstioGatewayError(object, msg string) {
	s.events <- sinkEvent{isErr: true, object: object, msg: msg}
}

// next returns the next event, failing the test if none comes in time.
func (s chanSink) next(t *testing.T) sinkEvent {
	t.Helper()
	select {
	case e := <-s.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no call to the sink in 10 s")
		return sinkEvent{}
	}
}

// waitPush skips events until a push whose errors name exactly the objects
// errs (in order) and whose set equals want arrives.
func (s chanSink) waitPush(t *testing.T, errs []string, want ...*model.IstioGateway) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var pushErrs, lastErrs []string
	var last []*model.IstioGateway
	for {
		select {
		case e := <-s.events:
			if e.isErr {
				pushErrs = append(pushErrs, e.object)
				continue
			}
			last, lastErrs = e.set, pushErrs
			pushErrs = nil
			if sameSet(last, want) && slices.Equal(lastErrs, errs) {
				return
			}
		case <-deadline:
			t.Fatalf("the sink never got the set %s with errors for %q; last %s with errors for %q",
				describe(want), errs, describe(last), lastErrs)
		}
	}
}

// waitError skips events until an error for object arrives, checks that
// its message contains every want, and returns the set of the same push
// (the event right after that push's errors).
func (s chanSink) waitError(t *testing.T, object string, want ...string) []*model.IstioGateway {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-s.events:
			if !e.isErr || e.object != object {
				continue
			}
			for _, w := range want {
				if !strings.Contains(e.msg, w) {
					t.Fatalf("error for %s is %q, which does not contain %q", object, e.msg, w)
				}
			}
			for {
				if e := s.next(t); !e.isErr {
					return e.set
				}
			}
		case <-deadline:
			t.Fatalf("the sink never got an error for %s", object)
		}
	}
}

func sameSet(got, want []*model.IstioGateway) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			return false
		}
	}
	return true
}

func describe(gws []*model.IstioGateway) string {
	var parts []string
	for _, g := range gws {
		parts = append(parts, fmt.Sprintf("%s/%s%+v", g.Namespace, g.Name, g.Servers))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// startWatch runs WatchGateways on a fake clientset holding gws, and
// returns once the informer's watch is open: from then on every change made
// through the clientset reaches the informer (the fake's watch does not
// replay what happened between the list and the watch).
func startWatch(t *testing.T, gws ...*networkingv1.Gateway) (*fake.Clientset, chanSink) {
	t.Helper()
	// The fake clientset cannot stream a watch-list (no initial-events
	// bookmark), and Istio's generated informers do not tell client-go so:
	// list, then watch, as against an API server without the feature.
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	client := fake.NewSimpleClientset()
	// Created through the client rather than given to NewSimpleClientset,
	// whose tracker files a Gateway under the guessed resource "gatewaies"
	// (meta.UnsafeGuessKindToResource), where List never finds it.
	for _, g := range gws {
		if _, err := client.NetworkingV1().Gateways(g.Namespace).Create(context.Background(), g, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("gateways", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		once.Do(func() { close(watching) })
		return true, w, nil
	})
	sink := chanSink{events: make(chan sinkEvent, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		WatchGateways(ctx, client, sink)
	}()
	t.Cleanup(func() {
		cancel()
		<-returned
	})
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("the informer never opened its watch")
	}
	select {
	case <-returned: // synced, and the initial push made
	case <-time.After(10 * time.Second):
		t.Fatal("WatchGateways did not return once its informer had synced")
	}
	return client, sink
}

// With no Gateway at all the sink still gets a (empty) set once synced.
func TestWatchGatewaysEmpty(t *testing.T) {
	_, sink := startWatch(t)
	e := sink.next(t)
	if e.isErr || len(e.set) != 0 {
		t.Fatalf("first call to the sink: %+v, want an empty set", e)
	}
}

func TestWatchGatewaysFollowsChanges(t *testing.T) {
	ctx := context.Background()
	invalid := crossNetworkGateway()
	invalid.Namespace, invalid.Name = "sample", "no-selector"
	invalid.Spec.Selector = nil
	client, sink := startWatch(t, crossNetworkGateway(), invalid)
	gws := client.NetworkingV1().Gateways

	// The initial list: the valid one is served, the invalid one reported
	// (naming the object and the field) and left out.
	set := sink.waitError(t, "sample/no-selector", "Gateway sample/no-selector", "spec.selector is empty")
	if !sameSet(set, []*model.IstioGateway{wantCrossNetwork()}) {
		t.Fatalf("set with the invalid Gateway: %s, want only istio-system/cross-network-gateway", describe(set))
	}

	// Add: a second valid Gateway, listed in namespace/name order.
	ingress := &networkingv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "ingress", Namespace: "edge"},
		Spec: v1alpha3.Gateway{
			Selector: map[string]string{"istio": "ingressgateway"},
			Servers:  []*v1alpha3.Server{{Port: &v1alpha3.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"*"}}},
		},
	}
	if _, err := gws("edge").Create(ctx, ingress, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantIngress := &model.IstioGateway{Name: "ingress", Namespace: "edge",
		Selector: map[string]string{"istio": "ingressgateway"},
		Servers:  []model.GatewayServer{{Port: 80, PortName: "http", Protocol: "HTTP", Hosts: []string{"*"}}}}
	sink.waitPush(t, []string{"sample/no-selector"}, wantIngress, wantCrossNetwork())

	// Update: the new content replaces the old.
	moved := crossNetworkGateway()
	moved.Spec.Servers[0].Port.Number = 15444
	if _, err := gws("istio-system").Update(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantMoved := wantCrossNetwork()
	wantMoved.Servers[0].Port = 15444
	sink.waitPush(t, []string{"sample/no-selector"}, wantIngress, wantMoved)

	// An update making a Gateway invalid: reported, left out, and the
	// other valid Gateway keeps being served in that same push.
	broken := ingress.DeepCopy()
	broken.Spec.Servers[0].Hosts = nil
	if _, err := gws("edge").Update(ctx, broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	set = sink.waitError(t, "edge/ingress", "Gateway edge/ingress", "spec.servers[0].hosts is empty")
	if !sameSet(set, []*model.IstioGateway{wantMoved}) {
		t.Fatalf("set after edge/ingress became invalid: %s, want only the cross-network gateway", describe(set))
	}

	// Fixing the other invalid Gateway brings it in.
	fixed := invalid.DeepCopy()
	fixed.Spec.Selector = map[string]string{"istio": "eastwestgateway"}
	if _, err := gws("sample").Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantFixed := wantCrossNetwork()
	wantFixed.Namespace, wantFixed.Name = "sample", "no-selector"
	sink.waitPush(t, []string{"edge/ingress"}, wantMoved, wantFixed)

	// Deletes: of the invalid one (its error stops), then of the valid ones.
	if err := gws("edge").Delete(ctx, "ingress", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitPush(t, nil, wantMoved, wantFixed)
	if err := gws("istio-system").Delete(ctx, "cross-network-gateway", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitPush(t, nil, wantFixed)
	if err := gws("sample").Delete(ctx, "no-selector", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitPush(t, nil)
}
