//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// meshPods is one cluster's pods on one network, each in its own network
// namespace, for the end-to-end tests whose sidecars (capture, agent, the
// real Envoy) talk to each other directly: a netlab network SUBNET.0/24
// (its bridge at .1, the test, where discovery listens, at .254), a real
// kube-apiserver ("cluster1") with the namespaces istio-system and
// sample, the mesh's plug-in cacerts, and a Pod (and its ServiceAccount)
// in sample per workload. The test adds its Services, starts discovery,
// then the sidecars and apps it needs; when it fails, every sidecar's
// agent and Envoy log is shown.
type meshPods struct {
	t                        *testing.T
	lab                      *netlab.Lab
	c1                       *kubeharness.Cluster
	d                        *discoveryProc
	dir, agent, envoy, hello string
	subnet, hosts            string
	pods                     map[string]meshPod
	ns                       map[string]string // workload (or bare host) → network namespace
}

// meshPod is a workload of meshPods: its Pod runs as ServiceAccount sa
// and is labelled app=sa; it is mTLS-capable (label
// security.istio.io/tlsMode=istio), as a pod with a sidecar, unless plain.
type meshPod struct {
	name, ip, sa string
	plain        bool
}

// startMeshPods builds the network (prefix names its netlab namespaces),
// the cluster and the pods; hosts is every namespace's /etc/hosts line
// (the names its workload resolves, as kube-dns would answer them).
func startMeshPods(t *testing.T, prefix, subnet, hosts string, pods []meshPod) *meshPods {
	t.Helper()
	netlab.Require(t)
	m := &meshPods{t: t, envoy: envoyBinary(t), dir: buildBinaries(t), subnet: subnet, hosts: hosts,
		pods: map[string]meshPod{}, ns: map[string]string{}}
	m.agent, m.hello = filepath.Join(m.dir, "horizon-agent"), filepath.Join(m.dir, "helloworld")
	m.lab = netlab.New(t, prefix, subnet+".1/24")
	m.lab.RootLink(m.discoveryIP() + "/24")
	for _, p := range pods {
		m.pods[p.name] = p
		m.host(p.name, p.ip)
	}

	m.c1 = kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	namespace(t, m.c1, "istio-system", nil)
	namespace(t, m.c1, "sample", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, m.c1, files)
	must(t, os.WriteFile(m.rootCertFile(), files[ca.RootCertFile], 0o644))
	for _, p := range pods {
		must(t, createSA(m.c1, "sample", p.sa))
		labels := map[string]string{"app": p.sa}
		if !p.plain {
			labels["security.istio.io/tlsMode"] = "istio"
		}
		createPod(t, m.c1, "sample", p.name, p.ip, p.sa, "", labels)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range pods {
				if !p.plain {
					t.Logf("--- %s agent log:\n%s\n--- %s envoy log:\n%s", p.name, tail(filepath.Join(m.dir, p.name+".agent.log")),
						p.name, m.envoyLog(p.name))
				}
			}
		}
	})
	return m
}

// host adds a network namespace on the network at ip: a workload's, or a
// bare host outside the mesh (no Pod, no sidecar).
func (m *meshPods) host(name, ip string) string {
	m.t.Helper()
	m.ns[name] = m.lab.Host(name, ip+"/24", m.subnet+".1", m.hosts)
	return m.ns[name]
}

func (m *meshPods) discoveryIP() string  { return m.subnet + ".254" }
func (m *meshPods) rootCertFile() string { return filepath.Join(m.dir, "root-cert.pem") }

// service creates Service name in sample (selecting app=name, on
// clusterIP, or headless with corev1.ClusterIPNone) and its EndpointSlice:
// each of pods, ready, on every port (the pods serve the Service's ports).
func (m *meshPods) service(name, clusterIP string, ports []corev1.ServicePort, pods ...string) {
	m.t.Helper()
	_, err := m.c1.Client.CoreV1().Services("sample").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "sample"},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: ports, Selector: map[string]string{"app": name}}}, metav1.CreateOptions{})
	must(m.t, err)
	ips := map[string]string{}
	for _, p := range pods {
		ips[p] = m.pods[p].ip
	}
	endpointSlice(m.t, m.c1, "sample", name, ports, ips)
}

// httpPort is the one port of helloworld's Services: http 5000.
var httpPort = []corev1.ServicePort{{Name: "http", Port: 5000}}

// startDiscovery starts discovery, TLS only, on the test's address on the
// network (edit may change more), and waits until it is ready.
func (m *meshPods) startDiscovery(edit func(*bootstrap.Config)) *discoveryProc {
	m.t.Helper()
	m.d = startDiscoveryWith(m.t, m.c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.SecureSANs, c.XDSAddr = m.discoveryIP()+":15012", []string{m.discoveryIP()}, ""
		if edit != nil {
			edit(c)
		}
	})
	return m.d
}

// startSidecar captures a workload's traffic (iptables) and starts its
// `horizon-agent agent` with the real Envoy, as the proxy uid, with a
// token of its ServiceAccount; Envoy's log is envoyLog(name).
func (m *meshPods) startSidecar(name string) {
	t := m.t
	t.Helper()
	p := m.pods[name]
	work := filepath.Join(m.dir, name)
	must(t, os.MkdirAll(work, 0o755))
	tokenFile := filepath.Join(m.dir, name+".token")
	must(t, os.WriteFile(tokenFile, []byte(token(t, m.c1, "sample", p.sa, "istio-ca")), 0o644))
	must(t, os.Chown(work, proxyUID, proxyUID))
	m.lab.In(m.ns[name], m.agent, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
	m.lab.Start(m.ns[name], proxyUID, filepath.Join(m.dir, name+".agent.log"), m.agent, "agent",
		"--namespace", "sample", "--service-account", p.sa, "--cluster-id", "cluster1", "--ip", p.ip,
		"--label", "app="+p.sa, "--discovery-address", m.discoveryIP()+":15012", "--root-cert", m.rootCertFile(),
		"--token-file", tokenFile, "--envoy-path", m.envoy, "--work-dir", work, "--drain", "1s")
}

// startApp starts helloworld with args in a workload's namespace; log
// names its output file (a workload may run several).
func (m *meshPods) startApp(name, log string, args ...string) {
	m.t.Helper()
	m.lab.Start(m.ns[name], 0, filepath.Join(m.dir, log), append([]string{m.hello}, args...)...)
}

// admin asks a workload's Envoy admin port (what curl printed, "" when
// nothing answers).
func (m *meshPods) admin(name, path string) string {
	out, _ := m.lab.Try(m.ns[name], 0, "curl", "-s", "-m", "2", "http://127.0.0.1:15000"+path)
	return out
}

// call GETs url from a namespace as its app would (captured by its
// sidecar, if any): the body, or an error when curl fails (an HTTP error
// status included).
func (m *meshPods) call(from, url string) (string, error) {
	return m.lab.Try(m.ns[from], 0, "curl", "-s", "-f", "-m", "5", url)
}

// callUncaptured is call as the proxy uid, which capture lets pass: a
// client from outside the pod, without a mesh certificate.
func (m *meshPods) callUncaptured(from, url string) (string, error) {
	return m.lab.Try(m.ns[from], proxyUID, "curl", "-s", "-f", "-m", "3", url)
}

// envoyLog is the end of a sidecar's Envoy log (its access log included).
func (m *meshPods) envoyLog(name string) string {
	return tail(filepath.Join(m.dir, name, "envoy.log"))
}

// requireNoNACK fails the test if a proxy rejected config from discovery.
func (m *meshPods) requireNoNACK() {
	m.t.Helper()
	if syncz := m.d.get(m.t, "/debug/syncz"); strings.Contains(syncz, "lastNACK") {
		m.t.Errorf("a proxy rejected config:\n%s", syncz)
	}
}
