package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/horizonmesh/horizon/internal/k8sproc"
)

// Options for Up, Down and Status.
type Options struct {
	// StateDir holds everything the lab writes; DefaultStateDir() when "".
	StateDir string
	// BinDir holds the Kubernetes binaries; k8sproc.BinDir() when "".
	BinDir string
	// Progress receives one line per step (io.Discard when nil).
	Progress io.Writer
	// Timeout bounds Up's wait for both clusters (3 minutes when 0).
	Timeout time.Duration
	// StopGrace is how long a process has to exit after SIGTERM before it is
	// killed (10 seconds when 0).
	StopGrace time.Duration
	// Horizon is the horizon binary the lab nodes run as (`horizon lab
	// node`) and that stands in for Horizon's images; this executable when
	// "".
	Horizon string
	// Helloworld stands in for istio/examples-helloworld-vN (helloworld
	// next to Horizon when "", if there is one).
	Helloworld string
	// Envoy is the Envoy binary of horizon/proxy images ($HORIZON_ENVOY
	// when "").
	Envoy string
}

func (o Options) normalized() (Options, error) {
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir()
	}
	if o.BinDir == "" {
		o.BinDir = k8sproc.BinDir()
	}
	var err error
	if o.StateDir, err = filepath.Abs(o.StateDir); err != nil {
		return o, err
	}
	if o.BinDir, err = filepath.Abs(o.BinDir); err != nil {
		return o, err
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	o.Progress = &lineWriter{w: o.Progress}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.Horizon == "" {
		if o.Horizon, err = os.Executable(); err != nil {
			return o, err
		}
	}
	o.findPrograms()
	for _, p := range []*string{&o.Horizon, &o.Helloworld, &o.Envoy} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return o, err
			}
		}
	}
	return o, nil
}

// lineWriter keeps concurrent progress lines whole.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (o Options) logf(format string, a ...any) {
	fmt.Fprintf(o.Progress, "lab: "+format+"\n", a...)
}

// Env is what `horizon lab env` prints: the walkthrough's variables, the
// kubeconfig's path absolute, and, when binDir is given, PATH with binDir
// first, so that `kubectl` is the lab's (the pinned release).
func Env(stateDir, binDir string) string {
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	path := ""
	if binDir != "" {
		if abs, err := filepath.Abs(binDir); err == nil {
			binDir = abs
		}
		path = " PATH=" + shellQuote(binDir) + `:"$PATH"`
	}
	return fmt.Sprintf("export KUBECONFIG=%s CTX_LOCAL=%s CTX_REMOTE=%s%s\n",
		shellQuote(KubeconfigPath(stateDir)), Clusters[0].Name, Clusters[1].Name, path)
}

// EnvOf is Env for the lab of o: its kubectl is the one in the bin
// directory the lab was started with (else o's), if there is one.
func EnvOf(opts Options) string {
	o, err := opts.normalized()
	if err != nil {
		return Env(opts.StateDir, "")
	}
	if st, err := LoadState(o.StateDir); err == nil && st != nil && st.BinDir != "" {
		o.BinDir = st.BinDir
	}
	if k8sproc.CheckBinaries(o.BinDir, k8sproc.Kubectl) != nil {
		o.BinDir = ""
	}
	return Env(o.StateDir, o.BinDir)
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@%=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Up starts the lab in o.StateDir and waits until both clusters are ready:
// each API server answers /readyz, the controller manager and the scheduler
// /healthz, and the controller manager has made the default ServiceAccount.
// When the lab is already up it returns alreadyUp and changes nothing; what
// an earlier lab left (processes, files) is cleaned first. On failure every
// process Up started is stopped and the logs are kept.
func Up(ctx context.Context, opts Options) (alreadyUp bool, err error) {
	o, err := opts.normalized()
	if err != nil {
		return false, err
	}
	if err := CheckBinaries(o.BinDir); err != nil {
		return false, err
	}
	begin := time.Now()
	prev, err := LoadState(o.StateDir)
	if err != nil {
		o.logf("%v: treating it as a leftover", err)
	}
	if prev != nil {
		err := prev.ready(ctx)
		if err == nil {
			o.logf("the lab is already up in %s (`horizon lab down` stops it)", o.StateDir)
			return true, nil
		}
		o.logf("an earlier lab in %s is not (fully) up: %v", o.StateDir, err)
	}
	// What the pods run, checked before anything starts (a lab that is up
	// already has them).
	if err := o.checkPrograms(); err != nil {
		return false, err
	}
	if err := cleanLeftovers(o, prev); err != nil {
		return false, err
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return false, err
	}
	if err := SetupNetworks(ctx); err != nil {
		return false, err
	}
	o.logf("networks: %s", networkSummary())
	r := &run{o: o, st: &State{StateDir: o.StateDir, BinDir: o.BinDir}}
	for _, c := range Clusters {
		r.st.Clusters = append(r.st.Clusters, ClusterState{Name: c.Name, ServiceCIDR: c.ServiceCIDR})
	}
	if err := r.save(); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	errs := make([]error, len(Clusters))
	var wg sync.WaitGroup
	for i, c := range Clusters {
		wg.Go(func() { errs[i] = r.startCluster(ctx, c) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err == nil {
		err = r.writeKubeconfig()
		errs = []error{err}
	}
	if err := errors.Join(errs...); err == nil {
		errs = make([]error, len(Clusters))
		for i, c := range Clusters {
			wg.Go(func() { errs[i] = r.startNode(ctx, c) })
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		o.logf("stopping what was started (logs kept in %s; `horizon lab down` removes them)", o.StateDir)
		if serr := stopTiered(r.st.processes(), o.StopGrace); serr != nil {
			err = errors.Join(err, serr)
		}
		if nerr := TeardownNetworks(context.WithoutCancel(ctx)); nerr != nil {
			err = errors.Join(err, nerr)
		}
		return false, err
	}
	o.logf("up in %s: kubeconfig %s, contexts %s", time.Since(begin).Round(100*time.Millisecond), KubeconfigPath(o.StateDir), clusterNames())
	return false, nil
}

func clusterNames() string {
	var names []string
	for _, c := range Clusters {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// cleanLeftovers stops the processes an earlier lab in o.StateDir left
// running (recorded in prev, or found in /proc) and removes its files.
func cleanLeftovers(o Options, prev *State) error {
	procs := leftovers(o.StateDir, prev)
	if len(procs) > 0 {
		var names []string
		for _, p := range procs {
			names = append(names, fmt.Sprintf("%s (pid %d)", filepath.Base(p.Component), p.PID))
		}
		o.logf("stopping %d leftover processes: %s", len(procs), strings.Join(names, ", "))
		if err := stopTiered(procs, o.StopGrace); err != nil {
			return fmt.Errorf("cleaning up the earlier lab in %s: %w", o.StateDir, err)
		}
	}
	if nss, _ := LabNamespaces(context.Background()); len(nss) > 0 {
		o.logf("removing %d leftover network namespaces (%s)", len(nss), strings.Join(nss, ", "))
	}
	if err := TeardownNetworks(context.Background()); err != nil {
		return fmt.Errorf("cleaning up the earlier lab's networks: %w", err)
	}
	if hasRuntime(o.StateDir) {
		o.logf("removing the earlier lab's files in %s", o.StateDir)
		if err := removeRuntime(o.StateDir); err != nil {
			return fmt.Errorf("cleaning up the earlier lab in %s: %w", o.StateDir, err)
		}
	}
	return nil
}

// leftovers are the running processes recorded in st and those found in
// /proc naming a file in stateDir, once each.
func leftovers(stateDir string, st *State) []Process {
	var out []Process
	seen := map[int]bool{}
	if st != nil {
		for _, p := range st.processes() {
			if p.Running() {
				out = append(out, p)
				seen[p.PID] = true
			}
		}
	}
	for _, pid := range FindProcesses(stateDir, false) {
		if !seen[pid] {
			if p, err := asProcess(pid); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// Down stops every lab process in o.StateDir (SIGTERM, SIGKILL after
// o.StopGrace), removes the lab's files there, and checks that no lab
// process is left. It reports how many processes it stopped; a lab that is
// not up is no error.
func Down(ctx context.Context, opts Options) (stopped int, err error) {
	o, err := opts.normalized()
	if err != nil {
		return 0, err
	}
	begin := time.Now()
	st, err := LoadState(o.StateDir)
	if err != nil {
		o.logf("%v: looking for lab processes in /proc only", err)
	}
	procs := leftovers(o.StateDir, st)
	nss, _ := LabNamespaces(ctx)
	if len(procs) == 0 && !hasRuntime(o.StateDir) && len(nss) == 0 {
		o.logf("the lab is not up (nothing in %s)", o.StateDir)
		return 0, nil
	}
	if err := stopTiered(procs, o.StopGrace); err != nil {
		return 0, err
	}
	if err := TeardownNetworks(context.WithoutCancel(ctx)); err != nil {
		return len(procs), err
	}
	if err := removeRuntime(o.StateDir); err != nil {
		return len(procs), err
	}
	if left := leftovers(o.StateDir, st); len(left) > 0 {
		return len(procs), fmt.Errorf("lab processes still running after down: %v", left)
	}
	o.logf("down in %s: stopped %d processes, removed the lab's files in %s", time.Since(begin).Round(100*time.Millisecond), len(procs), o.StateDir)
	return len(procs), nil
}

// stopTiered stops procs clients first, etcd last: an API server whose
// etcd is gone, or a controller whose API server is, takes its whole grace
// period to give up.
func stopTiered(procs []Process, grace time.Duration) error {
	for _, tier := range [][]string{{NodeComponent}, {k8sproc.KubeScheduler, k8sproc.KubeControllerManager}, {k8sproc.KubeAPIServer}} {
		var these []Process
		for _, p := range procs {
			if slices.Contains(tier, filepath.Base(p.Component)) {
				these = append(these, p)
			}
		}
		_ = stop(these, grace) // what is left is stopped below
	}
	return stop(procs, grace)
}

// run is one Up.
type run struct {
	o  Options
	mu sync.Mutex
	st *State
	// pkis by cluster, for the kubeconfig.
	pkis sync.Map
}

func (r *run) save() error { return r.st.save() }

// record adds p to cluster's processes and saves the state.
func (r *run) record(cluster string, p Process) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.st.cluster(cluster)
	c.Processes = append(c.Processes, p)
	return r.st.save()
}

func (r *run) startCluster(ctx context.Context, spec ClusterSpec) error {
	for attempt := 1; ; attempt++ {
		err := r.startClusterOnce(ctx, spec)
		if err == nil || !errors.Is(err, errPortTaken) || attempt >= 3 {
			return err
		}
		r.o.logf("%s: %v; starting again on other ports", spec.Name, err)
		r.mu.Lock()
		c := r.st.cluster(spec.Name)
		procs := c.Processes
		c.Processes = nil
		r.mu.Unlock()
		if err := stopTiered(procs, r.o.StopGrace); err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
	}
}

func (r *run) startClusterOnce(ctx context.Context, spec ClusterSpec) error {
	begin := time.Now()
	since := func() time.Duration { return time.Since(begin).Round(100 * time.Millisecond) }
	dir := clusterDir(filepath.Join(r.o.StateDir, spec.Name))
	if err := os.RemoveAll(string(dir)); err != nil {
		return err
	}
	if err := os.MkdirAll(dir.pki(""), 0o700); err != nil {
		return err
	}
	ps, err := k8sproc.FreePorts(5)
	if err != nil {
		return err
	}
	ports := Ports{EtcdClient: ps[0], EtcdPeer: ps[1], APIServer: ps[2], ControllerManager: ps[3], Scheduler: ps[4]}
	server := url("https", ports.APIServer)
	pki, err := newClusterPKI(spec, dir, server)
	if err != nil {
		return fmt.Errorf("%s: certificates: %w", spec.Name, err)
	}
	r.pkis.Store(spec.Name, pki)
	r.mu.Lock()
	c := r.st.cluster(spec.Name)
	c.ServiceCIDR, c.Server, c.Ports = spec.ServiceCIDR, server, ports
	err = r.st.save()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	admin := &rest.Config{Host: server, QPS: 50, Burst: 100, Timeout: 5 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: pki.CACert, CertData: pki.AdminCert, KeyData: pki.AdminKey}}
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}

	cmds := commands(r.o.BinDir, spec, dir, ports)
	var started []*child
	start := func(cmd command) error {
		p, err := spawn(cmd, string(dir), dir.log(cmd.component), ports.of(cmd.component))
		if err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
		started = append(started, p)
		return r.record(spec.Name, p.Process)
	}
	wait := func(what string, check func(context.Context) error) error {
		return r.waitFor(ctx, spec.Name, what, started, check)
	}

	if err := start(cmds[0]); err != nil {
		return err
	}
	if err := wait("etcd", func(ctx context.Context) error { return etcdHealthy(ctx, ports.EtcdClient) }); err != nil {
		return err
	}
	r.o.logf("%s: etcd up on 127.0.0.1:%d (%s)", spec.Name, ports.EtcdClient, since())
	if err := start(cmds[1]); err != nil {
		return err
	}
	if err := wait("kube-apiserver /readyz", func(ctx context.Context) error { return apiReady(ctx, client) }); err != nil {
		return err
	}
	r.o.logf("%s: kube-apiserver ready at %s (%s)", spec.Name, server, since())
	if err := start(cmds[2]); err != nil {
		return err
	}
	if err := start(cmds[3]); err != nil {
		return err
	}
	if err := wait("kube-controller-manager and kube-scheduler /healthz", func(ctx context.Context) error {
		return errors.Join(componentHealthy(ctx, ports.ControllerManager), componentHealthy(ctx, ports.Scheduler))
	}); err != nil {
		return err
	}
	if err := wait("the default ServiceAccount (made by kube-controller-manager)", func(ctx context.Context) error {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	r.o.logf("%s: kube-controller-manager and kube-scheduler running, default ServiceAccount made (%s)", spec.Name, since())
	return nil
}

// waitFor polls check until it succeeds, failing early, with the tail of
// its log, when one of procs exits, and at ctx's end with the last error
// and every log's tail.
func (r *run) waitFor(ctx context.Context, cluster, what string, procs []*child, check func(context.Context) error) error {
	begin := time.Now()
	nextNote := begin.Add(15 * time.Second)
	for {
		for _, p := range procs {
			if p.exited() {
				t := k8sproc.Tail(p.Log, 40)
				err := fmt.Errorf("%s: %s exited (%v) while waiting for %s; last lines of %s:\n%s", cluster, p.Component, p.err, what, p.Log, t) //nolint:errorlint // p.err may be nil (exit 0)
				if strings.Contains(t, "address already in use") {
					err = fmt.Errorf("%w: %w", errPortTaken, err)
				}
				return err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			var b strings.Builder
			fmt.Fprintf(&b, "%s: %s not ready after %s: %v", cluster, what, time.Since(begin).Round(time.Second), err)
			for _, p := range procs {
				fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", p.Log, k8sproc.Tail(p.Log, 20))
			}
			return errors.New(b.String())
		}
		if time.Now().After(nextNote) {
			r.o.logf("%s: still waiting for %s (%s): %v", cluster, what, time.Since(begin).Round(time.Second), err)
			nextNote = time.Now().Add(15 * time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func newClusterPKI(spec ClusterSpec, dir clusterDir, server string) (*k8sproc.PKI, error) {
	ip, err := serviceIP(spec.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	// Pods reach the API server at the kubernetes Service's ClusterIP and
	// the router's addresses (apiproxy.go).
	pki, err := k8sproc.NewPKI(k8sproc.PKIOptions{
		CAName:     "horizon-lab-" + spec.Name + "-ca",
		Validity:   365 * 24 * time.Hour,
		ServingIPs: []net.IP{ip, net.ParseIP(spec.Router), net.ParseIP(spec.Public)},
		ServingDNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return nil, err
	}
	if _, err := pki.Write(dir.pki("")); err != nil {
		return nil, err
	}
	cert, key, err := pki.ClientCert(frontProxyUser)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(dir.pki(frontProxyCert), cert, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(dir.pki(frontProxyKey), key, 0o600); err != nil {
		return nil, err
	}
	// The kubelet API's two ends (config.go): the node's serving
	// certificate for its InternalIP and name, the API server's client one.
	nodeCert, nodeKey, err := pki.IssueServingCert(spec.NodeName(), []net.IP{net.ParseIP(spec.Router)}, []string{spec.NodeName()})
	if err != nil {
		return nil, err
	}
	clientCert, clientKey, err := pki.ClientCert(kubeletClientUser)
	if err != nil {
		return nil, err
	}
	for name, b := range map[string][]byte{kubeletCert: nodeCert, kubeletKey: nodeKey, kubeletClientCert: clientCert, kubeletClientKey: clientKey} {
		if err := os.WriteFile(dir.pki(name), b, 0o600); err != nil {
			return nil, err
		}
	}
	// The controller manager and the scheduler as the users the bootstrap
	// RBAC policy grants their permissions to.
	for component, user := range map[string]string{
		k8sproc.KubeControllerManager: "system:kube-controller-manager",
		k8sproc.KubeScheduler:         "system:kube-scheduler",
	} {
		cert, key, err := pki.ClientCert(user)
		if err != nil {
			return nil, err
		}
		cfg := kubeconfig(map[string]clusterCreds{spec.Name: {
			server: server, user: component, ca: pki.CACert, cert: cert, key: key}}, spec.Name)
		b, err := clientcmd.Write(*cfg)
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(dir.kubeconfig(component), b, 0o600); err != nil {
			return nil, err
		}
	}
	return pki, nil
}

type clusterCreds struct {
	server, user  string
	ca, cert, key []byte
}

func kubeconfig(clusters map[string]clusterCreds, current string) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	for name, c := range clusters {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: c.server, CertificateAuthorityData: c.ca}
		user := name + "-" + c.user
		cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: c.cert, ClientKeyData: c.key}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	}
	cfg.CurrentContext = current
	return cfg
}

// writeKubeconfig writes <state>/kubeconfig: one admin context per cluster.
func (r *run) writeKubeconfig() error {
	creds := map[string]clusterCreds{}
	for _, c := range r.st.Clusters {
		v, ok := r.pkis.Load(c.Name)
		if !ok {
			return fmt.Errorf("%s: no certificates", c.Name)
		}
		p := v.(*k8sproc.PKI)
		creds[c.Name] = clusterCreds{server: c.Server, user: "admin", ca: p.CACert, cert: p.AdminCert, key: p.AdminKey}
	}
	b, err := clientcmd.Write(*kubeconfig(creds, Clusters[0].Name))
	if err != nil {
		return err
	}
	return writeAtomic(KubeconfigPath(r.o.StateDir), b, 0o600)
}

func etcdHealthy(ctx context.Context, port int) error {
	body, err := get(ctx, http.DefaultClient, url("http", port)+"/health")
	if err != nil {
		return err
	}
	if !bytes.Contains(body, []byte(`"health":"true"`)) {
		return fmt.Errorf("/health: %s", bytes.TrimSpace(body))
	}
	return nil
}

// insecure talks to the controller manager's and the scheduler's
// self-signed loopback endpoints, where only /healthz is asked for.
var insecure = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback health checks

func componentHealthy(ctx context.Context, port int) error {
	body, err := get(ctx, insecure, url("https", port)+"/healthz")
	if err != nil {
		return err
	}
	if string(bytes.TrimSpace(body)) != "ok" {
		return fmt.Errorf("/healthz: %s", bytes.TrimSpace(body))
	}
	return nil
}

func get(ctx context.Context, c *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// apiReady: /readyz says ok and the default namespace (made by a
// post-start hook) exists.
func apiReady(ctx context.Context, c kubernetes.Interface) error {
	body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return err
	}
	if string(bytes.TrimSpace(body)) != "ok" {
		return fmt.Errorf("/readyz: %s", body)
	}
	_, err = c.CoreV1().Namespaces().Get(ctx, corev1.NamespaceDefault, metav1.GetOptions{})
	return err
}

// ready reports why the lab recorded in s is not up: a recorded process not
// running, a cluster missing, an API server not ready.
func (s *State) ready(ctx context.Context) error {
	if len(s.Clusters) != len(Clusters) {
		return fmt.Errorf("%d of %d clusters recorded", len(s.Clusters), len(Clusters))
	}
	for _, c := range s.Clusters {
		if len(c.Processes) != len(Components)+1 {
			return fmt.Errorf("%s: %d of %d processes recorded", c.Name, len(c.Processes), len(Components)+1)
		}
		for _, p := range c.Processes {
			if !p.Running() {
				return fmt.Errorf("%s: %s (pid %d) is not running", c.Name, p.Component, p.PID)
			}
		}
	}
	clients, err := Clients(s.StateDir)
	if err != nil {
		return err
	}
	for _, c := range s.Clusters {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := apiReady(cctx, clients[c.Name])
		cancel()
		if err != nil {
			return fmt.Errorf("%s: kube-apiserver: %w", c.Name, err)
		}
	}
	for _, ns := range append([]string{PublicNS}, routerNamespaces()...) {
		if _, err := runCmd(ctx, nil, "ip", "netns", "pids", ns); err != nil {
			return fmt.Errorf("network namespace %s: %w", ns, err)
		}
	}
	return nil
}

func routerNamespaces() []string {
	var out []string
	for _, c := range Clusters {
		out = append(out, c.RouterNS())
	}
	return out
}

func networkSummary() string {
	var parts []string
	for _, c := range Clusters {
		parts = append(parts, fmt.Sprintf("%s %s (router %s, %s on %s), load balancers %s-%s", c.Network, c.PodCIDR, c.RouterNS(), c.Public, PublicCIDR, c.LBFirst, c.LBLast))
	}
	return strings.Join(parts, "; ") + "; no route between the pod networks"
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// startNode starts cluster spec's lab node (`horizon lab node`) and waits
// for its Node to be Ready.
func (r *run) startNode(ctx context.Context, spec ClusterSpec) error {
	begin := time.Now()
	dir := clusterDir(filepath.Join(r.o.StateDir, spec.Name))
	args := []string{"lab", "node", "--state-dir", r.o.StateDir, "--cluster", spec.Name}
	if r.o.Helloworld != "" {
		args = append(args, "--helloworld", r.o.Helloworld)
	}
	if r.o.Envoy != "" {
		args = append(args, "--envoy", r.o.Envoy)
	}
	p, err := spawn(command{component: NodeComponent, path: r.o.Horizon, args: args}, string(dir), dir.log(NodeComponent), 0)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.Name, err)
	}
	if err := r.record(spec.Name, p.Process); err != nil {
		return err
	}
	clients, err := Clients(r.o.StateDir)
	if err != nil {
		return err
	}
	if err := r.waitFor(ctx, spec.Name, "the lab node "+spec.NodeName()+" Ready", []*child{p}, func(ctx context.Context) error {
		return nodeReady(ctx, clients[spec.Name], spec)
	}); err != nil {
		return err
	}
	r.o.logf("%s: lab node %s Ready, pods on %s %s (%s)", spec.Name, spec.NodeName(), spec.Network, spec.PodCIDR, time.Since(begin).Round(100*time.Millisecond))
	return nil
}

// Clients are admin clients of the lab's clusters by name, from its
// kubeconfig.
func Clients(stateDir string) (map[string]kubernetes.Interface, error) {
	path := KubeconfigPath(stateDir)
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]kubernetes.Interface{}
	for _, c := range Clusters {
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, c.Name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("%s: context %s: %w", path, c.Name, err)
		}
		cfg.Timeout = 10 * time.Second
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		out[c.Name] = cs
	}
	return out, nil
}
