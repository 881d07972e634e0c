//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/cli"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// identityFiles writes a workload certificate for sample/sleep signed by
// the CA of files, readable by the proxy uid.
func identityFiles(t *testing.T, dir, name string, files catest.Files) (certFile, keyFile string) {
	t.Helper()
	other, err := ca.Load(files)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	must(t, err)
	leaf, err := other.SignWorkload(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), ca.Identity("cluster.local", "sample", "sleep"), time.Hour)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	must(t, os.WriteFile(certFile, []byte(strings.Join(other.WorkloadChain(leaf), "")), 0o644))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644))
	return certFile, keyFile
}

func podWith(t *testing.T, c *kubeharness.Cluster, ns, name, ip, sa string, labels map[string]string) {
	t.Helper()
	l := map[string]string{"security.istio.io/tlsMode": "istio"}
	for k, v := range labels {
		l[k] = v
	}
	p, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "x"}}}}, metav1.CreateOptions{})
	must(t, err)
	p.Status.PodIP = ip
	_, err = c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	must(t, err)
}

func serviceWith(t *testing.T, c *kubeharness.Cluster, ns, name, clusterIP, portName string, port int32, labels map[string]string, lb string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: portName, Port: port}}}}
	if lb != "" {
		svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	}
	created, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	must(t, err)
	if lb != "" {
		created.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lb}}
		_, err = c.Client.CoreV1().Services(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		must(t, err)
	}
}

// endpoints writes a Service's EndpointSlice: pod name → IP on port.
func endpoints(t *testing.T, c *kubeharness.Cluster, ns, svc, portName string, port int32, pods map[string]string) {
	t.Helper()
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: svc + "-1", Namespace: ns,
		Labels: map[string]string{"kubernetes.io/service-name": svc}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port)}}}
	for name, ip := range pods {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name}})
	}
	api := c.Client.DiscoveryV1().EndpointSlices(ns)
	if old, err := api.Get(ctx, sl.Name, metav1.GetOptions{}); err == nil {
		sl.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, sl, metav1.UpdateOptions{})
		must(t, err)
		return
	}
	_, err := api.Create(ctx, sl, metav1.CreateOptions{})
	must(t, err)
}

// TestAcrossIsolatedNetworks is the walkthrough for real: network1
// (cluster1, with discovery) and network2 (cluster2) share no route to each
// other's pods; sidecars talk mTLS end to end through the other network's
// gateway, which routes on SNI without decrypting; cluster2's proxies reach
// discovery only through cluster1's gateway.
func TestAcrossIsolatedNetworks(t *testing.T) {
	netlab.Require(t)
	envoy := envoyBinary(t)
	dir := buildBinaries(t)
	horizon, hello := filepath.Join(dir, "horizon"), filepath.Join(dir, "helloworld")
	const clusterIP = "10.96.0.50"
	const discoverySNI = "outbound_.15012_._.horizon.istio-system.svc.cluster.local"

	// Networks: n1 10.1.0.0/24 (its bridge namespace is its router, .1),
	// n2 10.2.0.0/24 (router .1), public 203.0.113.0/24 joining the routers
	// (.1, .2) and the gateways' public addresses (.10, .20). Routers
	// masquerade towards the public segment; nothing routes between pods.
	lab := netlab.New(t, "hzx", "10.1.0.1/24")
	n1 := "hzx-br"
	n2 := lab.Bridge("n2")
	pub := lab.Bridge("pub")
	lab.In(n2, "ip", "addr", "add", "10.2.0.1/24", "dev", "br0")
	for _, r := range []struct{ ns, addr string }{{n1, "203.0.113.1/24"}, {n2, "203.0.113.2/24"}} {
		lab.Attach(r.ns, pub, "pub0", r.addr)
		lab.In(r.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		lab.In(r.ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "pub0", "-j", "MASQUERADE")
	}
	lab.AttachRoot(n1, "10.1.0.254/24") // discovery runs in cluster1's network
	hosts := []string{clusterIP + " helloworld.sample"}
	type wl struct{ name, bridge, ip, gw, sa, cluster, network, version, public string }
	workloads := []wl{
		{"sleep1", n1, "10.1.0.10", "10.1.0.1", "sleep", "cluster1", "network1", "", ""},
		{"hw1", n1, "10.1.0.11", "10.1.0.1", "helloworld", "cluster1", "network1", "v1", ""},
		{"gw1", n1, "10.1.0.20", "10.1.0.1", "istio-eastwestgateway", "cluster1", "network1", "", "203.0.113.10"},
		{"sleep2", n2, "10.2.0.10", "10.2.0.1", "sleep", "cluster2", "network2", "", ""},
		{"hw2", n2, "10.2.0.11", "10.2.0.1", "helloworld", "cluster2", "network2", "v2", ""},
		{"gw2", n2, "10.2.0.20", "10.2.0.1", "istio-eastwestgateway", "cluster2", "network2", "", "203.0.113.20"},
	}
	ns := map[string]string{}
	for _, w := range workloads {
		ns[w.name] = lab.Namespace(w.name)
		lab.Attach(ns[w.name], w.bridge, "eth0", w.ip+"/24")
		if w.public != "" {
			lab.Attach(ns[w.name], pub, "eth1", w.public+"/24")
		}
		lab.In(ns[w.name], "ip", "route", "add", "default", "via", w.gw)
		lab.Hosts(ns[w.name], hosts...)
	}

	// Kubernetes: two clusters; cluster1 is the config cluster.
	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	c2 := kubeharness.Start(t, kubeharness.Options{Name: "cluster2", ServiceCIDR: "10.96.0.0/16"})
	clusters := map[string]*kubeharness.Cluster{"cluster1": c1, "cluster2": c2}
	files, err := catest.New("mesh")
	must(t, err)
	for name, c := range clusters {
		network := map[string]string{"cluster1": "network1", "cluster2": "network2"}[name]
		namespace(t, c, "istio-system", map[string]string{"topology.istio.io/network": network})
		namespace(t, c, "sample", nil)
		serviceWith(t, c, "sample", "helloworld", clusterIP, "http", 5000, nil, "")
		public := map[string]string{"cluster1": "203.0.113.10", "cluster2": "203.0.113.20"}[name]
		serviceWith(t, c, "istio-system", "istio-eastwestgateway", "", "tls", 15443,
			map[string]string{"topology.istio.io/network": network}, public)
		for _, sa := range []string{"sleep", "helloworld"} {
			must(t, createSA(c, "sample", sa))
		}
		must(t, createSA(c, "istio-system", "istio-eastwestgateway"))
	}
	installCACerts(t, c1, files)
	for _, w := range workloads {
		if w.public == "" {
			podWith(t, clusters[w.cluster], "sample", w.name, w.ip, w.sa, map[string]string{"app": w.name})
		}
	}
	endpoints(t, c1, "sample", "helloworld", "http", 5000, map[string]string{"hw1": "10.1.0.11"})
	endpoints(t, c2, "sample", "helloworld", "http", 5000, map[string]string{"hw2": "10.2.0.11"})
	// Discovery as a mesh service of cluster1, so cluster1's gateway passes
	// remote proxies through to it (the walkthrough's remotePilotAddress).
	serviceWith(t, c1, "istio-system", "horizon", "", "tls", 15012, nil, "")
	podWith(t, c1, "istio-system", "horizon", "10.1.0.254", "horizon", nil)
	endpoints(t, c1, "istio-system", "horizon", "tls", 15012, map[string]string{"horizon": "10.1.0.254"})
	meshNetworksConfigMap(t, c1, "networks:\n  network1:\n    endpoints: [{fromRegistry: cluster1}]\n    gateways: [{registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local, port: 15443}]\n"+
		"  network2:\n    endpoints: [{fromRegistry: cluster2}]\n    gateways: [{registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local, port: 15443}]\n")
	applyIstioCRDs(t, c1)
	gw := &unstructured.Unstructured{}
	must(t, utilyaml.Unmarshal([]byte("apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: cross-network-gateway, namespace: istio-system}\n"+
		"spec:\n  selector: {istio: eastwestgateway}\n  servers:\n  - port: {number: 15443, name: tls, protocol: TLS}\n    tls: {mode: AUTO_PASSTHROUGH}\n    hosts: [\"*\"]\n"), &gw.Object))
	dyn, err := dynamic.NewForConfig(c1.AdminConfig)
	must(t, err)
	_, err = dyn.Resource(schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "gateways"}).
		Namespace("istio-system").Create(ctx, gw, metav1.CreateOptions{})
	must(t, err)
	must(t, c2.CreateRemoteReader(ctx, "istio-system", "istio-multi"))
	kc, err := c2.KubeconfigFor(ctx, "istio-system", "istio-multi", time.Hour)
	must(t, err)
	remoteSecret(t, c1, "cluster2-secret", "cluster2", kc)

	d := startDiscoveryWith(t, c1, nil, true, func(c *cli.DiscoveryConfig) {
		c.SecureAddr, c.XDSAddr = "10.1.0.254:15012", ""
		c.SecureSANs = []string{"10.1.0.254", discoverySNI}
	})
	waitFor(t, 30*time.Second, "cluster2 to sync", func() bool {
		for _, c := range d.cp.Clusters() {
			if c.ID == "cluster2" && c.Synced {
				return true
			}
		}
		return false
	})

	rootFile := filepath.Join(dir, "root-cert.pem")
	must(t, os.WriteFile(rootFile, files[ca.RootCertFile], 0o644))
	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range workloads {
				t.Logf("--- %s agent:\n%s\n--- %s envoy:\n%s", w.name, tail(filepath.Join(dir, w.name+".agent.log")), w.name, tail(filepath.Join(dir, w.name, "envoy.log")))
			}
		}
	})
	admin := func(w, path string) string {
		out, _ := lab.Try(ns[w], 0, "curl", "-s", "-m", "2", "http://127.0.0.1:15000"+path)
		return out
	}
	start := func(w wl) {
		work := filepath.Join(dir, w.name)
		must(t, os.MkdirAll(work, 0o755))
		must(t, os.Chown(work, proxyUID, proxyUID))
		tokenNS := "sample"
		if w.public != "" {
			tokenNS = "istio-system"
		}
		tokenFile := filepath.Join(dir, w.name+".token")
		must(t, os.WriteFile(tokenFile, []byte(token(t, clusters[w.cluster], tokenNS, w.sa, "istio-ca")), 0o644))
		discoveryAddr, san := "10.1.0.254:15012", "10.1.0.254"
		if w.network == "network2" {
			discoveryAddr, san = "203.0.113.10:15443", discoverySNI // through cluster1's gateway
		}
		args := []string{horizon, "agent", "--namespace", tokenNS, "--service-account", w.sa, "--cluster-id", w.cluster,
			"--network", w.network, "--ip", w.ip, "--discovery-address", discoveryAddr, "--discovery-san", san,
			"--root-cert", rootFile, "--token-file", tokenFile, "--envoy-path", envoy, "--work-dir", work, "--drain", "1s"}
		if w.public != "" {
			args = append(args, "--router", "--label", "istio=eastwestgateway")
		} else {
			lab.In(ns[w.name], horizon, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
			args = append(args, "--label", "app="+w.name)
		}
		if w.version != "" {
			lab.Start(ns[w.name], 0, filepath.Join(dir, w.name+".app.log"), hello, "-version", w.version, "-instance", w.name)
		}
		lab.Start(ns[w.name], proxyUID, filepath.Join(dir, w.name+".agent.log"), args...)
	}
	// cluster1's gateway first: cluster2's proxies reach discovery through it.
	start(workloads[2])
	waitFor(t, 60*time.Second, "gw1 to pass discovery through", func() bool {
		return strings.Contains(admin("gw1", "/clusters"), discoverySNI+"::10.1.0.254:15012")
	})
	for _, w := range workloads {
		if w.name != "gw1" {
			start(w)
		}
	}
	hwCluster := "outbound|5000||helloworld.sample.svc.cluster.local"
	hwSNI := "outbound_.5000_._.helloworld.sample.svc.cluster.local"
	for gw, pod := range map[string]string{"gw1": "10.1.0.11:5000", "gw2": "10.2.0.11:5000"} {
		waitFor(t, 90*time.Second, gw+" to pass helloworld through", func() bool {
			return strings.Contains(admin(gw, "/clusters"), hwSNI+"::"+pod)
		})
	}
	for w, want := range map[string][]string{"sleep1": {"10.1.0.11:5000", "203.0.113.20:15443"}, "sleep2": {"10.2.0.11:5000", "203.0.113.10:15443"}} {
		waitFor(t, 90*time.Second, w+"'s Envoy to know both helloworlds", func() bool {
			c := admin(w, "/clusters")
			return strings.Contains(c, hwCluster+"::"+want[0]) && strings.Contains(c, hwCluster+"::"+want[1])
		})
	}

	call := func(from string) (string, error) {
		out, err := lab.Try(ns[from], 0, "curl", "-s", "-f", "-m", "5", "http://helloworld.sample:5000/hello")
		return strings.TrimSpace(out), err
	}
	// 1. From network1: v1 locally, v2 through cluster2's gateway.
	seen := map[string]int{}
	for i := range 40 {
		out, err := call("sleep1")
		if err != nil {
			t.Fatalf("request %d: %v %s", i, err, out)
		}
		seen[out]++
	}
	t.Logf("sleep1 (network1), 40 requests: %v", seen)
	if seen["Hello version: v1, instance: hw1"] < 10 || seen["Hello version: v2, instance: hw2"] < 10 {
		t.Errorf("want v1 and v2 at least 10 times each: %v", seen)
	}
	log1 := tail(filepath.Join(dir, "sleep1", "envoy.log"))
	for _, line := range strings.Split(strings.TrimSpace(log1), "\n") {
		if !strings.Contains(line, "GET /hello") {
			continue
		}
		if !strings.Contains(line, "downstream_local="+clusterIP+":5000") ||
			!(strings.Contains(line, "upstream_host=203.0.113.20:15443") || strings.Contains(line, "upstream_host=10.1.0.11:5000")) {
			t.Errorf("sleep1 access log line: %s", line)
		}
	}
	// 2. v2's inbound log shows sleep's identity: mTLS end to end.
	if l := tail(filepath.Join(dir, "hw2", "envoy.log")); !strings.Contains(l, "peer_san=spiffe://cluster.local/ns/sample/sa/sleep") {
		t.Errorf("hw2's inbound log lacks sleep's identity:\n%s", l)
	}
	// 3. No direct route from network1 to the v2 pod.
	if out, err := lab.Try(ns["sleep1"], proxyUID, "curl", "-s", "-m", "3", "http://10.2.0.11:5000/hello"); err == nil {
		t.Errorf("network1 reached the v2 pod directly: %s", out)
	}
	// 4. Symmetric: from network2, v1 answers through cluster1's gateway.
	seen = map[string]int{}
	for range 20 {
		out, err := call("sleep2")
		if err != nil {
			t.Fatalf("from sleep2: %v %s", err, out)
		}
		seen[out]++
	}
	t.Logf("sleep2 (network2), 20 requests: %v", seen)
	if seen["Hello version: v1, instance: hw1"] == 0 {
		t.Errorf("v1 never answered network2: %v", seen)
	}
	// 5. Without a mesh certificate, a valid SNI reaches no v2; an unknown
	// SNI is closed by the gateway.
	otherFiles, err := catest.New("other-mesh")
	must(t, err)
	otherCert, otherKey := identityFiles(t, dir, "foreign", otherFiles)
	// Control: the same probe with a certificate of this mesh is answered
	// by v2 — so the refusals below are the mesh's doing, not the network's.
	meshCert, meshKey := identityFiles(t, dir, "mesh-sleep", files)
	if out, err := lab.Try(ns["sleep1"], proxyUID, hello, "-probe", "203.0.113.20:15443", "-sni", hwSNI, "-cert", meshCert, "-key", meshKey); err != nil || !strings.Contains(out, "Hello version: v2") {
		t.Errorf("a mesh client through the gateway was not answered by v2: %v %s", err, out)
	}
	for _, probe := range [][]string{
		{"-sni", hwSNI},
		{"-sni", hwSNI, "-cert", otherCert, "-key", otherKey}, // a certificate from another root
		{"-sni", "outbound_.5000_._.unknown.sample.svc.cluster.local"},
	} {
		args := append([]string{hello, "-probe", "203.0.113.20:15443"}, probe...)
		if out, err := lab.Try(ns["sleep1"], proxyUID, args...); err == nil || strings.Contains(out, "Hello") {
			t.Errorf("probe %v answered: %s", probe, out)
		}
	}
	// 6. The gateway's passthrough chains carry no TLS context.
	listeners := admin("gw2", "/config_dump?resource=dynamic_listeners")
	if !strings.Contains(listeners, `"outbound_.5000_._.helloworld.sample.svc.cluster.local"`) || strings.Contains(listeners, "transport_socket") {
		t.Errorf("gw2's passthrough chains should exist and carry no TLS context:\n%.3000s", listeners)
	}
	if syncz := d.get(t, "/debug/syncz"); strings.Contains(syncz, "lastNACK") {
		t.Errorf("a proxy rejected config:\n%s", syncz)
	}
	// 7. Scale v2 to zero: every answer from v1; back to one: v2 again.
	begin := time.Now()
	endpoints(t, c2, "sample", "helloworld", "http", 5000, nil)
	// Converged = the start of the first run of 10 answers, all from v1
	// (v1 answers about half the time before, so one v1 answer proves
	// nothing); failures before that are counted, not fatal.
	var converged time.Duration
	var streakStart time.Time
	failures := 0
	for streak := 0; streak < 10; {
		at := time.Now()
		out, err := call("sleep1")
		switch {
		case err == nil && strings.Contains(out, "v1"):
			if streak == 0 {
				streakStart = at
			}
			streak++
		default:
			if err != nil {
				failures++
			}
			streak = 0
		}
		if time.Since(begin) > 30*time.Second {
			t.Fatal("did not converge to v1 only")
		}
	}
	converged = streakStart.Sub(begin)
	for i := range 20 {
		if out, err := call("sleep1"); err != nil || !strings.Contains(out, "v1") {
			t.Errorf("after scaling v2 to zero, request %d: %v %s", i, err, out)
		}
	}
	t.Logf("scale v2 to zero: only v1 answers from %s after the EndpointSlice write (%d failed requests while converging)", converged.Round(time.Millisecond), failures)
	endpoints(t, c2, "sample", "helloworld", "http", 5000, map[string]string{"hw2": "10.2.0.11"})
	waitFor(t, 30*time.Second, "v2 to answer again", func() bool {
		out, _ := call("sleep1")
		return strings.Contains(out, "v2")
	})
	// 8. cluster2's sidecars got config and certificates through cluster1's
	// gateway (they have no other way to discovery).
	for _, w := range []string{"hw2", "sleep2", "gw2"} {
		if a := tail(filepath.Join(dir, w+".agent.log")); !strings.Contains(a, "workload certificate") {
			t.Errorf("%s has no certificate:\n%s", w, a)
		}
	}
}
