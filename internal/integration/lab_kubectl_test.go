//go:build integration

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/lab"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// labKubectl runs the lab's kubectl (the pinned release) against the lab's
// kubeconfig, as a person does after `eval $(horizon lab env)`: every
// logs, exec, attach, port-forward and cp goes through the API server to
// the lab node's kubelet API.
type labKubectl struct{ path, kubeconfig string }

func newLabKubectl(binDir, state string) labKubectl {
	return labKubectl{path: filepath.Join(binDir, "kubectl"), kubeconfig: lab.KubeconfigPath(state)}
}

func (k labKubectl) command(args ...string) *osexec.Cmd {
	c := osexec.Command(k.path, args...)
	c.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig)
	return c
}

// run returns kubectl's stdout and stderr together, and its exit code.
func (k labKubectl) run(args ...string) (string, int) {
	out, err := k.command(args...).CombinedOutput()
	var ee *osexec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		return string(out) + err.Error(), -1
	}
	return string(out), 0
}

// ok runs kubectl and fails the test unless it succeeds; its stdout.
func (k labKubectl) ok(t *testing.T, args ...string) string {
	t.Helper()
	c := k.command(args...)
	var errOut bytes.Buffer
	c.Stderr = &errOut
	out, err := c.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, &errOut)
	}
	return string(out)
}

// background is a kubectl command left running (logs -f, attach,
// port-forward), its output collected; stopped at the test's end.
type background struct {
	cmd  *osexec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// portForward runs kubectl port-forward to target's port in namespace of
// context, on a free local port, and returns it once kubectl listens.
func (k labKubectl) portForward(t *testing.T, context, namespace, target string, port int) (*background, string) {
	t.Helper()
	pf := k.start(t, "port-forward", "--context="+context, "-n", namespace, target, ":"+strconv.Itoa(port))
	forwarding := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> ` + strconv.Itoa(port))
	var local string
	waitFor(t, 30*time.Second, "kubectl port-forward to listen", func() bool {
		if m := forwarding.FindStringSubmatch(pf.output()); m != nil {
			local = m[1]
			return true
		}
		return false
	})
	return pf, local
}

func (k labKubectl) start(t *testing.T, args ...string) *background {
	t.Helper()
	b := &background{cmd: k.command(args...), done: make(chan struct{})}
	w := writerFunc(func(p []byte) (int, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.out.Write(p)
	})
	b.cmd.Stdout, b.cmd.Stderr = w, w
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(b.stop)
	return b
}

func (b *background) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

func (b *background) stop() {
	_ = b.cmd.Process.Kill()
	<-b.done
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var helloVersion = regexp.MustCompile(`Hello version: (v\d+)`)

// walkthroughByKubectl runs the walkthrough's own exec and logs commands,
// verbatim, against the lab the demo left: curl from sleep sees v1 and v2;
// sleep's istio-proxy log shows the upstreams (v1's pod on network1,
// cluster2's gateway for v2); then what else kubectl offers — logs -f,
// --tail, --since, --timestamps, attach, exec with a terminal, cp — and
// port-forward to discovery's ops port answers /ready.
func walkthroughByKubectl(t *testing.T, k labKubectl) {
	begin := time.Now()
	// The walkthrough names sleep's pod this way.
	pod := strings.TrimSpace(k.ok(t, "get", "pod", "--context=cluster1", "-n", "sample", "-l", "app=sleep", "-o", "jsonpath={.items[0].metadata.name}"))
	seen := map[string]int{}
	var last string
	waitFor(t, time.Minute, "kubectl exec ... curl to see v1 and v2", func() bool {
		out, code := k.run("exec", "--context=cluster1", "-n", "sample", "-c", "sleep", pod, "--", "curl", "-sS", "helloworld.sample:5000/hello")
		if m := helloVersion.FindStringSubmatch(out); m != nil && code == 0 {
			seen[m[1]]++
		} else {
			last = fmt.Sprintf("exit %d: %s", code, out)
		}
		return seen["v1"] > 0 && seen["v2"] > 0
	})
	t.Logf("kubectl exec %s -c sleep -- curl: %v (last failure: %q)", pod, seen, last)

	upstreams := regexp.MustCompile(`upstream_host=(\S+)`)
	var hosts map[string]bool
	waitFor(t, time.Minute, "sleep's istio-proxy log to show both upstreams", func() bool {
		out, code := k.run("logs", "--context=cluster1", "-n", "sample", pod, "-c", "istio-proxy")
		hosts = map[string]bool{}
		for _, m := range upstreams.FindAllStringSubmatch(out, -1) {
			h, _, _ := strings.Cut(m[1], ":")
			hosts[h] = true
		}
		var pod1, gw2 bool
		for h := range hosts {
			pod1 = pod1 || strings.HasPrefix(h, "10.51.0.")
			gw2 = gw2 || strings.HasPrefix(h, "203.0.113.2")
		}
		return code == 0 && pod1 && gw2
	})
	t.Logf("kubectl logs %s -c istio-proxy: upstream hosts %v", pod, hosts)

	proxyLogs := func(extra ...string) string {
		return k.ok(t, append([]string{"logs", "--context=cluster1", "-n", "sample", pod, "-c", "istio-proxy"}, extra...)...)
	}
	if out := proxyLogs("--tail=1"); strings.Count(out, "\n") != 1 {
		t.Errorf("logs --tail=1: %q", out)
	}
	if out := proxyLogs("--since-time=2099-01-01T00:00:00Z"); out != "" {
		t.Errorf("logs --since-time in the future: %q", out)
	}
	if out := proxyLogs("--since=1h", "--timestamps", "--tail=2"); !regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\S+Z .*\n){2}$`).MatchString(out) {
		t.Errorf("logs --since=1h --timestamps --tail=2: %q", out)
	}
	if out, code := k.run("logs", "--context=cluster1", "-n", "sample", pod, "-c", "sleep", "--previous"); code == 0 || !strings.Contains(out, `previous terminated container "sleep"`) {
		t.Errorf("logs --previous of a container that never restarted: exit %d %q", code, out)
	}

	// logs -f and attach see a request sent after they started.
	follow := k.start(t, "logs", "-f", "--tail=0", "--context=cluster1", "-n", "sample", pod, "-c", "istio-proxy")
	attach := k.start(t, "attach", "--context=cluster1", "-n", "sample", pod, "-c", "istio-proxy")
	tag := "hz-follow-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	waitFor(t, time.Minute, "logs -f and attach to show a new request", func() bool {
		k.run("exec", "--context=cluster1", "-n", "sample", "-c", "sleep", pod, "--", "curl", "-sS", "-A", tag, "helloworld.sample:5000/hello")
		return strings.Contains(follow.output(), tag) && strings.Contains(attach.output(), tag)
	})
	if strings.Contains(follow.output(), "horizon-demo-") {
		t.Errorf("logs -f --tail=0 printed old lines:\n%.500s", follow.output())
	}

	// exec with a terminal (kubectl wants one of its own: script gives it).
	if script, err := osexec.LookPath("script"); err == nil {
		c := osexec.Command(script, "-qec", k.path+" exec -it --context=cluster1 -n sample -c sleep "+pod+" -- tty", "/dev/null")
		c.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig)
		out, err := c.CombinedOutput()
		if err != nil || !regexp.MustCompile(`/dev/pts/\d+`).Match(out) {
			t.Errorf("exec -it -- tty: %v %q", err, out)
		}
	} else if kubeharness.Required() {
		t.Errorf("script (util-linux) is needed to test exec -it: %v", err)
	}
	if out, code := k.run("exec", "--context=cluster1", "-n", "sample", "-c", "sleep", pod, "--", "tty"); code != 1 || !strings.Contains(out, "not a tty") {
		t.Errorf("exec -- tty without -t: exit %d %q", code, out)
	}

	// cp both ways: from the container's own /etc/hosts (the lab's Service
	// names), into it and back.
	dir := t.TempDir()
	k.ok(t, "cp", "--context=cluster1", "-c", "sleep", "sample/"+pod+":/etc/hosts", filepath.Join(dir, "hosts"))
	if b, _ := os.ReadFile(filepath.Join(dir, "hosts")); !strings.Contains(string(b), "helloworld.sample") {
		t.Errorf("kubectl cp of the container's /etc/hosts: %q", b)
	}
	must(t, os.WriteFile(filepath.Join(dir, "up"), []byte(tag+"\n"), 0o644))
	remote := "/tmp/" + tag
	k.ok(t, "cp", "--context=cluster1", "-c", "sleep", filepath.Join(dir, "up"), "sample/"+pod+":"+remote)
	if out := k.ok(t, "exec", "--context=cluster1", "-n", "sample", "-c", "sleep", pod, "--", "cat", remote); out != tag+"\n" {
		t.Errorf("cp into the container: %q", out)
	}
	k.ok(t, "exec", "--context=cluster1", "-n", "sample", "-c", "sleep", pod, "--", "rm", remote)

	// port-forward to discovery's ops port: /ready.
	pf, port := k.portForward(t, "cluster1", "istio-system", "deploy/horizon", 15014)
	resp, err := http.Get("http://127.0.0.1:" + port + "/ready")
	if err != nil {
		t.Fatalf("GET /ready through port-forward: %v\n%s", err, pf.output())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ready" {
		t.Errorf("GET /ready through port-forward: %s %q", resp.Status, body)
	}
	t.Logf("the walkthrough's commands with kubectl: %s", time.Since(begin).Round(100*time.Millisecond))
}
