package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/k8sproc"
	"github.com/horizonmesh/horizon/samples"
)

// DemoOptions configure Demo.
type DemoOptions struct {
	Options
	// Horizon runs a horizon command in this process (cli.Run): the lab
	// package cannot import the CLI.
	Horizon func(args []string, stdout, stderr io.Writer) int
	// Samples is a samples directory (helloworld/, sleep/, tcp-echo/,
	// grpc-health/); "" for the samples built into this binary, written to
	// the state directory.
	Samples string
	// Requests is how many times sleep curls helloworld (20 when 0).
	Requests int
	// Timeout bounds each wait (rollouts, addresses, convergence; 3
	// minutes when 0).
	Timeout time.Duration
	// Out receives the walkthrough: each command and its result.
	Out io.Writer
	// Failover adds the locality failover step (demo_failover.go).
	Failover bool
}

// DemoResult is what the requests of Demo got.
type DemoResult struct {
	// V1, V2 count the answers of each version; Failed the others.
	V1, V2, Failed int
	// V1Upstreams and V2Upstreams are the upstream hosts sleep's proxy
	// logged for each version's answers.
	V1Upstreams, V2Upstreams []string
	// Gateway2 is cluster2's gateway public address.
	Gateway2 string
	// TCP and GRPC are sleep's calls to tcp-echo and grpc-health, which
	// run in cluster2 only.
	TCP, GRPC DemoCall
	// Failover is the failover step's (nil without DemoOptions.Failover).
	Failover *DemoFailover
	Elapsed  time.Duration
}

// DemoCall is one call from sleep in cluster1 and what sleep's proxy
// logged of it.
type DemoCall struct {
	// Answer is what the client printed.
	Answer string
	// Upstream is the upstream host sleep's proxy logged (cluster2's
	// gateway), Cluster its upstream cluster.
	Upstream, Cluster string
}

// demo is one run of the walkthrough. Every kubectl command it prints is
// run as printed, by the real kubectl, with the KUBECONFIG and PATH of the
// `horizon lab env` line it starts with: a reader can copy them. The
// horizon commands run in this process (the same code as the binary).
type demo struct {
	o       DemoOptions
	out     io.Writer
	kc      string
	kubectl string // its path
	clients map[string]kubernetes.Interface
	dir     string
	samples string
}

// demoDir, in the state dir, holds what the demo writes (the mesh CA's
// files among them); lab down removes it with the lab.
const demoDir = "demo"

func (d *demo) cmd(format string, a ...any) { fmt.Fprintf(d.out, "\n$ "+format+"\n", a...) }

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.out, format+"\n", a...) }

// horizon runs `horizon ARGS` in process, printing shown as the command
// and, unless quiet (its output goes to a file), what it prints.
func (d *demo) horizon(shown string, quiet bool, args ...string) (string, error) {
	d.cmd("horizon %s", shown)
	var out, errOut bytes.Buffer
	stdout := io.Writer(&out)
	if !quiet {
		stdout = io.MultiWriter(&out, d.out)
	}
	code := d.o.Horizon(args, stdout, io.MultiWriter(&errOut, d.out))
	if code != 0 {
		return out.String(), fmt.Errorf("horizon %s: exit %d: %s", shown, code, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// shellLine is argv as a person types it (--flag='{value}' rather than
// '--flag={value}').
func shellLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
		if !strings.HasPrefix(a, "-") || q[i] == a {
			continue
		}
		// Quote what follows the last '=' of the plain prefix.
		plain := len(a)
		for j := range a {
			if shellQuote(a[:j+1]) != a[:j+1] {
				plain = j
				break
			}
		}
		if eq := strings.LastIndexByte(a[:plain], '='); eq > 0 {
			q[i] = a[:eq+1] + shellQuote(a[eq+1:])
		}
	}
	return strings.Join(q, " ")
}

// kubectl prints `kubectl ARGS` and runs it, its output shown.
func (d *demo) kubectlShown(ctx context.Context, args ...string) (string, error) {
	d.cmd("%s", shellLine(append([]string{"kubectl"}, args...)))
	return d.runKubectl(ctx, true, args...)
}

// runKubectl runs kubectl with args (its output shown when show); it
// returns its stdout, and an error with its stderr.
func (d *demo) runKubectl(ctx context.Context, show bool, args ...string) (string, error) {
	c := exec.CommandContext(ctx, d.kubectl, args...)
	c.Env = append(os.Environ(), "KUBECONFIG="+d.kc)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	if show {
		c.Stdout, c.Stderr = io.MultiWriter(&out, d.out), io.MultiWriter(&errOut, d.out)
	}
	if err := c.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", shellLine(args), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// alreadyExists: kubectl create failed only because the object is there.
func alreadyExists(err error) bool {
	return err != nil && strings.Contains(err.Error(), "(AlreadyExists)")
}

// Demo runs the multicluster walkthrough on the lab, Horizon's way (see
// docs/install.md), and checks that helloworld answers from v1 in
// cluster1 directly and from v2 in cluster2 through cluster2's gateway.
func Demo(ctx context.Context, opts DemoOptions) (*DemoResult, error) {
	begin := time.Now()
	o, err := opts.Options.normalized()
	if err != nil {
		return nil, err
	}
	if st, err := LoadState(o.StateDir); err == nil && st != nil && st.BinDir != "" {
		o.BinDir = st.BinDir // the lab's own kubectl
	}
	opts.Options = o
	if opts.Requests == 0 {
		opts.Requests = 20
	}
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Minute
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Horizon == nil {
		return nil, errors.New("demo: no horizon command runner")
	}
	if err := k8sproc.CheckBinaries(o.BinDir, k8sproc.Kubectl); err != nil {
		return nil, fmt.Errorf("the demo runs kubectl: %w; build it with `%s`", err, k8sproc.BuildHint)
	}
	d := &demo{o: opts, out: opts.Out, kc: KubeconfigPath(o.StateDir), kubectl: filepath.Join(o.BinDir, k8sproc.Kubectl)}
	if d.clients, err = Clients(o.StateDir); err != nil {
		return nil, fmt.Errorf("the lab is not up (`horizon lab up` starts it): %w", err)
	}
	d.dir = filepath.Join(o.StateDir, demoDir)
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, err
	}
	if d.samples, err = d.sampleDir(opts.Samples); err != nil {
		return nil, err
	}
	d.say("%s", strings.TrimSpace(Env(o.StateDir, o.BinDir)))
	res, err := d.run(ctx)
	if res != nil {
		res.Elapsed = time.Since(begin)
	}
	d.say("\ndemo: %s in %s", map[bool]string{true: "OK", false: "FAILED"}[err == nil], time.Since(begin).Round(100*time.Millisecond))
	return res, err
}

// sampleDir is dir made absolute, or, when "", the embedded samples
// written to the demo's directory.
func (d *demo) sampleDir(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	out := filepath.Join(d.dir, "samples")
	err := fs.WalkDir(samples.FS, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := samples.FS.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(out, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	return out, err
}

func (d *demo) run(ctx context.Context) (*DemoResult, error) {
	c1, c2 := Clusters[0], Clusters[1]
	step := func(n int, what string) { d.say("\n### %d. %s", n, what) }

	// 1. One CA for both clusters.
	step(1, "One CA (root → intermediate) for both clusters: Secret cacerts")
	files, err := catest.New("horizon lab demo")
	if err != nil {
		return nil, err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d.dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	for _, c := range Clusters {
		if err := d.namespace(ctx, c.Name, "istio-system", ""); err != nil {
			return nil, err
		}
		args := []string{"--context", c.Name, "create", "secret", "generic", "cacerts", "-n", "istio-system"}
		for _, f := range []string{"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"} {
			args = append(args, "--from-file="+filepath.Join(d.dir, f))
		}
		if _, err := d.kubectlShown(ctx, args...); alreadyExists(err) {
			d.say("(kept: a second run, the mesh already trusts that one)")
		} else if err != nil {
			return nil, err
		}
	}

	// 2. The primary, then the remote.
	step(2, "horizon install: cluster1 (primary, discovery as a Pod) and cluster2 (remote)")
	mn := filepath.Join(d.dir, "meshnetworks.yaml")
	if err := os.WriteFile(mn, []byte("networks:\n  network1:\n    endpoints: [{fromRegistry: cluster1}]\n  network2:\n    endpoints: [{fromRegistry: cluster2}]\n"), 0o644); err != nil {
		return nil, err
	}
	d.cmd("cat %s", mn)
	b, _ := os.ReadFile(mn)
	fmt.Fprint(d.out, string(b))
	timeout := d.o.Timeout.String()
	primary := []string{"--context", c1.Name, "--cluster-id", c1.Name, "--network", c1.Network, "--gateway", "--expose-services",
		"--mesh-networks", mn, "--replicas", "1"}
	if _, err := d.horizon("install "+strings.Join(primary, " "), false,
		append([]string{"install", "--kubeconfig", d.kc, "--timeout", timeout}, primary...)...); err != nil {
		return nil, err
	}
	gw1, err := d.lbAddress(ctx, c1.Name)
	if err != nil {
		return nil, err
	}
	remote := []string{"--context", c2.Name, "--remote", "--cluster-id", c2.Name, "--network", c2.Network,
		"--discovery-address", gw1 + ":15443", "--gateway", "--expose-services"}
	if _, err := d.horizon("install "+strings.Join(remote, " "), false,
		append([]string{"install", "--kubeconfig", d.kc, "--timeout", timeout}, remote...)...); err != nil {
		return nil, err
	}
	gw2, err := d.lbAddress(ctx, c2.Name)
	if err != nil {
		return nil, err
	}
	res := &DemoResult{Gateway2: gw2}

	// 3. Join cluster2.
	step(3, "Join cluster2: its remote Secret in cluster1")
	server := "https://" + c2.Public + ":443"
	rsArgs := []string{"--context", c2.Name, "--name", c2.Name, "--server", server}
	rs := filepath.Join(d.dir, "remote-secret-cluster2.yaml")
	secretYAML, err := d.horizon("create-remote-secret "+strings.Join(rsArgs, " ")+" > "+rs, true,
		append([]string{"create-remote-secret", "--kubeconfig", d.kc}, rsArgs...)...)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(rs, []byte(secretYAML), 0o600); err != nil {
		return nil, err
	}
	if _, err := d.kubectlShown(ctx, "--context", c1.Name, "apply", "-f", rs); err != nil {
		return nil, err
	}

	// 4. The workloads.
	step(4, "The walkthrough's workloads in namespace sample, injected")
	for _, c := range Clusters {
		if err := d.namespace(ctx, c.Name, "sample", "istio-injection=enabled"); err != nil {
			return nil, err
		}
	}
	hw := filepath.Join(d.samples, "helloworld")
	if _, err := d.kubectlShown(ctx, "--context", c2.Name, "-n", "sample", "apply", "-f", filepath.Join(hw, "helloworld-v2.yaml")); err != nil {
		return nil, err
	}
	if _, err := d.kubectlShown(ctx, "--context", c1.Name, "-n", "sample", "apply", "-f", filepath.Join(hw, "helloworld-v1.yaml"),
		"-f", filepath.Join(hw, "helloworld-gateway.yaml"), "-f", filepath.Join(d.samples, "sleep", "sleep.yaml")); err != nil {
		return nil, err
	}
	// tcp-echo and grpc-health run in cluster2 only; cluster1 has their
	// Services (the names sleep calls), as the walkthrough has a user
	// publish a service only another cluster runs.
	tcpEcho, grpcHealth := filepath.Join(d.samples, "tcp-echo", "tcp-echo.yaml"), filepath.Join(d.samples, "grpc-health", "grpc-health.yaml")
	if _, err := d.kubectlShown(ctx, "--context", c2.Name, "-n", "sample", "apply", "-f", tcpEcho, "-f", grpcHealth); err != nil {
		return nil, err
	}
	for _, f := range []struct{ file, service string }{{tcpEcho, "tcp-echo"}, {grpcHealth, "grpc-health"}} {
		if _, err := d.kubectlShown(ctx, "--context", c1.Name, "-n", "sample", "apply", "-f", f.file, "-l", "service="+f.service); err != nil {
			return nil, err
		}
	}
	for _, w := range []struct{ cluster, name string }{{c2.Name, "helloworld-v2"}, {c2.Name, "tcp-echo"}, {c2.Name, "grpc-health"},
		{c1.Name, "helloworld-v1"}, {c1.Name, "sleep"}} {
		if _, err := d.kubectlShown(ctx, "--context", w.cluster, "-n", "sample", "rollout", "status", "deploy/"+w.name, "--timeout="+timeout); err != nil {
			return res, d.podTrouble(ctx, w.cluster, "sample", err)
		}
	}

	// 5. The requests.
	step(5, fmt.Sprintf("%d requests from sleep in cluster1", d.o.Requests))
	if err := d.requests(ctx, res); err != nil {
		return res, err
	}

	// 6. TCP and gRPC.
	step(6, "TCP and gRPC from sleep in cluster1 to tcp-echo and grpc-health, which run in cluster2 only")
	if err := d.otherProtocols(ctx, res); err != nil {
		return res, err
	}
	last := 7
	if d.o.Failover {
		// 7. Locality failover.
		step(7, "Locality failover: helloworld's DestinationRule keeps sleep's calls in its zone (v1) until v1 is gone")
		if err := d.failover(ctx, res); err != nil {
			return res, err
		}
		last = 8
	}
	// Last: what sleep's proxy holds, and who stands behind the gateway.
	step(last, "What sleep's proxy holds: its endpoints, and what stands behind cluster2's gateway")
	pc := []string{"proxy-config", "endpoints", "deploy/sleep.sample", "--context", c1.Name}
	_, err = d.horizon(strings.Join(pc, " "), false, append(pc, "--kubeconfig", d.kc)...)
	return res, err
}

// namespace creates ns in cluster (kept if it exists) and sets label
// (KEY=VALUE) on it when given.
func (d *demo) namespace(ctx context.Context, cluster, ns, label string) error {
	if _, err := d.kubectlShown(ctx, "--context", cluster, "create", "namespace", ns); err != nil && !alreadyExists(err) {
		return err
	}
	if label == "" {
		return nil
	}
	_, err := d.kubectlShown(ctx, "--context", cluster, "label", "namespace", ns, label, "--overwrite")
	return err
}

// lbAddress waits for the east-west gateway's LoadBalancer address in
// cluster and returns it.
func (d *demo) lbAddress(ctx context.Context, cluster string) (string, error) {
	svc := "svc/" + install.GatewayName
	if _, err := d.kubectlShown(ctx, "--context", cluster, "-n", "istio-system", "wait", "--for=jsonpath={.status.loadBalancer.ingress}",
		svc, "--timeout="+d.o.Timeout.String()); err != nil {
		return "", err
	}
	out, err := d.kubectlShown(ctx, "--context", cluster, "-n", "istio-system", "get", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
	if err != nil {
		return "", err
	}
	fmt.Fprintln(d.out)
	return strings.TrimSpace(out), nil
}

// podTrouble adds the pods' states of ns to err.
func (d *demo) podTrouble(ctx context.Context, cluster, ns string, err error) error {
	pods, lerr := d.clients[cluster].CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if lerr != nil {
		return err
	}
	var s []string
	for _, p := range pods.Items {
		var cs []string
		for _, c := range p.Status.ContainerStatuses {
			st := "waiting"
			switch {
			case c.State.Running != nil:
				st = fmt.Sprintf("running ready=%v", c.Ready)
			case c.State.Terminated != nil:
				st = fmt.Sprintf("terminated %d %s", c.State.Terminated.ExitCode, c.State.Terminated.Reason)
			case c.State.Waiting != nil:
				st = "waiting " + c.State.Waiting.Reason + " " + c.State.Waiting.Message
			}
			cs = append(cs, fmt.Sprintf("%s: %s restarts=%d", c.Name, st, c.RestartCount))
		}
		s = append(s, fmt.Sprintf("%s %s [%s]", p.Name, p.Status.Phase, strings.Join(cs, "; ")))
	}
	return fmt.Errorf("%w; pods in %s/%s: %s", err, cluster, ns, strings.Join(s, " | "))
}

// poll calls f until it says done, at most the demo's timeout.
func (d *demo) poll(ctx context.Context, what string, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var versionRE = regexp.MustCompile(`Hello version: (v\d+)`)

// curlArgs is the kubectl exec that curls helloworld from sleep once, tag
// its user agent (found in the proxy's access log).
func curlArgs(tag string) []string {
	return []string{"--context", Clusters[0].Name, "-n", "sample", "exec", "deploy/sleep", "-c", "sleep", "--",
		"curl", "-sS", "-m", "5", "-A", tag, "helloworld.sample:5000/hello"}
}

// curl runs curlArgs(tag), printed first when show; it returns the
// answer's version ("" when there is none) and the output.
func (d *demo) curl(ctx context.Context, tag string, show bool) (string, string) {
	args := curlArgs(tag)
	if show {
		d.cmd("%s", shellLine(append([]string{"kubectl"}, args...)))
	}
	out, err := d.runKubectl(ctx, false, args...)
	s := strings.TrimSpace(out)
	if err != nil {
		s = strings.TrimSpace(s + " (" + err.Error() + ")")
	}
	if m := versionRE.FindStringSubmatch(s); m != nil && err == nil {
		return m[1], s
	}
	return "", s
}

// upstreamRE matches an access log line: code, user agent, upstream host
// and cluster.
var upstreamRE = regexp.MustCompile(`"GET /hello [^"]*" (\d+) \S+ \S+ \S+ "([^"]*)" .* upstream_host=(\S+) upstream_cluster=(\S+)`)

func (d *demo) requests(ctx context.Context, res *DemoResult) error {
	// The mesh converges (cluster2's endpoints reach discovery through the
	// remote Secret, then sleep's proxy): wait until both versions have
	// answered once.
	d.cmd("%s", shellLine(append([]string{"kubectl"}, curlArgs("horizon-demo-wait")...)))
	d.say("(again and again until both versions have answered: cluster2's endpoints reach discovery, then sleep's proxy)")
	seen := map[string]bool{}
	var last string
	wait := time.Now()
	err := d.poll(ctx, "answers from v1 and v2", func() (bool, error) {
		v, out := d.curl(ctx, "horizon-demo-wait", false)
		if v != "" {
			seen[v] = true
		}
		last = out
		return seen["v1"] && seen["v2"], nil
	})
	if err != nil {
		return fmt.Errorf("%w (seen %v; last answer %q)", err, seen, last)
	}
	d.say("(both answered after %s)", time.Since(wait).Round(100*time.Millisecond))

	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	tag := func(i int) string { return fmt.Sprintf("horizon-demo-%s-%d", run, i+1) }
	var versions []string
	for i := 0; i < d.o.Requests; i++ {
		v, out := d.curl(ctx, tag(i), true)
		d.say("%s", out)
		versions = append(versions, v)
		switch v {
		case "v1":
			res.V1++
		case "v2":
			res.V2++
		default:
			res.Failed++
		}
	}
	// sleep's proxy logs each request, found by its user agent (Envoy
	// flushes its access log every few seconds).
	logArgs := []string{"--context", Clusters[0].Name, "-n", "sample", "logs", "deploy/sleep", "-c", "istio-proxy"}
	d.cmd("%s | grep horizon-demo-%s", shellLine(append([]string{"kubectl"}, logArgs...)), run)
	byTag := map[string][]string{}
	err = d.poll(ctx, "sleep's proxy to log the requests", func() (bool, error) {
		now, err := d.runKubectl(ctx, false, logArgs...)
		if err != nil {
			return false, err
		}
		for _, l := range strings.Split(now, "\n") {
			if m := upstreamRE.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[2], "horizon-demo-"+run+"-") {
				byTag[m[2]] = []string{m[0], m[1], m[3], m[4]}
			}
		}
		return len(byTag) >= d.o.Requests, nil
	})
	if err != nil {
		return fmt.Errorf("%w: %d of %d requests in the access log", err, len(byTag), d.o.Requests)
	}
	var problems []string
	for i := 0; i < d.o.Requests; i++ {
		m := byTag[tag(i)]
		up := m[2]
		host := up
		if i := strings.LastIndexByte(up, ':'); i > 0 {
			host = up[:i]
		}
		d.say("%2d  %-3s  %s  upstream_host=%s upstream_cluster=%s", i+1, versions[i], m[1], up, m[3])
		switch versions[i] {
		case "v1":
			res.V1Upstreams = append(res.V1Upstreams, up)
			if !strings.HasPrefix(host, strings.TrimSuffix(Clusters[0].PodCIDR, "0/24")) {
				problems = append(problems, fmt.Sprintf("request %d: v1 answered through %s, not a pod address on %s", i+1, up, Clusters[0].PodCIDR))
			}
		case "v2":
			res.V2Upstreams = append(res.V2Upstreams, up)
			if host != res.Gateway2 {
				problems = append(problems, fmt.Sprintf("request %d: v2 answered through %s, not cluster2's gateway %s", i+1, up, res.Gateway2))
			}
		}
	}
	d.say("\nv1: %d answers (upstreams %s), v2: %d answers (upstreams %s), failed: %d",
		res.V1, uniq(res.V1Upstreams), res.V2, uniq(res.V2Upstreams), res.Failed)
	if res.Failed > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d requests failed", res.Failed, d.o.Requests))
	}
	if res.V1 == 0 || res.V2 == 0 {
		problems = append(problems, fmt.Sprintf("want answers from both versions, got v1 %d, v2 %d", res.V1, res.V2))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	d.say("As the walkthrough promises: v1 answers from its pod on network1, v2 from cluster2 through its gateway %s.", res.Gateway2)
	return nil
}

func uniq(s []string) string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return "[" + strings.Join(out, " ") + "]"
}
