//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// result is what one phase (the quiet baseline or an attack class)
// measured. Each legitimate loop owns its fields until the phase ends.
type result struct {
	name      string
	attack    *attackReport // what the attackers did and got (nil for the baseline)
	attackErr string        // the attackers' process failed: its output

	fresh       []time.Duration // a fresh sidecar's full config
	freshFailed map[string]int  // by gRPC code
	change      []time.Duration // an endpoint change at every connected legitimate proxy
	changeLate  int             // changes that had not arrived after -hostile-legit-timeout
	changeErrs  []string        // API writes that failed
	ended       int64           // connected legitimate proxies' streams that ended
	token       []time.Duration // a token-authenticated stream's first response
	tokenFailed map[string]int

	heapPeak, viewsPeak float64 // from /metrics, polled
	scrapesFailed       int
	nacks               float64       // horizon_xds_nacks_total during the phase
	cpu, clientCPU      time.Duration // discovery's; the legitimate clients' (this process)
	took                time.Duration
	logBytes, logLines  int64
	exited              bool // discovery exited during the phase
}

// phase starts a discovery and the connected legitimate proxies, runs the
// legitimate measurements for -hostile-duration while run's attackers (none
// for the baseline) do their worst, then stops them all.
func (h *hostile) phase(t *testing.T, c class) *result {
	name := c.name
	r := &result{name: name, freshFailed: map[string]int{}, tokenFailed: map[string]int{}}
	h.start(name)
	defer h.stop()
	ctx, cancel := context.WithTimeout(h.ctx, *hostileDuration)
	defer cancel()
	log0 := fileSize(h.cp.log)
	u0, _ := h.cp.usage()
	self0 := selfCPU()
	m0, _ := h.metrics()
	ended0 := h.tr.reconnects.Load()
	start := time.Now()

	var attackers *attackerProc
	if c.run != nil {
		attackers = h.startAttackers(c.key)
	}
	var legit sync.WaitGroup
	for _, loop := range []func(context.Context, *result){h.freshLoop, h.changeLoop, h.tokenLoop, h.pollLoop} {
		legit.Add(1)
		go func() { defer legit.Done(); loop(ctx, r) }()
	}
	legit.Wait()
	cancel()
	if attackers != nil {
		r.attack, r.attackErr = attackers.wait()
	}

	r.took = time.Since(start)
	r.exited = h.exited()
	u1, _ := h.cp.usage()
	m1, _ := h.metrics()
	r.cpu, r.clientCPU = max(u1.cpu-u0.cpu, 0), selfCPU()-self0
	r.nacks = m1["horizon_xds_nacks_total"] - m0["horizon_xds_nacks_total"]
	r.ended = h.tr.reconnects.Load() - ended0
	r.logBytes, r.logLines = logSince(h.cp.log, log0)
	t.Logf("%s: fresh config %d× (%d failed), %d changes, %d token streams, heap peak %s, %s CPU, log +%s",
		name, len(r.fresh), sum(r.freshFailed), len(r.change), len(r.token), mb(int64(r.heapPeak)), r.cpu, mb(r.logBytes))
	return r
}

// freshLoop connects a new sidecar of a real Pod (one the connected proxies
// are not) again and again until ctx ends, timing its full config.
func (h *hostile) freshLoop(ctx context.Context, r *result) {
	others := h.mesh.services - *hostileProxies
	for ctx.Err() == nil {
		i := *hostileProxies + (h.freshN*37)%max(others, 1)
		h.freshN++
		d, err := fullConfig(h.ctx, h.cp.xds, legitNode(i), *hostileLegitWait)
		if err != nil {
			r.freshFailed[codeOf(err)]++
			h.t.Logf("%s: fresh sidecar %d: %v", r.name, i, err)
		} else {
			r.fresh = append(r.fresh, d)
		}
		sleepCtx(ctx, *hostileFreshGap)
	}
}

// changeLoop changes one Service's endpoints (its spare Pod added, then
// removed again) until ctx ends, timing each until every connected
// legitimate proxy holds it.
func (h *hostile) changeLoop(ctx context.Context, r *result) {
	for ctx.Err() == nil {
		i, add := (h.round/2*7919)%h.mesh.services, h.round%2 == 0
		sl, count := h.mesh.churn(h.ctx, i, add)
		done := h.tr.expect(hostileCluster(i), count)
		out, err := h.cs.DiscoveryV1().EndpointSlices(benchNS).Update(h.ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			r.changeErrs = append(r.changeErrs, err.Error())
			sleepCtx(ctx, *hostileChangeGap)
			continue
		}
		h.mesh.last[i] = out
		h.round++
		if waitClosed(done, *hostileLegitWait) {
			h.tr.mu.Lock()
			r.change = append(r.change, slices.Max(h.tr.at))
			h.tr.mu.Unlock()
		} else {
			r.changeLate++
			r.change = append(r.change, *hostileLegitWait)
		}
		sleepCtx(ctx, *hostileChangeGap)
	}
}

// tokenLoop opens a stream on the TLS port with a fresh service-account
// token (so that no cached review answers it) until ctx ends, timing it
// from dialling until its first response.
func (h *hostile) tokenLoop(ctx context.Context, r *result) {
	for n := 0; ctx.Err() == nil; n++ {
		tr, err := h.cs.CoreV1().ServiceAccounts(benchNS).CreateToken(h.ctx, "default", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
		if err != nil {
			r.tokenFailed["TokenRequest"]++
			sleepCtx(ctx, *hostileTokenGap)
			continue
		}
		d, err := tokenStream(h.ctx, h.secure, h.roots, tr.Status.Token, legitNode(n%h.mesh.services), *hostileLegitWait)
		if err != nil {
			r.tokenFailed[codeOf(err)]++
			h.t.Logf("%s: token stream: %v", r.name, err)
		} else {
			r.token = append(r.token, d)
		}
		sleepCtx(ctx, *hostileTokenGap)
	}
}

// pollLoop scrapes discovery's /metrics every 250 ms for its heap and views.
func (h *hostile) pollLoop(ctx context.Context, r *result) {
	for {
		m, err := h.metrics()
		if err != nil {
			r.scrapesFailed++
		} else {
			r.heapPeak = max(r.heapPeak, m["go_memstats_heap_inuse_bytes"])
			r.viewsPeak = max(r.viewsPeak, m["horizon_xds_views"])
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return
		}
	}
}

// metrics scrapes discovery's /metrics: each metric's value, summed over
// its labels.
func (h *hostile) metrics() (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + h.ops + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		out[name] += v
	}
	return out, sc.Err()
}

// selfCPU is the benchmark process's CPU time (utime+stime): the
// attackers' and the legitimate clients', which share the machine with
// discovery.
func selfCPU() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the bytes and lines written to path after offset.
func logSince(path string, offset int64) (bytesN, lines int64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, 0
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		bytesN += int64(n)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if err != nil {
			return bytesN, lines
		}
	}
}

// sleepCtx sleeps d unless ctx ends first; it reports whether ctx is alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// counts formats "Code n, Code n" by count, highest first.
func counts(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// pair is "p50 / max ms" of d.
func pair(d []time.Duration) string {
	if len(d) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f / %.1f ms", float64(pct(d, .5))/1e6, float64(slices.Max(d))/1e6)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// row is the phase's markdown table row; quiet, when given, is the
// baseline the change latency and heap are compared with.
func (r *result) row(quiet *result) string {
	attackers, got, attackCPU := "—", "—", 0.0
	if r.attackErr != "" {
		got = "attackers failed: " + strings.ReplaceAll(r.attackErr, "\n", " ")
	}
	if r.attack != nil {
		attackers, got, attackCPU = r.attack.Attackers, r.attack.summary(), r.attack.CPU.Seconds()/r.took.Seconds()
		if quiet != nil {
			got += fmt.Sprintf("; views peak %.0f (quiet %.0f)", r.viewsPeak, quiet.viewsPeak)
		}
		if r.nacks > 0 {
			got += fmt.Sprintf("; discovery counted %.0f NACKs", r.nacks)
		}
	}
	fresh := pair(r.fresh) + fmt.Sprintf(" (%d)", len(r.fresh))
	if n := sum(r.freshFailed); n > 0 {
		fresh += fmt.Sprintf("; %d failed: %s", n, counts(r.freshFailed))
	}
	change := pair(r.change)
	if quiet != nil && len(r.change) > 0 && len(quiet.change) > 0 {
		change += fmt.Sprintf(" (%s / %s)", ratio(float64(pct(r.change, .5)), float64(pct(quiet.change, .5))),
			ratio(float64(slices.Max(r.change)), float64(slices.Max(quiet.change))))
	}
	if r.changeLate > 0 {
		change += fmt.Sprintf("; %d late", r.changeLate)
	}
	if r.ended > 0 {
		change += fmt.Sprintf("; %d proxy streams ended", r.ended)
	}
	heap := mb(int64(r.heapPeak))
	if quiet != nil {
		heap += " (" + ratio(r.heapPeak, quiet.heapPeak) + ")"
	}
	token := pair(r.token) + fmt.Sprintf(" (%d)", len(r.token))
	if n := sum(r.tokenFailed); n > 0 {
		token += fmt.Sprintf("; %d failed: %s", n, counts(r.tokenFailed))
	}
	targets := "met"
	if miss := r.missed(quiet); len(miss) > 0 {
		targets = "**missed**: " + strings.Join(miss, "; ")
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %.2f / %.2f / %.2f | %s, %d lines | %s | %s |", r.name, attackers, fresh, change, heap, token,
		r.cpu.Seconds()/r.took.Seconds(), attackCPU, r.clientCPU.Seconds()/r.took.Seconds(), mb(r.logBytes), r.logLines, got, targets)
}

// missed lists the targets the phase missed: a fresh sidecar's full config,
// and a token-authenticated stream's first response, within 1 s every time;
// against the quiet baseline, change latency (p50 and max) and heap peak at
// most 2×; no legitimate stream refused or ended.
func (r *result) missed(quiet *result) []string {
	var out []string
	if r.attackErr != "" {
		out = append(out, "the attackers' process failed")
	}
	if r.exited {
		out = append(out, "discovery exited")
	}
	if len(r.fresh) == 0 {
		out = append(out, "no fresh sidecar got its full config")
	} else if m := slices.Max(r.fresh); m > hostileFreshTarget {
		out = append(out, fmt.Sprintf("fresh config max %s > %s", ms(m), hostileFreshTarget))
	}
	if n := sum(r.freshFailed); n > 0 {
		out = append(out, fmt.Sprintf("%d fresh sidecars failed (%s)", n, counts(r.freshFailed)))
	}
	if r.changeLate > 0 {
		out = append(out, fmt.Sprintf("%d changes not at every proxy within %s", r.changeLate, *hostileLegitWait))
	}
	if len(r.changeErrs) > 0 {
		out = append(out, fmt.Sprintf("%d endpoint writes failed (%s)", len(r.changeErrs), r.changeErrs[0]))
	}
	if r.ended > 0 {
		out = append(out, fmt.Sprintf("%d connected proxies' streams ended", r.ended))
	}
	if len(r.token) > 0 && slices.Max(r.token) > hostileFreshTarget {
		out = append(out, fmt.Sprintf("token stream max %s > %s", ms(slices.Max(r.token)), hostileFreshTarget))
	}
	if n := sum(r.tokenFailed); n > 0 {
		out = append(out, fmt.Sprintf("%d token-authenticated streams failed (%s)", n, counts(r.tokenFailed)))
	}
	if quiet == nil {
		return out
	}
	if len(r.change) > 0 && len(quiet.change) > 0 {
		if p, q := pct(r.change, .5), pct(quiet.change, .5); float64(p) > hostileFactor*float64(q) {
			out = append(out, fmt.Sprintf("change p50 %s > %.0f× quiet %s", ms(p), hostileFactor, ms(q)))
		}
		if m, q := slices.Max(r.change), slices.Max(quiet.change); float64(m) > hostileFactor*float64(q) {
			out = append(out, fmt.Sprintf("change max %s > %.0f× quiet %s", ms(m), hostileFactor, ms(q)))
		}
	}
	if r.heapPeak > hostileFactor*quiet.heapPeak {
		out = append(out, fmt.Sprintf("heap peak %s > %.0f× quiet %s", mb(int64(r.heapPeak)), hostileFactor, mb(int64(quiet.heapPeak))))
	}
	return out
}
