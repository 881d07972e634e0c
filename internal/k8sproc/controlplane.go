package k8sproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ControlPlane launches the part of a Kubernetes control plane that the
// tests' kubeharness and `horizon lab` both run: a single-member etcd and
// kube-apiserver on loopback ports, with the certificates and keys of a
// PKI, each process's output in Dir/COMPONENT.log. The lab starts its
// controller manager and scheduler through it too (Launch, Wait).
type ControlPlane struct {
	// Name names the cluster: etcd's member is etcd-NAME, the
	// service-account issuer https://kubernetes.default.svc.NAME.
	Name string
	// BinDir holds the binaries.
	BinDir string
	// Dir holds etcd's data (etcd-data), the logs, and is the processes'
	// working directory.
	Dir string
	// PKIDir holds the files PKI.Write stores.
	PKIDir string
	// ServiceCIDR is the Service IP range.
	ServiceCIDR string
	// EtcdPort and EtcdPeerPort are etcd's client and peer ports,
	// APIServerPort the API server's, all on 127.0.0.1.
	EtcdPort, EtcdPeerPort, APIServerPort int
	// APIServerArgs follow the flags every API server gets.
	APIServerArgs []string
	// Lifetime of the processes (WithParent by default).
	Lifetime Lifetime
	// Started, when set, hears of each process once started (the lab
	// records it); an error ends the start.
	Started func(*Proc) error
	// Note, when set, hears of a wait that lasts (every 15 seconds).
	Note func(what string, waited time.Duration, err error)

	mu    sync.Mutex
	procs []*Proc
}

func loopbackURL(scheme string, port int) string {
	return scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// EtcdURL is etcd's client URL.
func (c *ControlPlane) EtcdURL() string { return loopbackURL("http", c.EtcdPort) }

// URL is the API server's.
func (c *ControlPlane) URL() string { return loopbackURL("https", c.APIServerPort) }

// LogPath is where component's stdout and stderr go.
func (c *ControlPlane) LogPath(component string) string {
	return filepath.Join(c.Dir, component+".log")
}

func (c *ControlPlane) pki(file string) string { return filepath.Join(c.PKIDir, file) }

// EtcdCommand is etcd's command line.
func (c *ControlPlane) EtcdCommand() Command {
	client, peer := c.EtcdURL(), loopbackURL("http", c.EtcdPeerPort)
	member := "etcd-" + c.Name
	return Command{Component: Etcd, Path: filepath.Join(c.BinDir, Etcd), Args: []string{
		"--name", member, "--data-dir", filepath.Join(c.Dir, "etcd-data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", member + "=" + peer,
		"--unsafe-no-fsync", // tests and a lab: durability buys nothing, fsync costs seconds
		"--log-level", "warn",
	}}
}

// APIServerCommand is kube-apiserver's command line: RBAC, the serving and
// client CA files of the PKI, service-account tokens signed with its key,
// then APIServerArgs.
func (c *ControlPlane) APIServerCommand() Command {
	args := []string{
		"--etcd-servers", c.EtcdURL(),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(c.APIServerPort),
		"--tls-cert-file", c.pki(ServingCertFile), "--tls-private-key-file", c.pki(ServingKeyFile),
		"--client-ca-file", c.pki(CACertFile),
		// Service-account tokens (TokenRequest API, projected volumes) are
		// signed with this key.
		"--service-account-issuer", "https://kubernetes.default.svc." + c.Name,
		"--service-account-key-file", c.pki(SAPubFile),
		"--service-account-signing-key-file", c.pki(SAKeyFile),
		"--service-cluster-ip-range", c.ServiceCIDR,
		"--authorization-mode", "RBAC",
		"--enable-priority-and-fairness=false",
		// Endpoints may not hold loopback addresses: leave the
		// "kubernetes" Service's alone.
		"--endpoint-reconciler-type", "none",
		"--profiling=false",
	}
	return Command{Component: KubeAPIServer, Path: filepath.Join(c.BinDir, KubeAPIServer), Args: append(args, c.APIServerArgs...)}
}

// Launch starts cmd (its log LogPath(cmd.Component)) without waiting for
// it.
func (c *ControlPlane) Launch(cmd Command) (*Proc, error) {
	p, err := Start(cmd, c.Dir, c.LogPath(cmd.Component), c.Lifetime)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	if c.Started != nil {
		if err := c.Started(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Wait waits until check succeeds (WaitFor), failing early when one of the
// processes exits.
func (c *ControlPlane) Wait(ctx context.Context, what string, check func(context.Context) error) error {
	var note func(time.Duration, error)
	if c.Note != nil {
		note = func(d time.Duration, err error) { c.Note(what, d, err) }
	}
	return WaitFor(ctx, what, c.Procs(), check, note)
}

// StartEtcd starts etcd and waits until it is healthy.
func (c *ControlPlane) StartEtcd(ctx context.Context) error {
	if _, err := c.Launch(c.EtcdCommand()); err != nil {
		return err
	}
	return c.Wait(ctx, Etcd, func(ctx context.Context) error { return EtcdHealthy(ctx, c.EtcdURL()) })
}

// StartAPIServer starts kube-apiserver and waits until client finds it
// ready (APIReady).
func (c *ControlPlane) StartAPIServer(ctx context.Context, client kubernetes.Interface) error {
	if _, err := c.Launch(c.APIServerCommand()); err != nil {
		return err
	}
	return c.Wait(ctx, KubeAPIServer+" /readyz", func(ctx context.Context) error { return APIReady(ctx, client) })
}

// Start starts etcd and kube-apiserver at once (the API server tries etcd
// until it answers) and waits until client finds the API server ready.
func (c *ControlPlane) Start(ctx context.Context, client kubernetes.Interface) error {
	if _, err := c.Launch(c.EtcdCommand()); err != nil {
		return err
	}
	return c.StartAPIServer(ctx, client)
}

// Procs are the processes started and not stopped, in start order.
func (c *ControlPlane) Procs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.procs...)
}

// StopComponent stops component's process (sig, SIGKILL after grace), if
// one runs, and forgets it.
func (c *ControlPlane) StopComponent(component string, sig syscall.Signal, grace time.Duration) {
	c.mu.Lock()
	var p *Proc
	for i, q := range c.procs {
		if q.Component == component {
			p = q
			c.procs = append(c.procs[:i:i], c.procs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if p != nil {
		p.Stop(sig, grace)
	}
}

// Stop stops every process, the last started first (SIGTERM, SIGKILL
// after grace); a second call does nothing.
func (c *ControlPlane) Stop(grace time.Duration) {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(syscall.SIGTERM, grace)
	}
}

// EtcdHealthy reports whether etcd at url answers /health healthy.
func EtcdHealthy(ctx context.Context, url string) error {
	body, err := Get(ctx, http.DefaultClient, url+"/health")
	if err != nil {
		return err
	}
	if !bytes.Contains(body, []byte(`"health":"true"`)) {
		return fmt.Errorf("/health: %s", bytes.TrimSpace(body))
	}
	return nil
}

// APIReady reports whether the API server is ready: /readyz says ok and
// the default namespace (made by a post-start hook) exists.
func APIReady(ctx context.Context, c kubernetes.Interface) error {
	body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
		return fmt.Errorf("/readyz: %s", body)
	}
	_, err = c.CoreV1().Namespaces().Get(ctx, corev1.NamespaceDefault, metav1.GetOptions{})
	return err
}

// Get fetches u and returns its body (at most 64 KiB); a status other than
// 200 is an error.
func Get(ctx context.Context, c *http.Client, u string) ([]byte, error) {
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
