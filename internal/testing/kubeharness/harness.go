// Package kubeharness starts real Kubernetes API servers for integration
// tests: kube-apiserver with its own etcd, both built from the modules pinned
// in tools/ by scripts/k8s-bins.sh. RBAC is enforced, service-account tokens
// come from the TokenRequest API, and no controller-manager runs: tests
// create ServiceAccounts themselves and write Pod status with UpdateStatus.
package kubeharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/k8sproc"
)

// The releases pinned in tools/k8s/go.mod and tools/etcd/go.mod; they name
// the cache directory scripts/k8s-bins.sh builds into (a unit test keeps
// them in step).
const (
	KubernetesVersion = k8sproc.KubernetesVersion
	EtcdVersion       = k8sproc.EtcdVersion
)

// StartTimeout bounds how long Start waits for an API server to be ready.
const StartTimeout = 60 * time.Second

// Options for Start.
type Options struct {
	// Name names the cluster (kubeconfig context, service-account issuer).
	Name string
	// BinDir holds kube-apiserver and etcd; Binaries(t) by default.
	BinDir string
	// ServiceCIDR is the Service IP range, 10.96.0.0/16 by default.
	ServiceCIDR string
	// ExtraArgs are appended to kube-apiserver's flags.
	ExtraArgs []string
}

// Cluster is one running API server and its etcd.
type Cluster struct {
	Name string
	// URL is the API server's https URL on 127.0.0.1.
	URL string
	// EtcdURL is the client URL of this cluster's own etcd.
	EtcdURL string
	// CACert is the PEM CA that signed the serving and admin certificates.
	CACert []byte
	// AdminConfig authenticates as a system:masters client certificate.
	AdminConfig *rest.Config
	Client      kubernetes.Interface
	// Dir holds certificates, etcd's data and the processes' logs
	// (etcd.log, kube-apiserver.log).
	Dir string

	pki     *k8sproc.PKI
	mu      sync.Mutex
	procs   []*proc // etcd, then kube-apiserver (absent while stopped)
	apiPath string
	apiArgs []string // kube-apiserver's command line, for a restart
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, set before done closes
}

// DefaultBinDir is where scripts/k8s-bins.sh builds by default:
// ${XDG_CACHE_HOME:-$HOME/.cache}/horizon/k8s-<version>-etcd-<version>.
func DefaultBinDir() string { return k8sproc.DefaultBinDir() }

// Binaries returns the directory holding kube-apiserver and etcd:
// $HORIZON_K8S_BIN_DIR, else DefaultBinDir(). When they are missing the test
// is skipped, or fails when Required() (CI=true or HORIZON_REQUIRE_E2E=1),
// where a missing prerequisite must not pass silently.
func Binaries(t testing.TB) string {
	t.Helper()
	dir := k8sproc.BinDir()
	if err := checkBinaries(dir); err != nil {
		msg := fmt.Sprintf("kube-apiserver/etcd not available: %v; build them with "+
			"`%s` (or run `make integration`)", err, k8sproc.BuildHint)
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// Required reports whether end-to-end prerequisites must be present: under
// CI=true or HORIZON_REQUIRE_E2E=1 (set by `make integration`) a missing one
// fails the test instead of skipping it.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("HORIZON_REQUIRE_E2E") == "1"
}

// checkBinaries checks what the harness runs (kube-apiserver and etcd
// only; `horizon lab` checks the rest itself).
func checkBinaries(dir string) error {
	return k8sproc.CheckBinaries(dir, k8sproc.KubeAPIServer, k8sproc.Etcd)
}

// Start starts etcd and kube-apiserver on free loopback ports in a fresh
// t.TempDir(), waits until /readyz answers ok, and stops both processes when
// the test ends. Several clusters may run at once.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "cluster"
	}
	bin := opts.BinDir
	if bin == "" {
		bin = Binaries(t)
	} else if err := checkBinaries(bin); err != nil {
		t.Fatalf("kubeharness: %v", err)
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.96.0.0/16"
	}
	begin := time.Now()
	// A port picked free may be taken by someone else before the process
	// binds it: start again on fresh ports then.
	for attempt := 1; ; attempt++ {
		c := &Cluster{Name: opts.Name, Dir: t.TempDir()}
		t.Cleanup(c.Stop)
		err := c.start(bin, opts)
		if err == nil {
			t.Logf("kubeharness: cluster %s ready at %s in %s (files in %s)", c.Name, c.URL, time.Since(begin).Round(time.Millisecond), c.Dir)
			return c
		}
		c.Stop()
		if errors.Is(err, errPortTaken) && attempt < 3 {
			t.Logf("kubeharness: cluster %s: %v; retrying on other ports", c.Name, err)
			continue
		}
		t.Fatalf("kubeharness: cluster %s did not start: %v", c.Name, err)
	}
}

var errPortTaken = errors.New("a port was taken")

func (c *Cluster) start(bin string, opts Options) error {
	var err error
	if c.pki, err = k8sproc.NewPKI(k8sproc.PKIOptions{}); err != nil {
		return err
	}
	c.CACert = c.pki.CACert
	files, err := c.pki.Write(c.Dir)
	if err != nil {
		return err
	}
	ports, err := k8sproc.FreePorts(3)
	if err != nil {
		return err
	}
	c.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	member := "etcd-" + opts.Name
	if err := c.spawn(filepath.Join(bin, "etcd"), "etcd",
		"--name", member, "--data-dir", filepath.Join(c.Dir, "etcd-data"),
		"--listen-client-urls", c.EtcdURL, "--advertise-client-urls", c.EtcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", member+"="+peerURL,
		"--unsafe-no-fsync", // test data: durability buys nothing, fsync costs seconds
		"--log-level", "warn"); err != nil {
		return err
	}
	args := []string{
		"--etcd-servers", c.EtcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]),
		"--tls-cert-file", files["serving.crt"], "--tls-private-key-file", files["serving.key"],
		"--client-ca-file", files["ca.crt"],
		"--service-account-issuer", "https://kubernetes.default.svc." + opts.Name,
		"--service-account-key-file", files["sa.pub"],
		"--service-account-signing-key-file", files["sa.key"],
		"--service-cluster-ip-range", opts.ServiceCIDR,
		"--authorization-mode", "RBAC",
		// No controller-manager runs, so nothing would create the default
		// ServiceAccount or mount its token: pods are admitted without one.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		// Leave the "kubernetes" Service's endpoints alone (127.0.0.1).
		"--endpoint-reconciler-type", "none",
		"--profiling=false",
	}
	c.apiPath, c.apiArgs = filepath.Join(bin, "kube-apiserver"), append(args, opts.ExtraArgs...)
	if err := c.spawn(c.apiPath, apiServer, c.apiArgs...); err != nil {
		return err
	}
	c.AdminConfig = &rest.Config{Host: c.URL, QPS: 200, Burst: 400,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.CACert, CertData: c.pki.AdminCert, KeyData: c.pki.AdminKey}}
	if c.Client, err = kubernetes.NewForConfig(c.AdminConfig); err != nil {
		return err
	}
	return c.waitReady()
}

const apiServer = "kube-apiserver"

// spawn starts a process, its output appended to LogPath(name) (a restarted
// API server keeps the earlier lines).
func (c *Cluster) spawn(path, name string, args ...string) error {
	log, err := os.OpenFile(c.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = log, log
	// Never outlive the test binary, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return nil
}

func (c *Cluster) running() []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*proc(nil), c.procs...)
}

// waitReady polls /readyz (and the default namespace, made by a post-start
// hook) until StartTimeout, failing early when a process exits.
func (c *Cluster) waitReady() error {
	deadline := time.Now().Add(StartTimeout)
	var last error
	for {
		for _, p := range c.running() {
			select {
			case <-p.done:
				err := fmt.Errorf("%s exited (%v)%s", p.name, p.err, c.tails()) //nolint:errorlint // p.err may be nil (exit 0)
				if strings.Contains(c.logTail(p.name, 60), "address already in use") {
					err = fmt.Errorf("%w: %w", errPortTaken, err)
				}
				return err
			default:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		switch {
		case err != nil:
			last = err
		case !bytes.Equal(bytes.TrimSpace(body), []byte("ok")):
			last = fmt.Errorf("/readyz: %s", body)
		default:
			_, err = c.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
			last = err
		}
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w%s", StartTimeout, last, c.tails())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// LogPath is where a process's stdout and stderr go ("etcd" or
// "kube-apiserver").
func (c *Cluster) LogPath(name string) string { return filepath.Join(c.Dir, name+".log") }

func (c *Cluster) tails() string {
	var b strings.Builder
	for _, p := range c.running() {
		fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", c.LogPath(p.name), c.logTail(p.name, 40))
	}
	return b.String()
}

func (c *Cluster) logTail(name string, n int) string { return k8sproc.Tail(c.LogPath(name), n) }

// Stop stops the API server, then etcd (also done when the test ends); a
// second call does nothing.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		terminate(procs[i], syscall.SIGTERM)
	}
}

// StopAPIServer stops kube-apiserver only (SIGTERM, or SIGKILL when kill is
// set, as a crash would), keeping etcd, the certificates and the port:
// clients see connections refused until StartAPIServer. Stopping a stopped
// API server does nothing.
func (c *Cluster) StopAPIServer(kill bool) {
	c.mu.Lock()
	var p *proc
	for i, q := range c.procs {
		if q.name == apiServer {
			p = q
			c.procs = append(c.procs[:i:i], c.procs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	terminate(p, sig)
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, with the
// same flags (URL, certificates, service-account keys, the same etcd), and
// waits until it is ready. The cluster's objects are all still there; a
// running API server is left alone.
func (c *Cluster) StartAPIServer() error {
	for _, p := range c.running() {
		if p.name == apiServer {
			return nil
		}
	}
	if c.apiPath == "" {
		return errors.New("kubeharness: the cluster was never started")
	}
	begin := time.Now()
	// The port was ours until the stop; retry briefly should the kernel
	// not have released it yet.
	for attempt := 1; ; attempt++ {
		if err := c.spawn(c.apiPath, apiServer, c.apiArgs...); err != nil {
			return err
		}
		err := c.waitReady()
		if err == nil {
			return nil
		}
		c.StopAPIServer(true)
		if !errors.Is(err, errPortTaken) || attempt >= 5 || time.Since(begin) > StartTimeout {
			return fmt.Errorf("kubeharness: cluster %s: restarting kube-apiserver: %w", c.Name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// APIServerRunning reports whether kube-apiserver's process is running.
func (c *Cluster) APIServerRunning() bool {
	for _, p := range c.running() {
		if p.name == apiServer {
			select {
			case <-p.done:
				return false
			default:
				return true
			}
		}
	}
	return false
}

// terminate signals a process and waits for it to exit, killing it after
// 10 seconds.
func terminate(p *proc, sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
