//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

var (
	cpName       = flag.String("cp", "horizon", "control plane: horizon (bin/horizon-discovery discovery) or istiod (pilot-discovery)")
	horizonBin   = flag.String("horizon-bin", "../../bin/horizon-discovery", "the horizon-discovery binary (make build)")
	istiodBin    = flag.String("istiod-bin", "", "Istio's pilot-discovery (scripts/istiod.sh builds it)")
	istioCRDs    = flag.String("istio-crds", "", "Istio's crd-all.gen.yaml, applied before istiod starts")
	cpArgs       = flag.String("cp-args", "", "extra flags for the control plane, space-separated")
	cpEnv        = flag.String("cp-env", "", "extra environment of the control plane, space-separated NAME=VALUE")
	clientsFlag  = flag.String("clients", "100", "ADS clients M, comma-separated for several runs")
	servicesFlag = flag.String("services", "1,1000", "Services, comma-separated")
	endpoints    = flag.String("endpoints", "1000", "endpoints in total (spread evenly over the Services), comma-separated")
	rounds       = flag.Int("rounds", 20, "endpoint changes per run (add, then remove, one endpoint of one Service)")
	gap          = flag.Duration("gap", 300*time.Millisecond, "pause after a change has converged, before the next")
	roundTimeout = flag.Duration("round-timeout", 60*time.Second, "longest wait for one change to reach every client")
	initTimeout  = flag.Duration("init-timeout", 5*time.Minute, "longest wait for every client to hold the initial state")
	readyTimeout = flag.Duration("ready-timeout", 5*time.Minute, "longest wait for the control plane's readiness")
	deltaFlag    = flag.Bool("delta", false, "clients speak delta xDS (DeltaAggregatedResources) instead of SotW")
	outFile      = flag.String("out", "", "append each run's table row (markdown) to this file")
)

const (
	benchNS      = "bench"
	servicePort  = 5000
	sliceSize    = 100 // what the EndpointSlice controller puts in one slice
	gatewayAddr  = "198.51.100.1"
	meshNetworks = "networks:\n  network1:\n    endpoints:\n    - fromRegistry: cluster1\n    gateways:\n    - address: " + gatewayAddr + "\n      port: 15443\n" +
		// network2 holds only the clients (their node IPs): a mesh network
		// both control planes know, with no endpoints of the Services.
		"  network2:\n    endpoints:\n    - fromCidr: 10.250.0.0/16\n    gateways:\n    - address: 198.51.100.2\n      port: 15443\n"
)

func ints(t *testing.T, s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("bad size %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out
}

const header = "| control plane | clients | services × endpoints | initial fan-out | p50 | p99 | max | CPU per change | CPU initial | peak RSS | bytes per change | bytes initial |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|\n"

// TestConvergence runs one benchmark per combination of -clients, -services
// and -endpoints, each against a fresh API server and control plane.
func TestConvergence(t *testing.T) {
	if !filepath.IsAbs(*horizonBin) {
		abs, _ := filepath.Abs(*horizonBin)
		*horizonBin = abs
	}
	var rows []string
	for _, m := range ints(t, *clientsFlag) {
		for _, e := range ints(t, *endpoints) {
			for _, s := range ints(t, *servicesFlag) {
				if e%s != 0 {
					t.Fatalf("%d endpoints do not spread evenly over %d services", e, s)
				}
				name := fmt.Sprintf("%s/M=%d/S=%d/E=%d", *cpName, m, s, e)
				t.Run(name, func(t *testing.T) {
					row := run(t, m, s, e/s)
					rows = append(rows, row)
					if *outFile != "" {
						f, err := os.OpenFile(*outFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
						if err == nil {
							fmt.Fprintln(f, row)
							f.Close()
						}
					}
				})
			}
		}
	}
	t.Logf("\n%s%s", header, strings.Join(rows, "\n"))
}

type fixture struct {
	cs       kubernetes.Interface
	services int
	perSvc   int
	// The last slice of each Service, as last written (the churn edits it).
	last []*discoveryv1.EndpointSlice
}

func ip(g int) string { return fmt.Sprintf("10.%d.%d.%d", 16+g>>16&0xff, g>>8&0xff, g&0xff) }

func svcName(i int) string { return fmt.Sprintf("svc-%d", i) }

func clusterName(i int) string {
	return fmt.Sprintf("outbound|%d||%s.%s.svc.cluster.local", servicePort, svcName(i), benchNS)
}

// parallel runs f(0..n-1) on 32 goroutines, returning the first error.
func parallel(n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// populate writes the namespaces, the istio ConfigMap (mesh config and
// meshNetworks: network1 reached through one gateway), and per Service its
// Pods (mTLS-capable, IP written through the status as a kubelet would: a
// client on network2 reaches only those through network1's gateway), one
// spare Pod for the churn, and EndpointSlices of sliceSize endpoints.
func populate(ctx context.Context, t *testing.T, cs kubernetes.Interface, services, perSvc int) *fixture {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(writeMeshConfig(ctx, cs))
	start := time.Now()
	must(createServices(ctx, cs, services, func(int) int32 { return servicePort }))
	perPod := perSvc + 1 // the last one is the spare
	must(createPods(ctx, cs, services, perPod, func(int) corev1.PodSpec {
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app"}}}
	}))
	f := &fixture{cs: cs, services: services, perSvc: perSvc, last: make([]*discoveryv1.EndpointSlice, services)}
	nSlices := (perSvc + sliceSize - 1) / sliceSize
	must(parallel(services*nSlices, func(k int) error {
		i, s := k/nSlices, k%nSlices
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", svcName(i), s), Namespace: benchNS,
				Labels: map[string]string{"kubernetes.io/service-name": svcName(i)}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](servicePort)}},
		}
		for j := s * sliceSize; j < min((s+1)*sliceSize, perSvc); j++ {
			sl.Endpoints = append(sl.Endpoints, endpoint(i, perPod, j))
		}
		out, err := cs.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, sl, metav1.CreateOptions{})
		if err == nil && s == nSlices-1 {
			f.last[i] = out
		}
		return err
	}))
	t.Logf("wrote %d Services, %d Pods, %d EndpointSlices in %s", services, services*perPod, services*nSlices, time.Since(start).Round(time.Millisecond))
	return f
}

func endpoint(svc, perPod, j int) discoveryv1.Endpoint {
	k := svc*perPod + j
	return discoveryv1.Endpoint{Addresses: []string{ip(k + 1)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: benchNS, Name: fmt.Sprintf("%s-%d", svcName(svc), j)}}
}

// churn adds (add) or removes the spare endpoint of Service i, returning
// the Service's endpoint count afterwards.
func (f *fixture) churn(ctx context.Context, i int, add bool) (*discoveryv1.EndpointSlice, uint32) {
	sl := f.last[i].DeepCopy()
	if add {
		sl.Endpoints = append(sl.Endpoints, endpoint(i, f.perSvc+1, f.perSvc))
		return sl, uint32(f.perSvc + 1)
	}
	sl.Endpoints = sl.Endpoints[:len(sl.Endpoints)-1]
	return sl, uint32(f.perSvc)
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func mb(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func run(t *testing.T, clients, services, perSvc int) string {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kc := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	cfg := rest.CopyConfig(kc.AdminConfig)
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if *cpName == "istiod" {
		if *istiodBin == "" || *istioCRDs == "" {
			t.Fatal("-cp istiod needs -istiod-bin and -istio-crds (scripts/istiod.sh)")
		}
		if err := applyCRDs(ctx, cfg, *istioCRDs); err != nil {
			t.Fatalf("Istio CRDs: %v", err)
		}
	}
	f := populate(ctx, t, cs, services, perSvc)
	kubeconfig, err := kc.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	cpStart := time.Now()
	cp := startCP(t, *cpName, kc.Dir, kcPath)
	t.Logf("%s ready in %s", *cpName, time.Since(cpStart).Round(time.Millisecond))

	names := make([]string, services)
	want := map[string]uint32{}
	for i := range names {
		names[i] = clusterName(i)
		want[names[i]] = uint32(perSvc)
	}
	tr := newTracker(clients, want)
	tr.initialT0 = time.Now()
	conns := make([]*client, clients)
	err = parallel(clients, func(i int) error {
		network := []string{"network1", "network2"}[i%2]
		c, err := dial(ctx, cp.xds, i, istioNode(i, network), names, *deltaFlag, tr)
		conns[i] = c
		return err
	})
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	if !waitClosed(tr.initialDone, *initTimeout) {
		tr.mu.Lock()
		left := tr.initialLeft
		tr.mu.Unlock()
		for _, c := range conns[:min(4, len(conns))] {
			c.mu.Lock()
			sample := map[string][2]uint32{}
			for n, got := range c.sums {
				if got != want[n] && len(sample) < 3 {
					sample[n] = [2]uint32{got, want[n]}
				}
			}
			t.Logf("client %d: CDS %v, %d EDS names held, mismatches (got, want): %v", c.idx, c.cds, len(c.sums), sample)
			c.mu.Unlock()
		}
		t.Fatalf("%d of %d clients lack the initial state after %s (first client error: %v); log: %s", left, clients, *initTimeout, tr.firstErr(), tail(cp.log))
	}
	fanout := slices.Max(tr.initialAt)
	time.Sleep(time.Second) // let the initial pushes' tail settle
	u0, err := cp.usage()
	if err != nil {
		t.Fatal(err)
	}
	b0 := tr.bytes.Load()
	t.Logf("initial state at all %d clients in %s (p50 %s, %d streams reopened); %s CPU so far, %s received", clients, fanout.Round(time.Millisecond),
		pct(tr.initialAt, 0.5).Round(time.Millisecond), tr.reconnects.Load(), u0.cpu, mb(b0))

	var conv []time.Duration
	timeouts := 0
	for r := 0; r < *rounds; r++ {
		i := (r / 2 * 7919) % services
		sl, count := f.churn(ctx, i, r%2 == 0)
		done := tr.expect(clusterName(i), count)
		out, err := cs.DiscoveryV1().EndpointSlices(benchNS).Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		f.last[i] = out
		if !waitClosed(done, *roundTimeout) {
			timeouts++
			tr.mu.Lock()
			t.Logf("round %d: %d of %d clients lack the change after %s", r, tr.left, clients, *roundTimeout)
			tr.mu.Unlock()
			conv = append(conv, *roundTimeout)
		} else {
			tr.mu.Lock()
			conv = append(conv, slices.Max(tr.at))
			tr.mu.Unlock()
		}
		if err := tr.firstErr(); err != nil {
			t.Fatalf("client stream failed: %v", err)
		}
		time.Sleep(*gap)
	}
	u1, err := cp.usage()
	if err != nil {
		t.Fatal(err)
	}
	b1 := tr.bytes.Load()
	n := int64(len(conv))
	perCPU := (u1.cpu - u0.cpu) / time.Duration(n)
	t.Logf("%d changes: slowest client p50 %s p99 %s max %s; CPU %s per change; peak RSS %s; %s per change to all clients",
		n, ms(pct(conv, .5)), ms(pct(conv, .99)), ms(slices.Max(conv)), ms(perCPU), mb(u1.hwm), mb((b1-b0)/n))
	tmo := ""
	if timeouts > 0 {
		tmo = fmt.Sprintf(" (%d timed out)", timeouts)
	}
	cpCol := *cpName
	if *deltaFlag {
		cpCol += " (delta)"
	}
	return fmt.Sprintf("| %s | %d | %d × %d | %s | %s | %s | %s%s | %s | %.2f s | %s | %s | %s |", cpCol, clients, services, perSvc,
		ms(fanout), ms(pct(conv, .5)), ms(pct(conv, .99)), ms(slices.Max(conv)), tmo, ms(perCPU), u0.cpu.Seconds(),
		mb(u1.hwm), mb((b1-b0)/n), mb(b0))
}
