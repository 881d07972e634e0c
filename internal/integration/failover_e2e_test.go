//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// failoverRule is helloworld's DestinationRule: locality failover with
// outlier detection quick enough to watch (an error or two ejects, for
// 5 s at first).
const failoverRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true}
    outlierDetection:
      consecutive5xxErrors: 2
      consecutiveGatewayErrors: 2
      interval: 1s
      baseEjectionTime: 5s
`

// TestLocalityFailoverAcrossNetworks is locality failover live, on
// TestAcrossIsolatedNetworks's topology with real localities (cluster1's
// node in region1/zone1, cluster2's in region2/zone2) and helloworld's
// DestinationRule (failoverRule) on cluster1's API server: under a steady
// request loop from sleep1 (cluster1), helloworld v1 (sleep1's zone)
// answers alone while it is healthy; when its process is killed v2
// answers, through cluster2's gateway; v1 back, v1 answers again; killing
// v1's sidecar instead does the same; with v1 down and cluster2's gateway
// killed too, calls fail fast with 503; the gateway back, v2 answers again.
// Each transition's failed requests and the time until the loop sees the
// new state are logged as a table (docs/reliability.md has it).
func TestLocalityFailoverAcrossNetworks(t *testing.T) {
	x := startCrossnet(t, crossnetOptions{Prefix: "hzfo", Net1: "10.71.0", Net2: "10.72.0"})
	hw1, gw2 := x.workloads[1], x.workloads[5]
	gw2Addr := x.gw2Public + ":15443"

	// Localities: the pods' Nodes. No Service selects sleep1 (a client
	// only): where its proxy stands is its Pod's Node all the same.
	nodeLocality(t, x.c1, "node1", "region1", "zone1")
	nodeLocality(t, x.c2, "node2", "region2", "zone2")
	applyObject(t, x.c1, "destinationrules", failoverRule)
	applied := time.Now()
	waitFor(t, 60*time.Second, "sleep1's Envoy to hold v1 in priority 0 and cluster2's gateway in priority 1, with outlier detection", func() bool {
		c := x.admin("sleep1", "/clusters")
		return strings.Contains(c, hw+"::"+x.hwPod1+"::priority::0") && strings.Contains(c, hw+"::"+gw2Addr+"::priority::1") &&
			strings.Contains(x.admin("sleep1", "/config_dump?resource=dynamic_active_clusters"), `"outlier_detection"`)
	})
	t.Logf("the DestinationRule reached sleep1's Envoy in %s", time.Since(applied).Round(time.Millisecond))

	l := x.startLoad("sleep1", 100000, 10*time.Minute)
	defer l.finish()
	var rows []failoverRow
	row := func(name string, since time.Time, want string, maxSteady time.Duration) failoverRow {
		t.Helper()
		r := l.waitSteady(t, name, since, want, 15, maxSteady+20*time.Second)
		rows = append(rows, r)
		t.Logf("%s", r)
		return r
	}
	isV1, isV2, is503 := "Hello version: v1", "Hello version: v2", "error: 503"

	// (a) Healthy: v1 alone.
	row("(a) healthy: v1 answers alone", time.Now(), isV1, 0).requireClean(t)
	if n := l.countSince(time.Now().Add(-time.Hour), isV2); n > 0 {
		t.Errorf("v2 answered %d times while v1 was healthy", n)
	}

	// (b) v1's process killed: v2 through cluster2's gateway.
	killed := time.Now()
	x.apps[hw1.name].Kill()
	row("(b) v1's process killed: v2 through cluster2's gateway", killed, isV2, 5*time.Second).requireWithin(t, 5*time.Second)
	t.Logf("sleep1's helloworld stats with v1 down: %v", x.envoyStats("sleep1", `helloworld.*(outlier_detection\.ejections_(active|enforced_total|overflow)|upstream_rq_retry|upstream_rq_retry_success)$`))

	// (c) v1 back: calls return once its ejection ends — Envoy ejects a
	// host for baseEjectionTime (5 s) times the number of its ejections
	// (the count goes down again while it stays healthy), so the first
	// return takes up to 5 s, the next up to 10 s, ...; v2 answers
	// meanwhile, so no request fails.
	back := time.Now()
	x.startApp(hw1)
	returned := func(name string, since time.Time, limit time.Duration) {
		t.Helper()
		r := row(name, since, isV1, limit)
		r.requireWithin(t, limit)
		r.requireClean(t)
	}
	returned("(c) v1's process back: v1 again", back, 9*time.Second)

	// (b') v1's sidecar killed (its agent and Envoy; the app runs on):
	// v1's inbound connections are refused, not answered 503.
	killed = time.Now()
	x.sidecars[hw1.name].Kill()
	row("(b') v1's sidecar killed: v2 through cluster2's gateway", killed, isV2, 5*time.Second).requireWithin(t, 5*time.Second)
	back = time.Now()
	x.startSidecar(hw1)
	returned("(c') v1's sidecar back: v1 again (its second ejection)", back, 14*time.Second)

	// (d) v1 down and cluster2's gateway killed: a fast 503, no hang.
	killed = time.Now()
	x.apps[hw1.name].Kill()
	row("(b) again: v1's process killed", killed, isV2, 5*time.Second)
	killed = time.Now()
	x.sidecars[gw2.name].Kill()
	d := row("(d) and cluster2's gateway killed: 503", killed, is503, 5*time.Second)
	if d.first > 5*time.Second || d.slowest > 2*time.Second {
		t.Errorf("%s: want the first 503 within 5 s and no request over 2 s", d)
	}

	// (e) The gateway back: v2 again.
	back = time.Now()
	x.startSidecar(gw2)
	row("(e) cluster2's gateway back: v2 again", back, isV2, 30*time.Second).requireRecovered(t, 30*time.Second)
	back = time.Now()
	x.startApp(hw1)
	returned("(f) v1's process back: v1 again (its third or later ejection)", back, 30*time.Second)

	var table strings.Builder
	fmt.Fprintf(&table, "| transition | first new answer | steady | failed requests (after the first new answer) | requests | slowest request |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&table, "| %s | %s | %s | %d (%d) | %d | %s |\n", r.name, r.first.Round(10*time.Millisecond), r.steady.Round(10*time.Millisecond),
			r.failed, r.failedAfter, r.total, r.slowest.Round(time.Millisecond))
	}
	t.Logf("locality failover, sleep1 → helloworld, %.1f requests/s:\n%s", l.rate(), table.String())

	// A change of the rule's outlier detection alone changes helloworld's
	// cluster, not its endpoints: Envoy keeps the updated cluster warming
	// until its load assignment comes again, which discovery sends after
	// the cluster (else Envoy waits out its initial_fetch_timeout, 15 s).
	changed := time.Now()
	rules := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
	updateObject(t, x.c1, rules, "sample", "helloworld", func(o *unstructured.Unstructured) {
		must(t, unstructured.SetNestedField(o.Object, int64(3), "spec", "trafficPolicy", "outlierDetection", "consecutive5xxErrors"))
	})
	waitFor(t, 10*time.Second, "sleep1's Envoy to serve with the rule's new outlier detection (not a warming cluster)", func() bool {
		return strings.Contains(x.admin("sleep1", "/config_dump?resource=dynamic_active_clusters"), `"consecutive_5xx": 3`)
	})
	t.Logf("an outlier-detection-only change was active in sleep1's Envoy after %s", time.Since(changed).Round(time.Millisecond))
	if syncz := x.d.get(t, "/debug/syncz"); strings.Contains(syncz, "lastNACK") {
		t.Errorf("a proxy rejected config:\n%s", syncz)
	}
}

// applyObject creates one object (YAML) of a resource, e.g. an Istio
// Gateway or DestinationRule, on a cluster's API server.
func applyObject(t *testing.T, c *kubeharness.Cluster, resource, doc string) {
	t.Helper()
	obj := &unstructured.Unstructured{}
	must(t, utilyaml.Unmarshal([]byte(doc), &obj.Object))
	gv, err := schema.ParseGroupVersion(obj.GetAPIVersion())
	must(t, err)
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	must(t, err)
	_, err = dyn.Resource(gv.WithResource(resource)).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{})
	must(t, err)
}

// updateObject changes one namespaced object of gvr (an Istio
// DestinationRule, say) on a cluster's API server with edit.
func updateObject(t *testing.T, c *kubeharness.Cluster, gvr schema.GroupVersionResource, namespace, name string, edit func(*unstructured.Unstructured)) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	must(t, err)
	ri := dyn.Resource(gvr).Namespace(namespace)
	obj, err := ri.Get(ctx, name, metav1.GetOptions{})
	must(t, err)
	edit(obj)
	_, err = ri.Update(ctx, obj, metav1.UpdateOptions{})
	must(t, err)
}

// failoverRow is one transition seen by the request loop: from its
// cause (since) until the loop had answered as wanted 15 times in a row.
type failoverRow struct {
	name          string
	first, steady time.Duration // from the cause to the first wanted answer, and to the start of the final run of them
	failed, total int           // requests in the window that failed (other than as wanted), and all of them
	failedAfter   int           // of the failed, those after the first wanted answer
	failures      []string      // the first few failed requests
	slowest       time.Duration
	window        time.Duration
}

func (r failoverRow) String() string {
	return fmt.Sprintf("%s: first after %s, steady after %s; %d/%d requests failed in %s (%d after the first wanted answer) %q; slowest %s", r.name,
		r.first.Round(time.Millisecond), r.steady.Round(time.Millisecond), r.failed, r.total, r.window.Round(time.Millisecond),
		r.failedAfter, r.failures, r.slowest.Round(time.Millisecond))
}

// requireClean: not one request failed.
func (r failoverRow) requireClean(t *testing.T) {
	t.Helper()
	if r.failed > 0 {
		t.Errorf("%s", r)
	}
}

// requireWithin: steady within limit, and at most one failed request per
// second of the window.
func (r failoverRow) requireWithin(t *testing.T, limit time.Duration) {
	t.Helper()
	if r.steady > limit || float64(r.failed) > max(1, r.window.Seconds()) {
		t.Errorf("%s: want steady within %s and at most a failed request per second", r, limit)
	}
}

// requireRecovered: steady within limit, and no request failed once the
// first wanted answer came (those before it are the outage's).
func (r failoverRow) requireRecovered(t *testing.T, limit time.Duration) {
	t.Helper()
	if r.steady > limit || r.failedAfter > 0 {
		t.Errorf("%s: want steady within %s and no failure after the first answer", r, limit)
	}
}

// waitSteady waits until the loop's last n answers since a cause all
// contain want (an answer, or for a failed request "error: " and curl's
// message), and measures the transition.
func (l *load) waitSteady(t *testing.T, name string, since time.Time, want string, n int, timeout time.Duration) failoverRow {
	t.Helper()
	var r failoverRow
	waitFor(t, timeout, name, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		var window []loadSample
		for _, s := range l.samples {
			if !s.at.Before(since) {
				window = append(window, s)
			}
		}
		if len(window) < n {
			return false
		}
		for _, s := range window[len(window)-n:] {
			if !strings.Contains(s.text, want) {
				return false
			}
		}
		r = failoverRow{name: name, total: len(window), first: -1}
		run := len(window)
		for run > 0 && strings.Contains(window[run-1].text, want) {
			run--
		}
		r.steady = window[run].done().Sub(since)
		for _, s := range window {
			ok := strings.Contains(s.text, want)
			if ok && r.first < 0 {
				r.first = s.done().Sub(since)
			}
			if s.failed && !ok {
				r.failed++
				if r.first >= 0 {
					r.failedAfter++
				}
				if len(r.failures) < 3 {
					r.failures = append(r.failures, fmt.Sprintf("+%s %s", s.at.Sub(since).Round(time.Millisecond), s.text))
				}
			}
			r.slowest = max(r.slowest, s.took)
		}
		last := window[len(window)-1]
		r.window = last.done().Sub(since)
		return true
	})
	return r
}

// countSince counts the loop's answers since a time that contain text.
func (l *load) countSince(since time.Time, text string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.samples {
		if !s.at.Before(since) && strings.Contains(s.text, text) {
			n++
		}
	}
	return n
}

// rate is the loop's requests per second so far.
func (l *load) rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(l.total) / l.end.Sub(l.begin).Seconds()
}
