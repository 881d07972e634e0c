// Package lab runs `horizon lab`: two real Kubernetes control planes,
// cluster1 and cluster2, on one machine. Each cluster is etcd,
// kube-apiserver (launched by internal/k8sproc, as the tests' API servers
// are), kube-controller-manager and kube-scheduler, built by
// scripts/k8s-bins.sh, running as background processes (their own sessions)
// on loopback ports, with certificates, logs, etcd data and the PIDs in a
// state directory. Each cluster also has a lab node (`horizon lab node`,
// internal/labnode plus the Service controller of services.go) running its
// Pods as processes on the cluster's network (network.go, built with
// internal/netns: network1, network2, a public TEST-NET-3 segment). Up
// starts them in named steps (up.go), Down stops them and removes what
// they left (processes, namespaces, interfaces, files),
// Env and Status describe them; the lab nodes serve the kubelet API, so
// kubectl reaches Pods' containers (logs, exec, attach, port-forward, cp).
package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/horizonmesh/horizon/internal/k8sproc"
)

// ClusterSpec is what differs between the lab's clusters.
type ClusterSpec struct {
	// Name is the cluster's kubeconfig context and directory name.
	Name string
	// ServiceCIDR is its Service IP range.
	ServiceCIDR string

	// Network names the cluster's pod network (topology.istio.io/network
	// is for the user to set; this names the lab's own).
	Network string
	// PodCIDR is the lab node's pod range on Network; Router its first
	// address, the pods' gateway.
	PodCIDR, Router string
	// Public is the router's address on the public segment; load-balancer
	// addresses come from LBFirst..LBLast.
	Public, LBFirst, LBLast string
	// Region and Zone label the lab node.
	Region, Zone string
	// Index numbers the cluster (1, 2) in names.
	Index int
}

// RouterNS is the namespace of the cluster's network router (and bridge).
func (c ClusterSpec) RouterNS() string { return fmt.Sprintf("%s-r%d", NetPrefix, c.Index) }

// NodePrefix starts the lab node's pod namespaces (PREFIX-pXXXXXXXX) and
// veths.
func (c ClusterSpec) NodePrefix() string { return fmt.Sprintf("%s%d", NetPrefix, c.Index) }

// NodeName is the lab node's Node.
func (c ClusterSpec) NodeName() string { return c.Name + "-node" }

// ClusterByName returns the spec of a lab cluster.
func ClusterByName(name string) (ClusterSpec, error) {
	for _, c := range Clusters {
		if c.Name == name {
			return c, nil
		}
	}
	return ClusterSpec{}, fmt.Errorf("no lab cluster %q (the lab has %s)", name, clusterNames())
}

// Clusters are the lab's clusters: cluster1 is the walkthrough's local
// cluster (CTX_LOCAL), cluster2 its remote one (CTX_REMOTE).
var Clusters = []ClusterSpec{
	{Name: "cluster1", ServiceCIDR: "10.96.0.0/16", Network: "network1", PodCIDR: "10.51.0.0/24", Router: "10.51.0.1",
		Public: "203.0.113.1", LBFirst: "203.0.113.10", LBLast: "203.0.113.19", Region: "region1", Zone: "zone1", Index: 1},
	{Name: "cluster2", ServiceCIDR: "10.97.0.0/16", Network: "network2", PodCIDR: "10.52.0.0/24", Router: "10.52.0.1",
		Public: "203.0.113.2", LBFirst: "203.0.113.20", LBLast: "203.0.113.29", Region: "region2", Zone: "zone2", Index: 2},
}

// Components are the processes of one cluster in start order.
var Components = []string{k8sproc.Etcd, k8sproc.KubeAPIServer, k8sproc.KubeControllerManager, k8sproc.KubeScheduler}

// Files in the state directory.
const (
	stateFile      = "lab.json"
	kubeconfigFile = "kubeconfig"
)

// DefaultStateDir is ${XDG_STATE_HOME:-~/.local/state}/horizon/lab.
func DefaultStateDir() string {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "horizon", "lab")
}

// KubeconfigPath is the lab's kubeconfig in stateDir.
func KubeconfigPath(stateDir string) string { return filepath.Join(stateDir, kubeconfigFile) }

// CheckBinaries returns an error naming the first lab binary missing from
// binDir (the control plane's, and kubectl, which `lab demo` runs and `lab
// env` puts on PATH) and the command that builds it.
func CheckBinaries(binDir string) error {
	bins := append(slices.Clone(Components), k8sproc.Kubectl)
	if err := k8sproc.CheckBinaries(binDir, bins...); err != nil {
		return fmt.Errorf("the lab needs %v from %s: %w; build them with `%s`", bins, binDir, err, k8sproc.BuildHint)
	}
	return nil
}

// Ports are one cluster's loopback ports.
type Ports struct {
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	APIServer         int `json:"apiServer"`
	ControllerManager int `json:"controllerManager"`
	Scheduler         int `json:"scheduler"`
}

// of is the port component serves on (etcd: its client port).
func (p Ports) of(component string) int {
	switch component {
	case k8sproc.Etcd:
		return p.EtcdClient
	case k8sproc.KubeAPIServer:
		return p.APIServer
	case k8sproc.KubeControllerManager:
		return p.ControllerManager
	case k8sproc.KubeScheduler:
		return p.Scheduler
	}
	return 0
}

// clusterDir is one cluster's directory in the state directory.
type clusterDir string

func (d clusterDir) path(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}
func (d clusterDir) pki(file string) string          { return d.path("pki", file) }
func (d clusterDir) log(component string) string     { return d.path(component + ".log") }
func (d clusterDir) kubeconfig(user string) string   { return d.path(user + ".kubeconfig") }
func (d clusterDir) certDir(component string) string { return d.path(component + "-certs") }
func (d clusterDir) hosts() string                   { return d.path("hosts") }
func (d clusterDir) resolvConf() string              { return d.path("resolv.conf") }
func (d clusterDir) node() string                    { return d.path("node") }

// The front proxy's client certificate, in the cluster's pki directory.
const (
	frontProxyUser = "front-proxy-client"
	frontProxyCert = "front-proxy-client.crt"
	frontProxyKey  = "front-proxy-client.key"
)

// The kubelet API: each lab node serves it on its InternalIP (the
// router's address on the pod network, which this machine routes to) at
// KubeletPort, with a serving certificate for that address from the
// cluster's CA; the API server, which proxies `kubectl logs`, `exec`,
// `attach` and `port-forward` there, verifies it and authenticates with
// its kubelet client certificate (the only client the node accepts).
const (
	KubeletPort       = 10250
	kubeletCert       = "kubelet.crt"
	kubeletKey        = "kubelet.key"
	kubeletClientUser = "kube-apiserver-kubelet-client"
	kubeletClientCert = "apiserver-kubelet-client.crt"
	kubeletClientKey  = "apiserver-kubelet-client.key"
)

// command is one process to start.
type command = k8sproc.Command

func url(scheme string, port int) string {
	return scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// controlPlane launches cluster c's etcd and API server (k8sproc, as the
// tests' kubeharness does), files in dir, binaries in bin, detached: they
// outlive `lab up`.
func controlPlane(bin string, c ClusterSpec, dir clusterDir, p Ports) *k8sproc.ControlPlane {
	return &k8sproc.ControlPlane{Name: c.Name, BinDir: bin, Dir: string(dir), PKIDir: dir.pki(""), ServiceCIDR: c.ServiceCIDR,
		EtcdPort: p.EtcdClient, EtcdPeerPort: p.EtcdPeer, APIServerPort: p.APIServer, Lifetime: k8sproc.Detached,
		APIServerArgs: []string{
			// The front proxy's identity (aggregated API servers, and the
			// controller manager's and scheduler's delegated authentication
			// read its CA from extension-apiserver-authentication).
			"--requestheader-client-ca-file", dir.pki(k8sproc.CACertFile),
			"--requestheader-allowed-names", frontProxyUser,
			"--requestheader-username-headers", "X-Remote-User",
			"--requestheader-group-headers", "X-Remote-Group",
			"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
			"--proxy-client-cert-file", dir.pki(frontProxyCert), "--proxy-client-key-file", dir.pki(frontProxyKey),
			// The lab node's host name resolves nowhere: reach it at its
			// InternalIP, verified, as the kubelet client.
			"--kubelet-preferred-address-types", "InternalIP",
			"--kubelet-certificate-authority", dir.pki(k8sproc.CACertFile),
			"--kubelet-client-certificate", dir.pki(kubeletClientCert),
			"--kubelet-client-key", dir.pki(kubeletClientKey),
			"--enable-admission-plugins", "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds," +
				"MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota",
			"--allow-privileged=true",
		}}
}

// controllers are cluster c's kube-controller-manager and kube-scheduler,
// as the users the bootstrap RBAC policy grants their permissions to
// (their kubeconfigs, newClusterPKI). The controller manager signs the
// legacy Secret tokens with the API server's service-account key.
func controllers(bin string, c ClusterSpec, dir clusterDir, p Ports) (kcm, sched command) {
	bind := func(port int, component string) []string {
		return []string{"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(port), "--cert-dir", dir.certDir(component)}
	}
	kcmConfig, schedConfig := dir.kubeconfig(k8sproc.KubeControllerManager), dir.kubeconfig(k8sproc.KubeScheduler)
	kcm = command{Component: k8sproc.KubeControllerManager, Path: filepath.Join(bin, k8sproc.KubeControllerManager), Args: append(bind(p.ControllerManager, k8sproc.KubeControllerManager),
		"--kubeconfig", kcmConfig,
		"--authentication-kubeconfig", kcmConfig, "--authorization-kubeconfig", kcmConfig,
		"--controllers", "*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", dir.pki(k8sproc.SAKeyFile),
		"--root-ca-file", dir.pki(k8sproc.CACertFile),
		"--cluster-signing-cert-file", dir.pki(k8sproc.CACertFile),
		"--cluster-signing-key-file", dir.pki(k8sproc.CAKeyFile),
		"--cluster-name", c.Name,
		"--service-cluster-ip-range", c.ServiceCIDR,
		"--leader-elect=false",
		"--profiling=false",
	)}
	sched = command{Component: k8sproc.KubeScheduler, Path: filepath.Join(bin, k8sproc.KubeScheduler), Args: append(bind(p.Scheduler, k8sproc.KubeScheduler),
		"--kubeconfig", schedConfig,
		"--authentication-kubeconfig", schedConfig, "--authorization-kubeconfig", schedConfig,
		"--leader-elect=false",
		"--profiling=false",
	)}
	return kcm, sched
}

// commands are the processes of cluster c (Components), files in dir,
// binaries in bin, in start order.
func commands(bin string, c ClusterSpec, dir clusterDir, p Ports) []command {
	cp := controlPlane(bin, c, dir, p)
	kcm, sched := controllers(bin, c, dir, p)
	return []command{cp.EtcdCommand(), cp.APIServerCommand(), kcm, sched}
}

// serviceIP is the first address of cidr (the "kubernetes" Service's).
func serviceIP(cidr string) (net.IP, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ip = ip.Mask(n.Mask).To4()
	if ip == nil {
		return nil, fmt.Errorf("service CIDR %s is not IPv4", cidr)
	}
	out := make(net.IP, len(ip))
	copy(out, ip)
	out[3]++
	return out, nil
}
