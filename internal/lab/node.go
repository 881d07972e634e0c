package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/horizonmesh/horizon/internal/k8sproc"
	"github.com/horizonmesh/horizon/internal/labnode"
	"github.com/horizonmesh/horizon/internal/netns"
)

// NodeComponent names the lab node process in lab.json and `lab status`.
const NodeComponent = "lab-node"

// NodeOptions are the lab node process's (`horizon lab node`).
type NodeOptions struct {
	StateDir string
	Cluster  string
	// Programs stand in for images (Discovery and Agent: next to this
	// executable, ImagePrograms).
	Programs labnode.Programs
}

// RunNode runs cluster's lab node until ctx ends: labnode on the cluster's
// network (bridge br0 of its router, pods from its pod CIDR, Service names
// in the hosts file every container sees at /etc/hosts) and the Service
// controller (load-balancer addresses, DNAT on the router).
func RunNode(ctx context.Context, o NodeOptions) error {
	spec, err := ClusterByName(o.Cluster)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(o.StateDir)
	if err != nil {
		return err
	}
	dir := clusterDir(filepath.Join(abs, spec.Name))
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: KubeconfigPath(abs)},
		&clientcmd.ConfigOverrides{CurrentContext: spec.Name}).ClientConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	hosts := dir.hosts()
	if err := writeInPlace(hosts, []byte(hostsHeader)); err != nil {
		return err
	}
	if err := os.WriteFile(dir.resolvConf(), []byte(resolvConf), 0o644); err != nil {
		return err
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	u, err := neturl.Parse(cfg.Host)
	if err != nil {
		return fmt.Errorf("API server URL %q: %w", cfg.Host, err)
	}
	kip, err := serviceIP(spec.ServiceCIDR)
	if err != nil {
		return err
	}
	port := strconv.Itoa(APIPort)
	env := []string{"KUBERNETES_SERVICE_HOST=" + kip.String(), "KUBERNETES_SERVICE_PORT=" + port, "KUBERNETES_SERVICE_PORT_HTTPS=" + port,
		"KUBERNETES_PORT=tcp://" + kip.String() + ":" + port, "KUBERNETES_PORT_443_TCP=tcp://" + kip.String() + ":" + port,
		"KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=" + port, "KUBERNETES_PORT_443_TCP_ADDR=" + kip.String()}
	if o.Programs.ClientDir, err = clientDir(dir, o.Programs.Helloworld); err != nil {
		return err
	}
	kubelet, kubeletTLS, err := kubeletListener(spec, dir)
	if err != nil {
		return err
	}
	defer kubelet.Close()
	node, err := labnode.New(labnode.Config{
		KubeletListener: kubelet, KubeletTLS: kubeletTLS, KubeletClients: []string{kubeletClientUser},
		Env:      env,
		NodeName: spec.NodeName(), Region: spec.Region, Zone: spec.Zone,
		Labels:     map[string]string{"horizon.lab/network": spec.Network},
		RestConfig: cfg, Programs: o.Programs,
		NetnsPrefix: spec.NodePrefix(), BridgeNS: spec.RouterNS(), Bridge: "br0",
		PodCIDR: spec.PodCIDR, Gateway: spec.Router,
		HostsFile: hosts, ResolvConf: dir.resolvConf(), StateDir: dir.node(), Logf: logger.Printf,
	})
	if err != nil {
		return err
	}
	svc := &serviceController{spec: spec, client: client, hosts: hosts, logf: logger.Printf,
		apiserver: net.JoinHostPort(spec.Router, port)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- node.Run(ctx) }()
	go func() { errc <- svc.run(ctx) }()
	go func() {
		errc <- serveAPIProxy(ctx, spec.RouterNS(), []string{net.JoinHostPort(spec.Router, port), net.JoinHostPort(spec.Public, port)}, u.Host, logger.Printf)
	}()
	logger.Printf("lab node %s of %s: pods on %s (%s, gateway %s), load balancers %s-%s", spec.NodeName(), spec.Name, spec.Network, spec.PodCIDR, spec.Router, spec.LBFirst, spec.LBLast)
	err = <-errc
	cancel()
	err = errors.Join(err, <-errc, <-errc)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// clientDir makes the directory the sleep images' containers find first
// on their PATH: helloworld (its tcp-echo-client and grpc-health-probe are
// the demo's TCP and gRPC clients), as a symbolic link. "" without
// helloworld.
func clientDir(dir clusterDir, helloworld string) (string, error) {
	if helloworld == "" {
		return "", nil
	}
	abs, err := filepath.Abs(helloworld)
	if err != nil {
		return "", err
	}
	clients := filepath.Join(dir.node(), "clients")
	link := filepath.Join(clients, "helloworld")
	if err := os.MkdirAll(clients, 0o755); err != nil {
		return "", err
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return clients, os.Symlink(abs, link)
}

// kubeletListener listens for the kubelet API on the node's InternalIP
// (the router's address, in its namespace) and returns the TLS
// configuration: the node's serving certificate, client certificates of
// the cluster's CA (config.go).
func kubeletListener(spec ClusterSpec, dir clusterDir) (net.Listener, *tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(dir.pki(kubeletCert), dir.pki(kubeletKey))
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet API: %w", err)
	}
	ca, err := os.ReadFile(dir.pki(k8sproc.CACertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet API: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, nil, fmt.Errorf("kubelet API: no certificate in %s", dir.pki(k8sproc.CACertFile))
	}
	l, err := netns.Listen(spec.RouterNS(), net.JoinHostPort(spec.Router, strconv.Itoa(KubeletPort)))
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet API: %w", err)
	}
	return l, &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// nodeReady reports whether cluster's lab node is registered and Ready.
func nodeReady(ctx context.Context, c kubernetes.Interface, spec ClusterSpec) error {
	n, err := c.CoreV1().Nodes().Get(ctx, spec.NodeName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s: Ready %s: %s", n.Name, cond.Status, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition", n.Name)
}

// writeInPlace rewrites path's content without replacing the file (a bind
// mount holds the inode): write, then cut to length.
func writeInPlace(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
