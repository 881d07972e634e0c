// Package kubeharness starts real Kubernetes API servers for integration
// tests: kube-apiserver with its own etcd, both built from the modules pinned
// in tools/ by scripts/k8s-bins.sh. RBAC is enforced, service-account tokens
// come from the TokenRequest API, and no controller-manager runs: tests
// create ServiceAccounts themselves and write Pod status with UpdateStatus.
package kubeharness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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

	pki *k8sproc.PKI
	cp  *k8sproc.ControlPlane // etcd, then kube-apiserver (absent while stopped)
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
		if errors.Is(err, k8sproc.ErrPortTaken) && attempt < 3 {
			t.Logf("kubeharness: cluster %s: %v; retrying on other ports", c.Name, err)
			continue
		}
		t.Fatalf("kubeharness: cluster %s did not start: %v", c.Name, err)
	}
}

func (c *Cluster) start(bin string, opts Options) error {
	var err error
	if c.pki, err = k8sproc.NewPKI(k8sproc.PKIOptions{}); err != nil {
		return err
	}
	c.CACert = c.pki.CACert
	if _, err := c.pki.Write(c.Dir); err != nil {
		return err
	}
	ports, err := k8sproc.FreePorts(3)
	if err != nil {
		return err
	}
	c.cp = &k8sproc.ControlPlane{Name: opts.Name, BinDir: bin, Dir: c.Dir, PKIDir: c.Dir, ServiceCIDR: opts.ServiceCIDR,
		EtcdPort: ports[0], EtcdPeerPort: ports[1], APIServerPort: ports[2],
		// No controller-manager runs, so nothing would create the default
		// ServiceAccount or mount its token: pods are admitted without one.
		APIServerArgs: append([]string{"--disable-admission-plugins", "ServiceAccount"}, opts.ExtraArgs...),
	}
	c.EtcdURL, c.URL = c.cp.EtcdURL(), c.cp.URL()
	c.AdminConfig = &rest.Config{Host: c.URL, QPS: 200, Burst: 400,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.CACert, CertData: c.pki.AdminCert, KeyData: c.pki.AdminKey}}
	if c.Client, err = kubernetes.NewForConfig(c.AdminConfig); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	return c.cp.Start(ctx, c.Client)
}

// LogPath is where a process's stdout and stderr go ("etcd" or
// "kube-apiserver").
func (c *Cluster) LogPath(name string) string { return filepath.Join(c.Dir, name+".log") }

// Stop stops the API server, then etcd (also done when the test ends); a
// second call does nothing.
func (c *Cluster) Stop() {
	if c.cp != nil {
		c.cp.Stop(stopGrace)
	}
}

// stopGrace is how long a process has to exit after a signal before it is
// killed.
const stopGrace = 10 * time.Second

// StopAPIServer stops kube-apiserver only (SIGTERM, or SIGKILL when kill is
// set, as a crash would), keeping etcd, the certificates and the port:
// clients see connections refused until StartAPIServer. Stopping a stopped
// API server does nothing.
func (c *Cluster) StopAPIServer(kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	c.cp.StopComponent(k8sproc.KubeAPIServer, sig, stopGrace)
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, with the
// same flags (URL, certificates, service-account keys, the same etcd), and
// waits until it is ready. The cluster's objects are all still there; a
// running API server is left alone.
func (c *Cluster) StartAPIServer() error {
	if c.cp == nil {
		return errors.New("kubeharness: the cluster was never started")
	}
	if c.APIServerRunning() {
		return nil
	}
	begin := time.Now()
	// The port was ours until the stop; retry briefly should the kernel
	// not have released it yet.
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
		err := c.cp.StartAPIServer(ctx, c.Client)
		cancel()
		if err == nil {
			return nil
		}
		c.StopAPIServer(true)
		if !errors.Is(err, k8sproc.ErrPortTaken) || attempt >= 5 || time.Since(begin) > StartTimeout {
			return fmt.Errorf("kubeharness: cluster %s: restarting kube-apiserver: %w", c.Name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// APIServerRunning reports whether kube-apiserver's process is running.
func (c *Cluster) APIServerRunning() bool {
	if c.cp == nil {
		return false
	}
	for _, p := range c.cp.Procs() {
		if p.Component == k8sproc.KubeAPIServer {
			return !p.Exited()
		}
	}
	return false
}
