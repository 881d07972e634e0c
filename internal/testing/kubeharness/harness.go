// Package kubeharness starts real Kubernetes API servers (kube-apiserver with
// its own etcd, built by scripts/k8s-bins.sh) for integration tests: RBAC on,
// service-account tokens from the TokenRequest API, no controller-manager.
package kubeharness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Cluster is one running API server.
type Cluster struct {
	Name        string
	URL         string
	CACert      []byte
	AdminConfig *rest.Config
	Client      kubernetes.Interface
	dir         string
	pki         *pki
	procs       []*exec.Cmd
}

// Options for Start.
type Options struct {
	Name string
	// ServiceCIDR is the Service IP range (10.96.0.0/16 by default).
	ServiceCIDR string
}

// Binaries returns the directory holding kube-apiserver and etcd, from
// HORIZON_K8S_BIN_DIR. Without it the test is skipped locally; under CI=true
// a missing prerequisite fails the test.
func Binaries(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("HORIZON_K8S_BIN_DIR")
	missing := ""
	switch {
	case dir == "":
		missing = "HORIZON_K8S_BIN_DIR is not set"
	default:
		for _, b := range []string{"kube-apiserver", "etcd"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				missing = fmt.Sprintf("%s not found in %s", b, dir)
			}
		}
	}
	if missing != "" {
		msg := missing + ": run `export HORIZON_K8S_BIN_DIR=$(scripts/k8s-bins.sh | tail -1)` (or `make integration`)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// Start starts etcd and kube-apiserver on free loopback ports, waits until
// the API server is ready, and stops both when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin := Binaries(t)
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.96.0.0/16"
	}
	c := &Cluster{Name: opts.Name, dir: t.TempDir()}
	t.Cleanup(c.stop)
	var err error
	if c.pki, err = newPKI(); err != nil {
		t.Fatal(err)
	}
	c.CACert = c.pki.caPEM
	files, err := c.pki.write(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.start(t, filepath.Join(bin, "etcd"), "etcd",
		"--name", "etcd-"+opts.Name, "--data-dir", filepath.Join(c.dir, "etcd-data"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "etcd-"+opts.Name+"="+peerURL, "--log-level", "warn")
	c.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	c.start(t, filepath.Join(bin, "kube-apiserver"), "kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[2]),
		"--tls-cert-file", files["serving.crt"], "--tls-private-key-file", files["serving.key"],
		"--client-ca-file", files["ca.crt"],
		"--service-account-issuer", "https://kubernetes.default.svc."+opts.Name,
		"--service-account-key-file", files["sa.pub"], "--service-account-signing-key-file", files["sa.key"],
		"--service-cluster-ip-range", opts.ServiceCIDR,
		"--authorization-mode", "RBAC",
		// No controller-manager runs: nothing would create a default
		// ServiceAccount for pods, so pods are admitted without one.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--endpoint-reconciler-type", "none",
	)
	c.AdminConfig = &rest.Config{Host: c.URL, QPS: 200, Burst: 400,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.caPEM, CertData: c.pki.adminCert, KeyData: c.pki.adminKey}}
	if c.Client, err = kubernetes.NewForConfig(c.AdminConfig); err != nil {
		t.Fatal(err)
	}
	c.waitReady(t)
	return c
}

func (c *Cluster) start(t testing.TB, path, name string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	c.procs = append(c.procs, cmd)
}

func (c *Cluster) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
			if _, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "default", metav1GetOptions()); err == nil {
				return
			}
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("cluster %s not ready after 90s: %v\n--- kube-apiserver log tail:\n%s\n--- etcd log tail:\n%s",
		c.Name, last, c.logTail("kube-apiserver"), c.logTail("etcd"))
}

func (c *Cluster) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	lines := strings.Split(string(b), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// Stop stops the API server and etcd (also done at test cleanup).
func (c *Cluster) Stop() { c.stop() }

func (c *Cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.Process == nil {
			continue
		}
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	c.procs = nil
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
