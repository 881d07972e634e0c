//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/cli"
	"github.com/horizonmesh/horizon/internal/lab"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// screenshotEnv, when set, is where TestLabDemo copies its screenshot of
// /ui/topology (docs/topology.png is one: HORIZON_TOPOLOGY_SCREENSHOT=$PWD/docs/topology.png).
const screenshotEnv = "HORIZON_TOPOLOGY_SCREENSHOT"

// toolsOnLab runs the tools against the lab the demo left (demoOut is the
// demo's output): the demo ends with sleep's endpoints, cluster2's gateway
// standing for helloworld-v2's pod; proxy-config's tables and --diff;
// topology as text, SVG and the live page in headless Chromium; check
// passes, then names cluster2's cacerts when its root differs.
func toolsOnLab(t *testing.T, k labKubectl, state, demoOut string) {
	t.Helper()
	behind := regexp.MustCompile(`(?m)^outbound\|5000\|\|helloworld\.sample\.svc\.cluster\.local\s+203\.0\.113\.2\d:15443\s.*\snetwork2 / cluster2: helloworld-v2-\S+ \(1 pod\)$`)
	if !strings.Contains(demoOut, "$ horizon proxy-config endpoints deploy/sleep.sample --context cluster1") || !behind.MatchString(demoOut) {
		t.Errorf("the demo does not end with sleep's endpoints saying what stands behind cluster2's gateway")
	}
	horizon := labHorizon(t, state)

	// proxy-config: every table; endpoints say what stands behind the
	// gateway; --diff finds nothing.
	code, out, _ := horizon("proxy-config", "endpoints", "deploy/sleep.sample", "--context", "cluster1", "--diff")
	if code != 0 || !behind.MatchString(out) || !strings.Contains(out, "none: the proxy holds what discovery sends") {
		t.Errorf("proxy-config endpoints --diff: exit %d", code)
	}
	// -o json: the gateway endpoint with discovery's description of it.
	code, out, _ = horizon("proxy-config", "endpoints", "deploy/sleep.sample", "--context", "cluster1", "-o", "json")
	type endpointDoc struct {
		Endpoint string
		Gateway  *struct {
			Network string
			Members []struct{ Pod string }
		}
	}
	var rows []endpointDoc
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Errorf("proxy-config endpoints -o json: exit %d, %v", code, err)
	}
	if !slices.ContainsFunc(rows, func(r endpointDoc) bool {
		return r.Gateway != nil && r.Gateway.Network == "network2" && len(r.Gateway.Members) == 1 &&
			strings.HasPrefix(r.Gateway.Members[0].Pod, "sample/helloworld-v2-")
	}) {
		t.Errorf("proxy-config endpoints -o json: no gateway endpoint standing for helloworld-v2's pod on network2")
	}
	for typ, want := range map[string]string{"clusters": "outbound|5000||helloworld.sample.svc.cluster.local", "listeners": "0.0.0.0:15001",
		"routes": "helloworld.sample.svc.cluster.local", "secrets": "spiffe://cluster.local/ns/sample/sa/sleep"} {
		if code, out, _ := horizon("proxy-config", typ, "deploy/sleep.sample", "--context", "cluster1"); code != 0 || !strings.Contains(out, want) {
			t.Errorf("proxy-config %s: exit %d, want %q in it", typ, code, want)
		}
	}

	// topology: text, SVG; then the live page in a real browser.
	code, out, _ = horizon("topology", "--context", "cluster1")
	for _, want := range []string{"network1", "network2", "cluster2  remote  synced", "LoadBalancer status", "helloworld.sample.svc.cluster.local"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("topology: exit %d, want %q in it", code, want)
		}
	}
	code, out, _ = horizon("topology", "--context", "cluster1", "-o", "svg")
	if code != 0 || !wellFormed(out) || !strings.Contains(out, "network2") {
		t.Errorf("topology -o svg: exit %d, well-formed %v", code, wellFormed(out))
	}
	if chromium, err := exec.LookPath("chromium"); err != nil {
		if kubeharness.Required() {
			t.Fatalf("chromium (Debian's package; scripts/setup.sh installs it): %v", err)
		}
		t.Logf("/ui/topology not checked in a browser: %v", err)
	} else {
		topologyInBrowser(t, k, chromium)
	}

	// check: all pass on the lab.
	code, out, _ = horizon("check", "--context", "cluster1")
	if code != 0 || !strings.Contains(out, "checks passed") || strings.Contains(out, "FAIL") {
		t.Fatalf("check on the lab: exit %d", code)
	}
	for _, want := range []string{"OK   cacerts one root", "OK   remote-secret istio-system/", "[cluster2]", "OK   gateways",
		"OK   meshNetworks", "OK   webhook cluster1", "OK   webhook cluster2", "OK   clock cluster2", "OK   discovery cluster cluster2"} {
		if !strings.Contains(out, want) {
			t.Errorf("check: want %q in its output", want)
		}
	}

	// cluster2's cacerts from another root (no running proxy reads them:
	// cluster2's sidecars are signed by cluster1's discovery).
	clients, err := lab.Clients(state)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	other, err := catest.New("another mesh")
	if err != nil {
		t.Fatal(err)
	}
	c2 := clients["cluster2"]
	if err := c2.CoreV1().Secrets("istio-system").Delete(ctx, "cacerts", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CoreV1().Secrets("istio-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: "istio-system"},
		Data: other}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = horizon("check", "--context", "cluster1")
	if code != 1 || !regexp.MustCompile(`(?m)^FAIL cacerts one root: cluster1's root is SHA256:\S+ .*cluster2's is SHA256:`).MatchString(out) ||
		!strings.Contains(out, "     remedy: ") {
		t.Errorf("check with cluster2's cacerts of another root: exit %d; want it named", code)
	}
}

// labHorizon runs `horizon ARGS --kubeconfig <the lab's>` in this process,
// logging what it printed.
func labHorizon(t *testing.T, state string) func(args ...string) (int, string, string) {
	kc := lab.KubeconfigPath(state)
	return func(args ...string) (int, string, string) {
		t.Helper()
		var o, e bytes.Buffer
		code := cli.Run(append(args, "--kubeconfig", kc), &o, &e)
		t.Logf("$ horizon %s\n%s%s(exit %d)", strings.Join(args, " "), &o, &e, code)
		return code, o.String(), e.String()
	}
}

// rejoinAndRevoke, after cluster2's remote Secret was deleted, joins
// cluster2 again as a person replaying the walkthrough does: kubectl apply
// of the remote Secret the demo wrote (create-remote-secret --server with
// cluster2's address as discovery's pod reaches it): v2 answers sleep
// again. Then the Secret's service account is deleted on cluster2, so its
// token no longer authenticates, and check names that Secret.
func rejoinAndRevoke(t *testing.T, k labKubectl, state string) {
	t.Helper()
	horizon := labHorizon(t, state)
	k.ok(t, "--context", "cluster1", "apply", "-f", filepath.Join(state, "demo", "remote-secret-cluster2.yaml"))
	waitFor(t, time.Minute, "v2 to answer again once cluster2 joined again", func() bool { return requests(t, k, 1).v2 == 1 })

	clients, err := lab.Clients(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := clients["cluster2"].CoreV1().ServiceAccounts("istio-system").Delete(context.Background(), "horizon-reader-cluster2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	revoked := regexp.MustCompile(`(?m)^FAIL remote-secret istio-system/\S+\[cluster2\]: API server \S+ does not authenticate its credentials`)
	waitFor(t, time.Minute, "check to name cluster2's remote Secret", func() bool {
		code, out, _ := horizon("check", "--context", "cluster1")
		return code == 1 && revoked.MatchString(out)
	})
}

func wellFormed(svg string) bool {
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			return true
		} else if err != nil {
			return false
		}
	}
}

// topologyInBrowser opens discovery's /ui/topology (through kubectl
// port-forward) in headless Chromium: the page has loaded the picture
// (cluster2's gateway in it), and a screenshot of it is a PNG.
func topologyInBrowser(t *testing.T, k labKubectl, chromium string) {
	_, port := k.portForward(t, "cluster1", "istio-system", "deploy/horizon", 15014)
	url := "http://127.0.0.1:" + port + "/ui/topology"
	dir := t.TempDir()
	browser := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Root in a container: no sandbox; the budget lets the page's
		// fetch and script run before the DOM or pixels are taken.
		c := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--virtual-time-budget=10000", "--window-size=1040,400"}, append(args, url)...)...)
		var errOut bytes.Buffer
		c.Stderr = &errOut
		out, err := c.Output()
		if err != nil {
			t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, &errOut)
		}
		return out
	}
	dom := string(browser("--dump-dom"))
	if !strings.Contains(dom, `data-loaded="true"`) || !strings.Contains(dom, "<svg") || !strings.Contains(dom, "network2") ||
		!regexp.MustCompile(`203\.0\.113\.2\d:15443`).MatchString(dom) {
		t.Errorf("/ui/topology in Chromium did not show the picture with cluster2's gateway:\n%s", dom)
	}
	shot := filepath.Join(dir, "topology.png")
	browser("--screenshot=" + shot)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %v, %d bytes", err, len(png))
	}
	if out := os.Getenv(screenshotEnv); out != "" {
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Error(err)
		}
	}
}
