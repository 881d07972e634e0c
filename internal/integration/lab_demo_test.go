//go:build integration

package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/lab"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// `horizon lab up` then `horizon lab demo --failover`: the walkthrough
// Horizon's way (shared cacerts, install on cluster1 with discovery as a
// Pod, --remote on cluster2, cluster2's remote Secret, the samples
// injected) ends with helloworld answering from v1 at its pod address and
// from v2 through cluster2's gateway; with helloworld's DestinationRule v1
// answers alone, v2 once v1 is scaled to 0, v1 again once it is back.
// Then, on the lab it left, the tools (toolsOnLab, proxyStatusOnLab),
// kubectl (walkthroughByKubectl, replayByHand: cluster2's remote Secret
// deleted) and cluster2 joined again, its credentials then revoked
// (rejoinAndRevoke); `lab down` leaves no process behind. One lab for all:
// bringing one up and running the demo costs a minute.
func TestLabDemo(t *testing.T) {
	bin := kubeharness.Binaries(t)
	if err := lab.CheckBinaries(bin); err != nil {
		if kubeharness.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	netlab.Require(t)
	envoy := envoyBinary(t)
	bin2 := buildBinaries(t)
	// lab up finds Envoy where scripts/envoy.sh installs it and helloworld
	// next to the horizon binary, by itself.
	if filepath.Base(envoy) != "envoy-bin" {
		t.Fatalf("HORIZON_ENVOY=%s is not scripts/envoy.sh's envoy-bin", envoy)
	}
	t.Setenv(lab.EnvoyEnv, "")
	t.Setenv(lab.EnvoyVenvEnv, filepath.Dir(envoy))
	state := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() {
		if code, out, errOut := horizonLab(t, state, "down"); code != 0 {
			t.Errorf("lab down: exit %d\n%s%s", code, out, errOut)
		}
		// Zombies (this process started them) are reaped in the background.
		deadline := time.Now().Add(5 * time.Second)
		for left := labProcesses(state, nil); len(left) > 0; left = labProcesses(state, nil) {
			if time.Now().After(deadline) {
				t.Errorf("left after lab down: %v", left)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		assertNoLabLeftovers(t, state)
	})

	begin := time.Now()
	code, out, errOut := horizonLab(t, state, "up", "--horizon", filepath.Join(bin2, "horizon"))
	if code != 0 {
		t.Fatalf("lab up: exit %d\n%s%s", code, out, errOut)
	}
	up := time.Since(begin)

	// The samples built into the binary: this directory has none.
	code, out, errOut = horizonLab(t, state, "demo", "--failover")
	t.Logf("lab up in %s, demo in %s:\n%s%s", up.Round(100*time.Millisecond), (time.Since(begin) - up).Round(100*time.Millisecond), out, errOut)
	if code != 0 {
		t.Fatalf("lab demo: exit %d", code)
	}
	v1, v2 := 0, 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[3], "upstream_host=") {
			continue
		}
		host := strings.TrimPrefix(f[3], "upstream_host=")
		switch f[1] {
		case "v1":
			v1++
			if !strings.HasPrefix(host, "10.51.0.") || !strings.HasSuffix(host, ":5000") {
				t.Errorf("v1 through %s, want its pod on network1", host)
			}
		case "v2":
			v2++
			if !strings.HasPrefix(host, "203.0.113.2") || !strings.HasSuffix(host, ":15443") {
				t.Errorf("v2 through %s, want cluster2's gateway", host)
			}
		default:
			t.Errorf("answer %q", line)
		}
	}
	if v1 == 0 || v2 == 0 || v1+v2 != 20 {
		t.Errorf("answers with their upstreams: v1 %d, v2 %d", v1, v2)
	}
	// TCP and gRPC to tcp-echo and grpc-health, which run in cluster2
	// only: answered through cluster2's gateway.
	calls := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || (f[0] != "TCP" && f[0] != "gRPC") || !strings.HasPrefix(f[2], "upstream_host=") || f[4] != "answered:" {
			continue
		}
		calls[f[0]] = line
		if host := strings.TrimPrefix(f[2], "upstream_host="); !strings.HasPrefix(host, "203.0.113.2") || !strings.HasSuffix(host, ":15443") {
			t.Errorf("%s through %s, want cluster2's gateway: %s", f[0], host, line)
		}
	}
	if l := calls["TCP"]; !strings.HasSuffix(l, " hello from sleep") || !strings.Contains(l, "upstream_cluster=outbound|9000||tcp-echo.sample.svc.cluster.local") {
		t.Errorf("the TCP call's line: %q, want tcp-echo's pod to echo 'hello from sleep'", l)
	}
	if l := calls["gRPC"]; !strings.Contains(l, "answered: status: SERVING") || !strings.Contains(l, "upstream_cluster=outbound|50051||grpc-health.sample.svc.cluster.local") {
		t.Errorf("the gRPC call's line: %q, want SERVING", l)
	}
	for _, want := range []string{"$ horizon install --context cluster1", "$ horizon install --context cluster2 --remote",
		"$ horizon create-remote-secret --context cluster2 --name cluster2", "$ kubectl --context cluster1 label namespace sample istio-injection=enabled",
		"$ kubectl --context cluster1 -n sample exec deploy/sleep -c sleep -- curl", "$ kubectl --context cluster1 -n sample logs deploy/sleep -c istio-proxy",
		"$ kubectl --context cluster1 -n sample apply -f " + filepath.Join(state, "demo", "samples", "helloworld", "helloworld-v1.yaml"),
		"$ kubectl --context cluster1 -n sample apply -f " + filepath.Join(state, "demo", "samples", "tcp-echo", "tcp-echo.yaml") + " -l service=tcp-echo",
		"$ kubectl --context cluster1 -n sample exec deploy/sleep -c sleep -- helloworld tcp-echo-client tcp-echo.sample:9000 'hello from sleep'",
		"$ kubectl --context cluster1 -n sample exec deploy/sleep -c sleep -- helloworld grpc-health-probe grpc-health.sample:50051",
		"$ kubectl --context cluster1 -n sample apply -f " + filepath.Join(state, "demo", "samples", "helloworld", "helloworld-failover.yaml"),
		"$ kubectl --context cluster1 -n sample scale deploy helloworld-v1 --replicas=0",
		"$ kubectl --context cluster1 -n sample scale deploy helloworld-v1 --replicas=1",
		"$ kubectl --context cluster1 -n sample delete -f " + filepath.Join(state, "demo", "samples", "helloworld", "helloworld-failover.yaml"),
		// Locality failover: v1 (sleep's zone) alone, v2 through cluster2's
		// gateway while v1 is at 0 replicas, v1 alone once it is back.
		"\nfailover healthy: v1=5 v2=0 failed=0\n",
		"\nfailover v1-at-0: v1=0 v2=5 failed=0 (moved ",
		"\nfailover v1-back: v1=5 v2=0 failed=0 (moved ",
		// Last, what stands behind cluster2's gateway in sleep's proxy.
		"$ horizon proxy-config endpoints deploy/sleep.sample --context cluster1",
		"network2 / cluster2: helloworld-v2-",
		"demo: OK in "} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	// v1's sidecar is Ready only once its Envoy serves (its readiness
	// probe): its first calls are answered, not refused, so it is not
	// ejected and answers right after its rollout, well within one
	// baseEjectionTime (5 s; 5.3-6.5 s before the probe).
	if m := regexp.MustCompile(`\nfailover v1-back: .*\(moved ([^ ]+) after v1's rollout\)`).FindStringSubmatch(out); m != nil {
		if d, err := time.ParseDuration(m[1]); err != nil || d >= 4*time.Second {
			t.Errorf("v1 answered alone %s after its rollout (%v): want well under baseEjectionTime (5s), no ejection", m[1], err)
		}
	}
	if t.Failed() {
		return
	}
	k := newLabKubectl(bin, state)
	toolsOnLab(t, k, state, out)
	proxyStatusOnLab(t, k, state, filepath.Join(bin2, "horizon"))
	walkthroughByKubectl(t, k)
	replayByHand(t, k)
	rejoinAndRevoke(t, k, state)
}

// replayByHand is what a person does next with kubectl on the lab the demo
// left: scale v2 to 0 (only v1 answers, no request fails), back to 1 (v2
// answers again), then delete cluster2's remote Secret (v2 is withdrawn).
// Each step waits on what sleep's Envoy holds (its admin /clusters), with
// requests flowing the whole time.
func replayByHand(t *testing.T, kubectl labKubectl) {
	k := func(args ...string) string {
		t.Helper()
		out := kubectl.ok(t, args...)
		t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), out)
		return out
	}
	gateway2 := "203.0.113.2" // cluster2's load-balancer slice (.20-.29)
	hosts := func() []string { return helloworldHosts(t, kubectl) }
	viaGateway := func(hs []string) bool {
		return slices.ContainsFunc(hs, func(h string) bool { return strings.HasPrefix(h, gateway2) })
	}

	// 1. v2 scaled to 0: sleep's Envoy keeps only v1's pod; nothing fails.
	traffic := startTraffic(t, kubectl)
	k("--context", "cluster2", "-n", "sample", "scale", "deploy/helloworld-v2", "--replicas=0")
	waitFor(t, time.Minute, "sleep's Envoy to drop cluster2's gateway for helloworld", func() bool { return !viaGateway(hosts()) })
	during := traffic.stop()
	after := requests(t, kubectl, 10)
	t.Logf("v2 scaled to 0: while it went %v; after %v (sleep's helloworld hosts %v)", during, after, hosts())
	if during.failed > 0 || after.failed > 0 || after.v2 > 0 || after.v1 != 10 {
		t.Errorf("v2 scaled to 0: requests while it went %v, after %v; want only v1 answers and no failure", during, after)
	}

	// 2. Back to 1: v2 answers again, through the gateway.
	traffic = startTraffic(t, kubectl)
	k("--context", "cluster2", "-n", "sample", "scale", "deploy/helloworld-v2", "--replicas=1")
	k("--context", "cluster2", "-n", "sample", "rollout", "status", "deploy/helloworld-v2", "--timeout=2m")
	waitFor(t, time.Minute, "sleep's Envoy to route helloworld through cluster2's gateway again", func() bool { return viaGateway(hosts()) })
	waitFor(t, time.Minute, "v2 to answer again", func() bool { return requests(t, kubectl, 1).v2 == 1 })
	during = traffic.stop()
	t.Logf("v2 back to 1: while it came %v", during)
	if during.failed > 0 {
		t.Errorf("v2 back to 1: %d requests failed while it came (%v)", during.failed, during)
	}

	// 3. cluster2's remote Secret deleted: its endpoints are withdrawn.
	traffic = startTraffic(t, kubectl)
	k("--context", "cluster1", "-n", "istio-system", "delete", "secret", "istio-remote-secret-cluster2")
	waitFor(t, time.Minute, "sleep's Envoy to drop cluster2's gateway once its Secret is gone", func() bool { return !viaGateway(hosts()) })
	during = traffic.stop()
	after = requests(t, kubectl, 10)
	t.Logf("remote Secret deleted: while it went %v; after %v", during, after)
	if during.failed > 0 || after.failed > 0 || after.v1 != 10 {
		t.Errorf("remote Secret deleted: requests while it went %v, after %v; want only v1 answers and no failure", during, after)
	}
}

// tally counts helloworld's answers to sleep.
type tally struct {
	v1, v2, failed int
	lastFailure    string
}

func (c tally) String() string {
	s := fmt.Sprintf("v1 %d, v2 %d, failed %d", c.v1, c.v2, c.failed)
	if c.lastFailure != "" {
		s += fmt.Sprintf(" (last: %q)", c.lastFailure)
	}
	return s
}

func (c *tally) add(o tally) {
	c.v1, c.v2, c.failed = c.v1+o.v1, c.v2+o.v2, c.failed+o.failed
	if o.lastFailure != "" {
		c.lastFailure = o.lastFailure
	}
}

// sleepExec runs argv in a container of cluster1's sleep with kubectl exec.
func sleepExec(k labKubectl, container string, argv ...string) (string, error) {
	out, code := k.run(append([]string{"--context=cluster1", "-n", "sample", "exec", "deploy/sleep", "-c", container, "--"}, argv...)...)
	if code != 0 {
		return out, fmt.Errorf("kubectl exec: exit %d", code)
	}
	return out, nil
}

// requests sends n requests from sleep to helloworld, one after another.
func requests(t *testing.T, k labKubectl, n int) tally {
	t.Helper()
	var c tally
	for range n {
		out, err := sleepExec(k, "sleep", "curl", "-sS", "-m", "5", "helloworld.sample:5000/hello")
		switch {
		case err == nil && strings.Contains(out, "Hello version: v1"):
			c.v1++
		case err == nil && strings.Contains(out, "Hello version: v2"):
			c.v2++
		default:
			c.failed++
			c.lastFailure = strings.TrimSpace(out)
			if err != nil {
				c.lastFailure += " (" + err.Error() + ")"
			}
		}
	}
	return c
}

// traffic keeps requests flowing until stopped.
type traffic struct {
	done chan struct{}
	res  chan tally
}

func startTraffic(t *testing.T, k labKubectl) *traffic {
	tr := &traffic{done: make(chan struct{}), res: make(chan tally, 1)}
	go func() {
		var c tally
		for {
			select {
			case <-tr.done:
				tr.res <- c
				return
			default:
			}
			c.add(requests(t, k, 1))
		}
	}()
	return tr
}

func (tr *traffic) stop() tally {
	close(tr.done)
	return <-tr.res
}

// helloworldHosts are the endpoints sleep's Envoy holds for helloworld's
// cluster (its admin /clusters).
func helloworldHosts(t *testing.T, k labKubectl) []string {
	t.Helper()
	out, err := sleepExec(k, "istio-proxy", "curl", "-sS", "-m", "5", "127.0.0.1:15000/clusters")
	if err != nil {
		t.Fatalf("sleep's Envoy admin: %v\n%s", err, out)
	}
	var hosts []string
	prefix := "outbound|5000||helloworld.sample.svc.cluster.local::"
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok && strings.HasSuffix(rest, "::health_flags::healthy") {
			hosts = append(hosts, strings.TrimSuffix(rest, "::health_flags::healthy"))
		}
	}
	return hosts
}
