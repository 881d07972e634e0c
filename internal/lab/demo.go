package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/install"
)

// DemoOptions configure Demo.
type DemoOptions struct {
	Options
	// Horizon runs a horizon command in this process (cli.Run): the lab
	// package cannot import the CLI.
	Horizon func(args []string, stdout, stderr io.Writer) int
	// Samples is the samples/ directory (helloworld, sleep).
	Samples string
	// Requests is how many times sleep curls helloworld (20 when 0).
	Requests int
	// Timeout bounds each wait (rollouts, addresses, convergence; 3
	// minutes when 0).
	Timeout time.Duration
	// Out receives the walkthrough: each command and its result.
	Out io.Writer
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
	Elapsed  time.Duration
}

// demo is one run of the walkthrough.
type demo struct {
	o       DemoOptions
	out     io.Writer
	kc      string
	clients map[string]kubernetes.Interface
	cfgs    map[string]*rest.Config
	dir     string
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

// Demo runs the multicluster walkthrough on the lab, Horizon's way (see
// docs/install.md), and checks that helloworld answers from v1 in
// cluster1 directly and from v2 in cluster2 through cluster2's gateway.
func Demo(ctx context.Context, opts DemoOptions) (*DemoResult, error) {
	begin := time.Now()
	o, err := opts.Options.normalized()
	if err != nil {
		return nil, err
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
	if opts.Samples == "" {
		opts.Samples = "samples"
	}
	if opts.Horizon == nil {
		return nil, errors.New("demo: no horizon command runner")
	}
	d := &demo{o: opts, out: opts.Out, kc: KubeconfigPath(o.StateDir), cfgs: map[string]*rest.Config{}}
	if d.clients, err = Clients(o.StateDir); err != nil {
		return nil, fmt.Errorf("the lab is not up (`horizon lab up` starts it): %w", err)
	}
	raw, err := clientcmd.LoadFromFile(d.kc)
	if err != nil {
		return nil, err
	}
	for _, c := range Clusters {
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, c.Name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err != nil {
			return nil, err
		}
		d.cfgs[c.Name] = cfg
	}
	d.dir = filepath.Join(o.StateDir, demoDir)
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, err
	}
	d.say("%s", strings.TrimSpace(Env(o.StateDir)))
	res, err := d.run(ctx)
	if res != nil {
		res.Elapsed = time.Since(begin)
	}
	d.say("\ndemo: %s in %s", map[bool]string{true: "OK", false: "FAILED"}[err == nil], time.Since(begin).Round(100*time.Millisecond))
	return res, err
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
		if err := d.namespace(ctx, c.Name, "istio-system", nil); err != nil {
			return nil, err
		}
		d.cmd("kubectl --context %s create secret generic cacerts -n istio-system --from-file=%s/ca-cert.pem --from-file=%[2]s/ca-key.pem --from-file=%[2]s/root-cert.pem --from-file=%[2]s/cert-chain.pem", c.Name, d.dir)
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: "istio-system"}, Data: map[string][]byte(files)}
		cs := d.clients[c.Name]
		if _, err := cs.CoreV1().Secrets("istio-system").Create(ctx, sec, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			// A second run: the mesh already trusts that one.
			d.say("error: secrets \"cacerts\" already exists (kept: the mesh's CA)")
		} else if err != nil {
			return nil, err
		} else {
			d.say("secret/cacerts created")
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
	secretYAML, err := d.horizon("create-remote-secret "+strings.Join(rsArgs, " ")+" > "+filepath.Join(d.dir, "remote-secret-cluster2.yaml"), true,
		append([]string{"create-remote-secret", "--kubeconfig", d.kc}, rsArgs...)...)
	if err != nil {
		return nil, err
	}
	rs := filepath.Join(d.dir, "remote-secret-cluster2.yaml")
	if err := os.WriteFile(rs, []byte(secretYAML), 0o600); err != nil {
		return nil, err
	}
	if err := d.apply(ctx, c1.Name, "", rs); err != nil {
		return nil, err
	}

	// 4. The workloads.
	step(4, "The walkthrough's workloads in namespace sample, injected")
	for _, c := range Clusters {
		if err := d.namespace(ctx, c.Name, "sample", map[string]string{"istio-injection": "enabled"}); err != nil {
			return nil, err
		}
	}
	hw := filepath.Join(d.o.Samples, "helloworld")
	if err := d.apply(ctx, c2.Name, "sample", filepath.Join(hw, "helloworld-v2.yaml")); err != nil {
		return nil, err
	}
	if err := d.apply(ctx, c1.Name, "sample", filepath.Join(hw, "helloworld-v1.yaml"), filepath.Join(hw, "helloworld-gateway.yaml"),
		filepath.Join(d.o.Samples, "sleep", "sleep.yaml")); err != nil {
		return nil, err
	}
	for _, w := range []struct{ cluster, name string }{{c2.Name, "helloworld-v2"}, {c1.Name, "helloworld-v1"}, {c1.Name, "sleep"}} {
		d.cmd("kubectl --context %s -n sample rollout status deploy/%s", w.cluster, w.name)
		if err := d.rollout(ctx, w.cluster, "sample", w.name); err != nil {
			return res, err
		}
	}

	// 5. The requests.
	step(5, fmt.Sprintf("%d requests from sleep in cluster1", d.o.Requests))
	return res, d.requests(ctx, res)
}

// namespace creates ns in cluster (if missing) with labels.
func (d *demo) namespace(ctx context.Context, cluster, ns string, labels map[string]string) error {
	cs := d.clients[cluster]
	d.cmd("kubectl --context %s create namespace %s", cluster, ns)
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		d.say("namespace/%s exists", ns)
	case err != nil:
		return err
	default:
		d.say("namespace/%s created", ns)
	}
	for k, v := range labels {
		d.cmd("kubectl --context %s label namespace %s %s=%s --overwrite", cluster, ns, k, v)
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
		if _, err := cs.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
		d.say("namespace/%s labeled", ns)
	}
	return nil
}

// apply server-side-applies the YAML files in cluster (objects without a
// namespace go to ns when ns is set).
func (d *demo) apply(ctx context.Context, cluster, ns string, files ...string) error {
	shown := "kubectl --context " + cluster
	if ns != "" {
		shown += " -n " + ns
	}
	shown += " apply"
	var objs []*unstructured.Unstructured
	for _, f := range files {
		shown += " -f " + f
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(fh), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				fh.Close()
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if ns != "" && u.GetNamespace() == "" {
				u.SetNamespace(ns)
			}
			objs = append(objs, u)
		}
		fh.Close()
	}
	d.cmd("%s", shown)
	c, err := install.NewClient(d.cfgs[cluster])
	if err != nil {
		return err
	}
	_, err = c.Apply(ctx, objs, false, d.out)
	return err
}

// lbAddress waits for the east-west gateway's LoadBalancer address in
// cluster.
func (d *demo) lbAddress(ctx context.Context, cluster string) (string, error) {
	d.cmd("kubectl --context %s -n istio-system get svc %s -o jsonpath='{.status.loadBalancer.ingress[0].ip}'", cluster, install.GatewayName)
	var addr string
	err := d.poll(ctx, cluster+"'s gateway address", func() (bool, error) {
		svc, err := d.clients[cluster].CoreV1().Services("istio-system").Get(ctx, install.GatewayName, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not there yet: keep polling until the timeout
		}
		if len(svc.Status.LoadBalancer.Ingress) > 0 && svc.Status.LoadBalancer.Ingress[0].IP != "" {
			addr = svc.Status.LoadBalancer.Ingress[0].IP
			return true, nil
		}
		return false, nil
	})
	if err == nil {
		d.say("%s", addr)
	}
	return addr, err
}

// rollout waits for Deployment ns/name to have all its replicas updated
// and available.
func (d *demo) rollout(ctx context.Context, cluster, ns, name string) error {
	err := d.poll(ctx, "deploy/"+name+" in "+cluster, func() (bool, error) {
		dep, err := d.clients[cluster].AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not there yet: keep polling until the timeout
		}
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		return dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas == want &&
			dep.Status.AvailableReplicas == want && dep.Status.Replicas == want, nil
	})
	if err != nil {
		return d.podTrouble(ctx, cluster, ns, err)
	}
	d.say("deployment %q successfully rolled out", name)
	return nil
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

// curl runs curl in sleep's container once; it returns the answer's
// version ("" when there is none) and the output.
// tag is its user agent (found in the proxy's access log).
func (d *demo) curl(ctx context.Context, tag string) (string, string) {
	t := Target{Context: Clusters[0].Name, Namespace: "sample", Pod: "deploy/sleep", Container: "sleep"}
	path, argv, env, err := ExecCommand(ctx, d.o.Options, t, []string{"curl", "-sS", "-m", "5", "-A", tag, "helloworld.sample:5000/hello"})
	if err != nil {
		return "", err.Error()
	}
	c := exec.CommandContext(ctx, path, argv[1:]...)
	c.Env = env
	out, err := c.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		s += " (" + err.Error() + ")"
	}
	if m := versionRE.FindStringSubmatch(s); m != nil && err == nil {
		return m[1], s
	}
	return "", s
}

// upstreamRE matches an access log line: code, user agent, upstream host
// and cluster.
var upstreamRE = regexp.MustCompile(`"GET /hello [^"]*" (\d+) \S+ \S+ \S+ "([^"]*)" .* upstream_host=(\S+) upstream_cluster=(\S+)`)

// proxyLog is sleep's istio-proxy container log, Envoy's access log
// included: what `horizon lab logs -n sample deploy/sleep -c istio-proxy`
// prints.
func (d *demo) proxyLog(ctx context.Context) (string, error) {
	t := Target{Context: Clusters[0].Name, Namespace: "sample", Pod: "deploy/sleep", Container: "istio-proxy"}
	p, err := LogPath(ctx, d.o.Options, t)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("sleep's proxy log: %w", err)
	}
	return string(b), nil
}

func (d *demo) requests(ctx context.Context, res *DemoResult) error {
	// The mesh converges (cluster2's endpoints reach discovery through the
	// remote Secret, then sleep's proxy): wait until both versions have
	// answered once.
	d.say("(waiting until both versions answer: cluster2's endpoints reach discovery, then sleep's proxy)")
	seen := map[string]bool{}
	var last string
	wait := time.Now()
	err := d.poll(ctx, "answers from v1 and v2", func() (bool, error) {
		v, out := d.curl(ctx, "horizon-demo-wait")
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
		d.cmd("kubectl --context %s -n sample exec deploy/sleep -c sleep -- curl -sS -A %s helloworld.sample:5000/hello", Clusters[0].Name, tag(i))
		v, out := d.curl(ctx, tag(i))
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
	d.cmd("horizon lab logs --context %s -n sample deploy/sleep -c istio-proxy | grep horizon-demo-%s", Clusters[0].Name, run)
	byTag := map[string][]string{}
	err = d.poll(ctx, "sleep's proxy to log the requests", func() (bool, error) {
		now, err := d.proxyLog(ctx)
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
	var lines [][]string
	for i := 0; i < d.o.Requests; i++ {
		lines = append(lines, byTag[tag(i)])
	}
	var problems []string
	for i, m := range lines[:d.o.Requests] {
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
