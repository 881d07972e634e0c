package lab

import (
	"bytes"
	"context"
	"crypto/tls"
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

	"k8s.io/client-go/kubernetes"
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
	// node`); horizon-discovery and horizon-agent next to it stand in for
	// Horizon's images (ImagePrograms). This executable when "".
	Horizon string
	// Helloworld stands in for istio/examples-helloworld-vN (helloworld
	// next to Horizon when "", if there is one).
	Helloworld string
	// Envoy is the Envoy binary of horizon/proxy images ($HORIZON_ENVOY
	// when "").
	Envoy string
	// OwnerFile records which state directory's lab holds the machine's
	// lab networks, so that a lab of another one is stopped before they
	// are rebuilt; DefaultOwnerFile when "".
	OwnerFile string
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
	if o.OwnerFile == "" {
		o.OwnerFile = DefaultOwnerFile
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

func clusterNames() string {
	var names []string
	for _, c := range Clusters {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// cleanEarlierLab stops the processes an earlier lab in o.StateDir left
// running (recorded in prev, or found in /proc) and removes its files.
func cleanEarlierLab(o Options, prev *State) error {
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
	// One lab per machine: its networks' names and addresses (and this
	// machine's routes to them) are machine-wide. A lab of another state
	// directory that still runs (`make demo` leaves one up; the tests
	// bring up their own) is stopped whole, rather than left running
	// without its networks.
	if owner, procs := otherLab(o); len(procs) > 0 {
		o.logf("stopping the lab in %s (%d processes): one lab runs per machine, its networks are machine-wide", owner, len(procs))
		if err := stopTiered(procs, o.StopGrace); err != nil {
			return fmt.Errorf("stopping the lab in %s: %w", owner, err)
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

// otherLab is the state directory of the lab that holds the machine's lab
// networks when it is not o's, and its running processes (none: it is
// down, or there is no other).
//
// The owner file is only believed when it names an absolute directory
// whose lab.json says it is that lab: its processes are then looked for
// by that path, and a stale or damaged file must not make Up stop
// processes that merely name some other directory.
func otherLab(o Options) (string, []Process) {
	owner := readOwner(o.OwnerFile)
	if owner == "" || owner == o.StateDir || !filepath.IsAbs(owner) {
		return "", nil
	}
	st, err := LoadState(owner)
	if err != nil || st == nil || st.StateDir != owner {
		return "", nil
	}
	return owner, leftovers(owner, st)
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
	// The networks are another running lab's: they stay.
	owner, others := otherLab(o)
	if len(others) > 0 {
		nss = nil
	}
	if len(procs) == 0 && !hasRuntime(o.StateDir) && len(nss) == 0 {
		o.logf("the lab is not up (nothing in %s)", o.StateDir)
		return 0, nil
	}
	if err := stopTiered(procs, o.StopGrace); err != nil {
		return 0, err
	}
	if len(others) > 0 {
		o.logf("leaving the lab networks to the lab in %s, which runs", owner)
	} else if err := TeardownNetworks(context.WithoutCancel(ctx)); err != nil {
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

// insecure talks to the controller manager's and the scheduler's
// self-signed loopback endpoints, where only /healthz is asked for.
var insecure = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback health checks

func componentHealthy(ctx context.Context, port int) error {
	body, err := k8sproc.Get(ctx, insecure, url("https", port)+"/healthz")
	if err != nil {
		return err
	}
	if string(bytes.TrimSpace(body)) != "ok" {
		return fmt.Errorf("/healthz: %s", bytes.TrimSpace(body))
	}
	return nil
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
		err := k8sproc.APIReady(cctx, clients[c.Name])
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
