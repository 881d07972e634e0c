//go:build bench

package bench

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// `make bench-hostile` (issue 17, docs/performance.md "Hostile load"):
// while attackers run one class of hostile traffic at a time, legitimate
// proxies must keep their service. Each phase (a quiet baseline, then each
// class) gets a discovery process of its own, so that nothing one class
// left behind (heap not yet collected, streams) is charged to the next, on
// the same API server and mesh; it measures
//   - fresh config: a new sidecar of a real Pod, on a new connection to the
//     plaintext port, until it has received and ACKed CDS, EDS for every EDS
//     cluster, LDS and RDS for every route its listeners name, in Envoy's
//     order (target ≤ 1 s);
//   - change latency: an EndpointSlice update until every connected
//     legitimate proxy holds it (target ≤ 2× the quiet baseline);
//   - discovery's heap (go_memstats_heap_inuse_bytes from /metrics, polled)
//     (target peak ≤ 2× the quiet peak);
//   - a token-authenticated stream on the TLS port: a fresh TokenRequest
//     token of a real ServiceAccount (audience istio-ca), from dialling until
//     its first response (target ≤ 1 s, as for the fresh sidecar);
//   - discovery's CPU and log output, and what the attackers got.
//
// No legitimate stream may be refused or ended. Legitimate proxies use the
// plaintext port and dial from 127.0.0.1; the
// attackers dial from 127.0.0.2 onwards (-hostile-attacker-addrs), so that
// per-peer bounds see them as the other clients they would be. The TLS port
// serves the TLS-specific attacks and the token-authenticated measurement.

var (
	hostileDuration  = flag.Duration("hostile-duration", 30*time.Second, "how long each attack class, and the quiet baseline, runs")
	hostileClasses   = flag.String("hostile-classes", "views,typeurls,names,silent,tokens,nacks", "attack classes to run, in order, comma-separated")
	hostileServices  = flag.Int("hostile-services", 300, "Services in the mesh, one Pod-backed endpoint each (plus a spare Pod)")
	hostileProxies   = flag.Int("hostile-proxies", 20, "connected legitimate proxies that measure change latency (half network1 sidecars of real Pods, half network2)")
	hostileAddrs     = flag.Int("hostile-attacker-addrs", 1, "loopback source addresses the attackers spread over (127.0.0.2, 127.0.0.3, ...)")
	hostilePace      = flag.Duration("hostile-pace", 100*time.Millisecond, "an attacker's pause before it opens again once its stream ended")
	hostileLogs      = flag.String("hostile-logs", "", "directory for discovery's logs (discovery-CLASS.log; default: the run's temporary directory, removed after)")
	hostileFreshGap  = flag.Duration("hostile-fresh-gap", 500*time.Millisecond, "pause between two fresh-sidecar measurements")
	hostileChangeGap = flag.Duration("hostile-change-gap", time.Second, "pause between two endpoint changes")
	hostileTokenGap  = flag.Duration("hostile-token-gap", time.Second, "pause between two token-authenticated stream measurements")
	hostileLegitWait = flag.Duration("hostile-legit-timeout", 10*time.Second, "longest a legitimate measurement (fresh config, change, token stream) waits")
	viewStreams      = flag.Int("hostile-view-streams", 512, "class views: sidecar streams claiming combinations of real Pod IPs (CDS+LDS)")
	routerStreams    = flag.Int("hostile-router-streams", 512, "class views: router streams with invented LABELS (CDS+LDS)")
	typeStreams      = flag.Int("hostile-type-streams", 16, "class typeurls: streams sending invented type URLs as requests and NACKs (half short ones, half ~4 MB)")
	deltaNameStreams = flag.Int("hostile-delta-name-streams", 1, "class names: delta streams each subscribing 100 × 30,000 new names")
	sotwNameStreams  = flag.Int("hostile-sotw-name-streams", 10, "class names: SotW streams each naming 3 MB per type for 5 types")
	metadataStreams  = flag.Int("hostile-metadata-streams", 40, "class names: streams whose node carries 3.5 MB of junk metadata")
	silentTLS        = flag.Int("hostile-silent-tls", 300, "class silent: TLS connections (no certificate, no token) whose streams send nothing")
	silentPlain      = flag.Int("hostile-silent-plain", 300, "class silent: plaintext connections whose streams send nothing")
	junkTokenOpens   = flag.Int("hostile-junk-tokens", 60, "class tokens: parallel stream opens on the TLS port with junk bearer tokens, continuously")
	nackStreams      = flag.Int("hostile-nack-streams", 20, "class nacks: streams sending NACKs with distinct 1 KB details back to back")
)

// The targets: a fresh sidecar's full config within hostileFreshTarget;
// change latency and heap peak at most hostileFactor × the quiet baseline's.
const (
	hostileFreshTarget = time.Second
	hostileFactor      = 2.0
)

const hostileHeader = "| class | attackers | fresh config p50 / max | change p50 / max | heap peak | token stream p50 / max | CPU cores: discovery / attackers / legit clients | discovery log | attackers got | targets |\n" +
	"|---|---|---|---|---|---|---|---|---|---|\n"

// TestHostile runs the quiet baseline, then every -hostile-classes class,
// each against a discovery of its own, and prints a row per phase.
func TestHostile(t *testing.T) {
	if !filepath.IsAbs(*horizonBin) {
		abs, _ := filepath.Abs(*horizonBin)
		*horizonBin = abs
	}
	var run []class
	for _, key := range strings.Split(*hostileClasses, ",") {
		c, ok := classByKey(strings.TrimSpace(key))
		if !ok {
			t.Fatalf("-hostile-classes: unknown class %q (views, typeurls, names, silent, tokens, nacks)", key)
		}
		run = append(run, c)
	}

	h := newHostile(t)
	quiet := h.phase(t, class{name: "quiet"})
	rows := []string{quiet.row(nil)}
	h.emit(quiet.row(nil), true)
	for _, miss := range quiet.missed(nil) {
		t.Errorf("quiet: %s", miss)
	}
	for _, c := range run {
		r := h.phase(t, c)
		row := r.row(quiet)
		rows = append(rows, row)
		h.emit(row, false)
		for _, miss := range r.missed(quiet) {
			t.Errorf("%s: %s", c.name, miss)
		}
	}
	t.Logf("hostile load, %d services, %d connected legitimate proxies, %s per class, discovery %s\n\n%s%s",
		*hostileServices, *hostileProxies, *hostileDuration, strings.Join(h.args, " "), hostileHeader, strings.Join(rows, "\n"))
}

// class is one attack class (issue 17's items 1 to 6): run starts its
// attackers (on wg) until ctx ends and returns how the table describes them.
type class struct {
	key, name string
	run       func(ctx context.Context, h *hostile, a *attack, wg *sync.WaitGroup) string
}

var hostileClassList = []class{
	{"views", "views", attackViews},
	{"typeurls", "type URLs", attackTypeURLs},
	{"names", "names, metadata", attackNames},
	{"silent", "silent streams", attackSilent},
	{"tokens", "junk tokens", attackJunkTokens},
	{"nacks", "NACK flood", attackNACKs},
}

func classByKey(key string) (class, bool) {
	for _, c := range hostileClassList {
		if c.key == key {
			return c, true
		}
	}
	return class{}, false
}

// hostile is the harness: the API server and mesh the phases share, and
// the current phase's discovery and connected legitimate proxies.
type hostile struct {
	t          *testing.T
	ctx        context.Context
	cs         kubernetes.Interface
	mesh       *fixture
	names      []string // every Service's outbound cluster
	podIPs     []string // the IP of every Service's endpoint Pod
	kubeconfig string
	logDir     string
	round      int // endpoint changes made so far (add, remove, add, ...)
	freshN     int // fresh sidecars connected so far

	// The current phase's.
	cp     *cpProc
	args   []string // discovery's flags
	secure string   // discovery's TLS xDS address
	ops    string   // discovery's ops HTTP address
	roots  *x509.CertPool
	tr     *tracker // the connected legitimate proxies
	conns  []*client
}

// hostilePort is Service i's port: 20 shapes of workloads, so that a
// sidecar's CDS/LDS view (its cluster and the ports its workload serves)
// depends on which Pod it is.
func hostilePort(i int) int32 { return int32(8000 + i%20) }

func hostileCluster(i int) string {
	return fmt.Sprintf("outbound|%d||%s.%s.svc.cluster.local", hostilePort(i), svcName(i), benchNS)
}

// newHostile starts the API server and writes the mesh.
func newHostile(t *testing.T) *hostile {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kc := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	cfg := rest.CopyConfig(kc.AdminConfig)
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{t: t, ctx: ctx, cs: cs, logDir: kc.Dir, kubeconfig: filepath.Join(t.TempDir(), "kubeconfig")}
	if *hostileLogs != "" {
		h.logDir = *hostileLogs
		if err := os.MkdirAll(h.logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.populate()
	kubeconfig, err := kc.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.kubeconfig, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// start starts the phase's discovery and connects the legitimate proxies.
func (h *hostile) start(phase string) {
	start := time.Now()
	h.startDiscovery(filepath.Join(h.logDir, "discovery-"+strings.ReplaceAll(strings.ReplaceAll(phase, " ", "-"), ",", "")+".log"))
	h.t.Logf("%s: discovery ready in %s (plaintext %s, TLS %s, ops %s; log %s)", phase, time.Since(start).Round(time.Millisecond),
		h.cp.xds, h.secure, h.ops, h.cp.log)
	h.connectProxies()
}

// stop disconnects the legitimate proxies and stops discovery.
func (h *hostile) stop() {
	for _, c := range h.conns {
		c.close()
	}
	h.conns = nil
	h.cp.stop()
}

// populate writes the mesh: the namespaces and istio ConfigMap as
// TestConvergence does, and per Service (port hostilePort(i)) a Pod with its
// IP in the status, a spare Pod for the endpoint changes, and an
// EndpointSlice naming the first.
func (h *hostile) populate() {
	t, ctx, cs := h.t, h.ctx, h.cs
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(writeMeshConfig(ctx, cs))

	n := *hostileServices
	start := time.Now()
	must(createServices(ctx, cs, n, hostilePort))
	const perPod = 2 // the endpoint's Pod and the spare
	must(createPods(ctx, cs, n, perPod, func(i int) corev1.PodSpec {
		return corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "example/app",
			Ports: []corev1.ContainerPort{{ContainerPort: hostilePort(i)}}}}}
	}))
	h.mesh = &fixture{cs: cs, services: n, perSvc: 1, last: make([]*discoveryv1.EndpointSlice, n)}
	must(parallel(n, func(i int) error {
		out, err := cs.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: svcName(i) + "-0", Namespace: benchNS,
				Labels: map[string]string{"kubernetes.io/service-name": svcName(i)}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(hostilePort(i))}},
			Endpoints:   []discoveryv1.Endpoint{endpoint(i, perPod, 0)},
		}, metav1.CreateOptions{})
		h.mesh.last[i] = out
		return err
	}))
	for i := range n {
		h.names = append(h.names, hostileCluster(i))
		h.podIPs = append(h.podIPs, ip(i*perPod+1))
	}
	t.Logf("wrote %d Services, %d Pods, %d EndpointSlices in %s", n, n*perPod, n, time.Since(start).Round(time.Millisecond))
}

// startDiscovery starts bin/horizon discovery with its plaintext and TLS
// xDS ports (its own self-signed CA: no cacerts) and -cp-args, its stdout
// and stderr in one log file, and waits until it is ready and its TLS port
// accepts connections.
func (h *hostile) startDiscovery(logPath string) {
	t := h.t
	p := &cpProc{name: "horizon", xds: freeAddr(t), done: make(chan struct{}), log: logPath}
	h.secure, h.ops = freeAddr(t), freeAddr(t)
	p.cmd = exec.Command(*horizonBin, "discovery", "--kubeconfig", h.kubeconfig, "--cluster-id", "cluster1",
		"--xds-addr", p.xds, "--secure-addr", h.secure, "--http-addr", h.ops)
	p.cmd.Args = append(p.cmd.Args, strings.Fields(*cpArgs)...)
	h.args = p.cmd.Args[1:]
	h.cp = p
	p.run(t, h.ready)
	// The self-signed root the legitimate token client trusts.
	s, err := h.cs.CoreV1().Secrets("istio-system").Get(h.ctx, "horizon-ca-root", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("discovery's self-signed root (Secret istio-system/horizon-ca-root): %v", err)
	}
	h.roots = x509.NewCertPool()
	if !h.roots.AppendCertsFromPEM(s.Data[ca.RootCertFile]) {
		t.Fatalf("Secret horizon-ca-root: no %s", ca.RootCertFile)
	}
}

// ready reports nil once /ready answers 200 and the TLS port accepts.
func (h *hostile) ready() error {
	resp, err := http.Get("http://" + h.ops + "/ready")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/ready: %s", resp.Status)
	}
	c, err := net.DialTimeout("tcp", h.secure, time.Second)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

func (h *hostile) exited() bool {
	select {
	case <-h.cp.done:
		return true
	default:
		return false
	}
}

// connectProxies connects the legitimate proxies that measure change
// latency (the lean client of the convergence benchmark: CDS and EDS for
// every Service, every response ACKed) and waits until each holds every
// Service's endpoints.
func (h *hostile) connectProxies() {
	t := h.t
	want := map[string]uint32{}
	for i, n := range h.names {
		want[n] = uint32(len(h.mesh.last[i].Endpoints)) // 2 while a change has added the spare
	}
	h.tr = newTracker(*hostileProxies, want)
	h.tr.initialT0 = time.Now()
	h.conns = make([]*client, *hostileProxies)
	for i := range h.conns {
		// Even: the sidecar of a real Pod on network1; odd: a sidecar on
		// network2 (its endpoints through network1's gateway).
		node := legitNode(i % h.mesh.services)
		if i%2 == 1 {
			node = istioNode(i, "network2")
		}
		c, err := dial(h.ctx, h.cp.xds, i, node, h.names, false, h.tr)
		if err != nil {
			t.Fatalf("legitimate proxy %d: %v", i, err)
		}
		h.conns[i] = c
	}
	if !waitClosed(h.tr.initialDone, time.Minute) {
		t.Fatalf("the legitimate proxies lack the initial state after 1 min (%v); log: %s", h.tr.firstErr(), tail(h.cp.log))
	}
	t.Logf("%d legitimate proxies hold every Service's endpoints in %s", *hostileProxies, slices.Max(h.tr.initialAt).Round(time.Millisecond))
}

// emit appends a row (after the header, first) to -out.
func (h *hostile) emit(row string, first bool) {
	if *outFile == "" {
		return
	}
	f, err := os.OpenFile(*outFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Errorf("-out: %v", err)
		return
	}
	defer f.Close()
	if first {
		fmt.Fprint(f, "\n"+hostileHeader)
	}
	fmt.Fprintln(f, row)
}
