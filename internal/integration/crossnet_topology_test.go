//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

const (
	crossnetClusterIP = "10.96.0.50"
	discoverySNI      = "outbound_.15012_._.horizon.istio-system.svc.cluster.local"
	hwSNI             = "outbound_.5000_._.helloworld.sample.svc.cluster.local"
)

// crossnetOptions choose what may differ between tests sharing the
// topology, so that they can run at the same time on one host.
type crossnetOptions struct {
	// Prefix names the lab's network namespaces and links ("hzx").
	Prefix string
	// Net1 and Net2 are the first three octets of network1's and
	// network2's /24s ("10.1.0", "10.2.0"). Network1's segment is also
	// joined to the test's own namespace at .254, where discovery listens,
	// so concurrent tests need distinct Net1s.
	Net1, Net2 string
	// Subprocess runs discovery as a `horizon-discovery discovery` process (which a
	// test can kill and restart) instead of in-process.
	Subprocess bool
	// SecureSANs are further names for discovery's TLS certificate, e.g.
	// istiod.istio-system.svc, which Istio's agent checks.
	SecureSANs []string
}

// crossWorkload is one pod (or gateway) of the topology: its own network
// namespace, on its network's bridge.
type crossWorkload struct{ name, bridge, ip, gw, sa, cluster, network, version, public string }

// crossnet is the walkthrough across two isolated networks, running:
// network1 (cluster1, the config cluster, with discovery) and network2
// (cluster2) share no route to each other's pods; each has a router (its
// bridge namespace) that masquerades onto a public segment, where only the
// east-west gateways' public addresses are reachable. Sleep and helloworld
// v1 run in cluster1, helloworld v2 and a second sleep in cluster2, each
// with transparent capture, `horizon-agent agent` and the real Envoy; cluster2's
// proxies reach discovery only through cluster1's gateway.
type crossnet struct {
	t                    *testing.T
	opts                 crossnetOptions
	lab                  *netlab.Lab
	dir, agent, hello    string
	discovery            string
	envoy                string
	ns                   map[string]string // workload → network namespace
	c1, c2               *kubeharness.Cluster
	clusters             map[string]*kubeharness.Cluster
	files                catest.Files
	workloads            []crossWorkload
	discoveryIP          string // Net1.254
	gw1Public, gw2Public string
	hwPod1, hwPod2       string         // helloworld pods' address:port
	d                    *discoveryProc // in-process discovery (nil with Subprocess)
	sub                  *discoverySub  // subprocess discovery (nil without)
	httpAddr, xdsAddr    string         // discovery's ops HTTP and plaintext xDS
	localKubeconfig      string
	apps, sidecars       map[string]*netlab.Proc // by workload: its app's and its sidecar's (agent and Envoy) process
}

// startCrossnet builds the topology, starts discovery and every proxy, and
// returns once every Envoy knows both helloworlds (sleep1: v1 directly and
// v2 through gw2; sleep2 the other way round) and both gateways pass
// helloworld through.
func startCrossnet(t *testing.T, opts crossnetOptions) *crossnet {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = "hzx"
	}
	if opts.Net1 == "" {
		opts.Net1, opts.Net2 = "10.1.0", "10.2.0"
	}
	netlab.Require(t)
	x := &crossnet{t: t, opts: opts, envoy: envoyBinary(t), ns: map[string]string{},
		apps: map[string]*netlab.Proc{}, sidecars: map[string]*netlab.Proc{}}
	x.dir = buildBinaries(t)
	x.discovery, x.agent, x.hello = filepath.Join(x.dir, "horizon-discovery"), filepath.Join(x.dir, "horizon-agent"), filepath.Join(x.dir, "helloworld")
	n1net, n2net := opts.Net1, opts.Net2
	x.discoveryIP = n1net + ".254"
	x.gw1Public, x.gw2Public = "203.0.113.10", "203.0.113.20"
	x.hwPod1, x.hwPod2 = n1net+".11:5000", n2net+".11:5000"

	// Networks: n1 (its bridge namespace is its router, .1), n2 (router
	// .1), public 203.0.113.0/24 joining the routers (.1, .2) and the
	// gateways' public addresses (.10, .20). Routers masquerade towards the
	// public segment; nothing routes between pods.
	lab := netlab.New(t, opts.Prefix, n1net+".1/24")
	x.lab = lab
	n1 := opts.Prefix + "-br"
	n2 := lab.Bridge("n2")
	pub := lab.Bridge("pub")
	lab.In(n2, "ip", "addr", "add", n2net+".1/24", "dev", "br0")
	for _, r := range []struct{ ns, addr string }{{n1, "203.0.113.1/24"}, {n2, "203.0.113.2/24"}} {
		lab.Attach(r.ns, pub, "pub0", r.addr)
		lab.In(r.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		lab.In(r.ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "pub0", "-j", "MASQUERADE")
	}
	lab.AttachRoot(n1, x.discoveryIP+"/24") // discovery runs in cluster1's network
	hosts := crossnetHosts
	x.workloads = []crossWorkload{
		{"sleep1", n1, n1net + ".10", n1net + ".1", "sleep", "cluster1", "network1", "", ""},
		{"hw1", n1, n1net + ".11", n1net + ".1", "helloworld", "cluster1", "network1", "v1", ""},
		{"gw1", n1, n1net + ".20", n1net + ".1", "istio-eastwestgateway", "cluster1", "network1", "", x.gw1Public},
		{"sleep2", n2, n2net + ".10", n2net + ".1", "sleep", "cluster2", "network2", "", ""},
		{"hw2", n2, n2net + ".11", n2net + ".1", "helloworld", "cluster2", "network2", "v2", ""},
		{"gw2", n2, n2net + ".20", n2net + ".1", "istio-eastwestgateway", "cluster2", "network2", "", x.gw2Public},
	}
	for _, w := range x.workloads {
		x.ns[w.name] = lab.Namespace(w.name)
		lab.Attach(x.ns[w.name], w.bridge, "eth0", w.ip+"/24")
		if w.public != "" {
			lab.Attach(x.ns[w.name], pub, "eth1", w.public+"/24")
		}
		lab.In(x.ns[w.name], "ip", "route", "add", "default", "via", w.gw)
		lab.Hosts(x.ns[w.name], hosts...)
	}

	// Kubernetes: two clusters; cluster1 is the config cluster.
	x.c1 = kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	x.c2 = kubeharness.Start(t, kubeharness.Options{Name: "cluster2", ServiceCIDR: "10.96.0.0/16"})
	x.clusters = map[string]*kubeharness.Cluster{"cluster1": x.c1, "cluster2": x.c2}
	var err error
	x.files, err = catest.New("mesh")
	must(t, err)
	for name, c := range x.clusters {
		network := map[string]string{"cluster1": "network1", "cluster2": "network2"}[name]
		namespace(t, c, "istio-system", map[string]string{"topology.istio.io/network": network})
		namespace(t, c, "sample", nil)
		serviceWith(t, c, "sample", "helloworld", crossnetClusterIP, "http", 5000, nil, "")
		public := map[string]string{"cluster1": x.gw1Public, "cluster2": x.gw2Public}[name]
		serviceWith(t, c, "istio-system", "istio-eastwestgateway", "", "tls", 15443,
			map[string]string{"topology.istio.io/network": network}, public)
		for _, sa := range []string{"sleep", "helloworld"} {
			must(t, createSA(c, "sample", sa))
		}
		must(t, createSA(c, "istio-system", "istio-eastwestgateway"))
	}
	installCACerts(t, x.c1, x.files)
	for _, w := range x.workloads {
		if w.public == "" {
			// Scheduled on a node with no Node object yet: no locality
			// until a test gives it one.
			node := map[string]string{"cluster1": "node1", "cluster2": "node2"}[w.cluster]
			podOnNode(t, x.clusters[w.cluster], "sample", w.name, w.ip, w.sa, node, map[string]string{"app": w.name})
		}
	}
	endpoints(t, x.c1, "sample", "helloworld", "http", 5000, map[string]string{"hw1": n1net + ".11"})
	endpoints(t, x.c2, "sample", "helloworld", "http", 5000, map[string]string{"hw2": n2net + ".11"})
	// Discovery as a mesh service of cluster1, so cluster1's gateway passes
	// remote proxies through to it (the walkthrough's remotePilotAddress).
	serviceWith(t, x.c1, "istio-system", "horizon", "", "tls", 15012, nil, "")
	podWith(t, x.c1, "istio-system", "horizon", x.discoveryIP, "horizon", nil)
	endpoints(t, x.c1, "istio-system", "horizon", "tls", 15012, map[string]string{"horizon": x.discoveryIP})
	meshNetworksConfigMap(t, x.c1, "networks:\n  network1:\n    endpoints: [{fromRegistry: cluster1}]\n    gateways: [{registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local, port: 15443}]\n"+
		"  network2:\n    endpoints: [{fromRegistry: cluster2}]\n    gateways: [{registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local, port: 15443}]\n")
	applyIstioCRDs(t, x.c1)
	applyObject(t, x.c1, "gateways", "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: cross-network-gateway, namespace: istio-system}\n"+
		"spec:\n  selector: {istio: eastwestgateway}\n  servers:\n  - port: {number: 15443, name: tls, protocol: TLS}\n    tls: {mode: AUTO_PASSTHROUGH}\n    hosts: [\"*\"]\n")
	must(t, x.c2.CreateRemoteReader(ctx, "istio-system", "istio-multi"))
	kc, err := x.c2.KubeconfigFor(ctx, "istio-system", "istio-multi", time.Hour)
	must(t, err)
	remoteSecret(t, x.c1, "cluster2-secret", "cluster2", kc)

	if opts.Subprocess {
		x.startDiscoverySubprocess()
	} else {
		x.d = startDiscoveryWith(t, x.c1, nil, true, func(c *bootstrap.Config) {
			c.SecureAddr, c.XDSAddr = x.discoveryIP+":15012", ""
			c.SecureSANs = append([]string{x.discoveryIP, discoverySNI}, opts.SecureSANs...)
		})
		x.httpAddr = x.d.http
	}
	waitFor(t, 30*time.Second, "cluster2 to sync", func() bool {
		c, ok := x.clusterStatus("cluster2")
		return ok && c.Synced
	})

	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range x.workloads {
				t.Logf("--- %s agent:\n%s\n--- %s envoy:\n%s", w.name, tail(filepath.Join(x.dir, w.name+".agent.log")), w.name, tail(filepath.Join(x.dir, w.name, "envoy.log")))
			}
		}
	})
	must(t, os.WriteFile(filepath.Join(x.dir, "root-cert.pem"), x.files[ca.RootCertFile], 0o644))
	start := x.startWorkload
	// cluster1's gateway first: cluster2's proxies reach discovery through it.
	start(x.workloads[2])
	waitFor(t, 60*time.Second, "gw1 to pass discovery through", func() bool {
		return strings.Contains(x.admin("gw1", "/clusters"), discoverySNI+"::"+x.discoveryIP+":15012")
	})
	for _, w := range x.workloads {
		if w.name != "gw1" {
			start(w)
		}
	}
	for gw, pod := range map[string]string{"gw1": x.hwPod1, "gw2": x.hwPod2} {
		waitFor(t, 90*time.Second, gw+" to pass helloworld through", func() bool {
			return strings.Contains(x.admin(gw, "/clusters"), hwSNI+"::"+pod)
		})
	}
	// The servers' sidecars must have their inbound listener: until then
	// captured inbound connections are refused, and a gateway answers 503.
	for _, w := range []string{"hw1", "hw2"} {
		waitFor(t, 90*time.Second, w+"'s Envoy to listen for inbound mTLS", func() bool {
			return strings.Contains(x.admin(w, "/listeners"), ":15006")
		})
	}
	for w, want := range map[string][]string{"sleep1": {x.hwPod1, x.gw2Public + ":15443"}, "sleep2": {x.hwPod2, x.gw1Public + ":15443"}} {
		waitFor(t, 90*time.Second, w+"'s Envoy to know both helloworlds", func() bool {
			c := x.admin(w, "/clusters")
			return strings.Contains(c, hw+"::"+want[0]) && strings.Contains(c, hw+"::"+want[1])
		})
	}
	return x
}

// crossnetHosts is every workload's /etc/hosts: the names the lab's pods
// resolve (as kube-dns would answer them).
var crossnetHosts = []string{crossnetClusterIP + " helloworld.sample"}

// addWorkload adds a pod to the running topology: its namespace on its
// network's bridge, then each of apps (helloworld's subcommand and
// flags, e.g. tcp-echo -addr :9000), then its sidecar (startWorkload).
// Create its Pod, Services and EndpointSlices first: a sidecar's inbound
// ports are those its workload serves when its stream binds its listeners
// and clusters, and do not follow later changes.
func (x *crossnet) addWorkload(w crossWorkload, apps ...[]string) {
	x.t.Helper()
	x.ns[w.name] = x.lab.Namespace(w.name)
	x.lab.Attach(x.ns[w.name], w.bridge, "eth0", w.ip+"/24")
	x.lab.In(x.ns[w.name], "ip", "route", "add", "default", "via", w.gw)
	x.lab.Hosts(x.ns[w.name], crossnetHosts...)
	x.workloads = append(x.workloads, w)
	for _, app := range apps {
		x.lab.Start(x.ns[w.name], 0, filepath.Join(x.dir, w.name+"."+app[0]+".log"), append([]string{x.hello}, app...)...)
	}
	x.startWorkload(w)
}

// startWorkload starts a workload of the topology in its namespace
// (x.ns[w.name]): capture, app (if it has a version) and its sidecar; a
// gateway (w.public set) as a router.
func (x *crossnet) startWorkload(w crossWorkload) {
	x.t.Helper()
	if w.public == "" {
		x.lab.In(x.ns[w.name], x.agent, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
	}
	if w.version != "" {
		x.startApp(w)
	}
	x.startSidecar(w)
}

// startApp starts a workload's helloworld (again, after a kill).
func (x *crossnet) startApp(w crossWorkload) {
	x.t.Helper()
	x.apps[w.name] = x.lab.Start(x.ns[w.name], 0, filepath.Join(x.dir, w.name+".app.log"), x.hello, "-version", w.version, "-instance", w.name)
}

// startSidecar starts a workload's `horizon-agent agent` with the real
// Envoy (again, after a kill: its log is started anew).
func (x *crossnet) startSidecar(w crossWorkload) {
	t := x.t
	t.Helper()
	rootFile := filepath.Join(x.dir, "root-cert.pem")
	work := filepath.Join(x.dir, w.name)
	must(t, os.MkdirAll(work, 0o755))
	must(t, os.Chown(work, proxyUID, proxyUID))
	tokenNS := "sample"
	if w.public != "" {
		tokenNS = "istio-system"
	}
	tokenFile := filepath.Join(x.dir, w.name+".token")
	must(t, os.WriteFile(tokenFile, []byte(token(t, x.clusters[w.cluster], tokenNS, w.sa, "istio-ca")), 0o644))
	discoveryAddr, san := x.discoveryIP+":15012", x.discoveryIP
	if w.network == "network2" {
		discoveryAddr, san = x.gw1Public+":15443", discoverySNI // through cluster1's gateway
	}
	args := []string{x.agent, "agent", "--namespace", tokenNS, "--service-account", w.sa, "--cluster-id", w.cluster,
		"--network", w.network, "--ip", w.ip, "--discovery-address", discoveryAddr, "--discovery-san", san,
		"--root-cert", rootFile, "--token-file", tokenFile, "--envoy-path", x.envoy, "--work-dir", work, "--drain", "1s"}
	if w.public != "" {
		args = append(args, "--router", "--label", "istio=eastwestgateway")
	} else {
		args = append(args, "--label", "app="+w.name)
	}
	x.sidecars[w.name] = x.lab.Start(x.ns[w.name], proxyUID, filepath.Join(x.dir, w.name+".agent.log"), args...)
}

// admin asks a workload's Envoy admin port ("" when it does not answer).
func (x *crossnet) admin(w, path string) string {
	out, err := x.lab.Try(x.ns[w], 0, "curl", "-s", "-f", "-m", "2", "http://127.0.0.1:15000"+path)
	if err != nil {
		return ""
	}
	return out
}

// call is one request to helloworld from a workload's namespace (captured
// by its sidecar): the answer, or an error carrying curl's exit status.
func (x *crossnet) call(from string) (string, error) {
	out, err := x.lab.Try(x.ns[from], 0, "curl", "-s", "-S", "-f", "-m", "5", "http://helloworld.sample:5000/hello")
	return strings.TrimSpace(out), err
}

// get fetches a path of discovery's ops HTTP; an error instead of a fatal,
// since discovery may be down on purpose.
func (x *crossnet) get(path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + x.httpAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// clusterStatus is discovery's /debug/clusters entry for a cluster.
func (x *crossnet) clusterStatus(id string) (controlplane.ClusterStatus, bool) {
	_, body, err := x.get("/debug/clusters")
	if err != nil {
		return controlplane.ClusterStatus{}, false
	}
	var doc struct {
		Clusters []controlplane.ClusterStatus `json:"clusters"`
	}
	if json.Unmarshal([]byte(body), &doc) != nil {
		return controlplane.ClusterStatus{}, false
	}
	for _, c := range doc.Clusters {
		if c.ID == id {
			return c, true
		}
	}
	return controlplane.ClusterStatus{}, false
}

// discoverySub is `horizon-discovery discovery` as a process of its own, with the
// flags the in-process one gets, on fixed addresses so that a restart
// listens where the proxies and the test look.
type discoverySub struct {
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	runs int
}

func (x *crossnet) startDiscoverySubprocess() {
	t := x.t
	t.Helper()
	kc, err := x.c1.Kubeconfig()
	must(t, err)
	x.localKubeconfig = filepath.Join(x.dir, "cluster1.kubeconfig")
	must(t, os.WriteFile(x.localKubeconfig, kc, 0o600))
	x.httpAddr, x.xdsAddr = freeAddr(t), freeAddr(t)
	x.sub = &discoverySub{log: filepath.Join(x.dir, "discovery.log"), args: []string{x.discovery, "discovery",
		"--kubeconfig", x.localKubeconfig, "--cluster-id", "cluster1",
		"--xds-addr", x.xdsAddr, "--http-addr", x.httpAddr,
		"--secure-addr", x.discoveryIP + ":15012", "--secure-san", strings.Join(append([]string{x.discoveryIP, discoverySNI}, x.opts.SecureSANs...), ","),
		"--debounce", "20ms", "--debounce-max", "200ms", "--remote-sync-timeout", "5s", "--poll-interval", "1s"}}
	t.Cleanup(func() {
		x.killDiscovery()
		if t.Failed() {
			t.Logf("--- discovery log:\n%s", tail(x.sub.log))
		}
	})
	x.runDiscovery()
	x.waitDiscoveryReady(30 * time.Second)
}

// runDiscovery starts the discovery process (its log appended to).
func (x *crossnet) runDiscovery() {
	t := x.t
	t.Helper()
	s := x.sub
	log, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(t, err)
	defer log.Close()
	s.runs++
	fmt.Fprintf(log, "=== run %d at %s\n", s.runs, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() { s.err = cmd.Wait(); close(done) }()
}

// killDiscovery SIGKILLs discovery (a crash: no drain, no goodbye) and
// waits for it to be gone.
func (x *crossnet) killDiscovery() {
	s := x.sub
	if s == nil || s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// discoveryExited reports whether the running discovery process has exited.
func (x *crossnet) discoveryExited() bool {
	select {
	case <-x.sub.done:
		return true
	default:
		return false
	}
}

func (x *crossnet) waitDiscoveryReady(timeout time.Duration) {
	x.t.Helper()
	waitFor(x.t, timeout, "discovery /ready", func() bool {
		if x.sub != nil && x.discoveryExited() {
			x.t.Fatalf("discovery exited: %v\n%s", x.sub.err, tail(x.sub.log))
		}
		code, _, err := x.get("/ready")
		return err == nil && code == http.StatusOK
	})
}

func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)) }
