//go:build integration

package integration

import (
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

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// TestPeerAuthenticationEndToEnd: real PeerAuthentication objects on a
// real kube-apiserver decide how a workload's sidecar (agent, real Envoy,
// capture) takes inbound connections. web serves HTTP on 5000 and TCP on
// 9000; sleep is in the mesh (sidecar); outsider is a bare process in its
// own network namespace, not in the mesh (no sidecar, no capture).
//   - no policy (the default, PERMISSIVE): outsider reaches both ports in
//     plaintext; sleep reaches both over mTLS (its identity in web's log);
//   - namespace policy STRICT: outsider is refused on both; sleep still
//     gets through over mTLS;
//   - plus a workload policy with port 9000 DISABLE: outsider reaches 9000
//     (not 5000); sleep reaches 9000 too, sent plaintext by its sidecar
//     (auto mTLS respects DISABLE: there is no mTLS chain left there).
func TestPeerAuthenticationEndToEnd(t *testing.T) {
	netlab.Require(t)
	envoy := envoyBinary(t)
	dir := buildBinaries(t)
	agent := filepath.Join(dir, "horizon-agent")

	lab := netlab.New(t, "hzp", "10.45.0.1/24")
	lab.RootLink("10.45.0.254/24")
	const clusterIP, webIP = "10.96.0.60", "10.45.0.11"
	hosts := clusterIP + " web.sample web.sample.svc.cluster.local"
	meshed := []struct{ name, ip string }{{"sleep", "10.45.0.10"}, {"web", webIP}}
	ns := map[string]string{}
	for _, w := range meshed {
		ns[w.name] = lab.Host(w.name, w.ip+"/24", "10.45.0.1", hosts)
	}
	ns["outsider"] = lab.Host("outsider", "10.45.0.20/24", "10.45.0.1", hosts)

	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	applyIstioCRDs(t, c1) // before discovery: it watches what the API server serves
	waitFor(t, 30*time.Second, "security.istio.io/v1 to be served", func() bool {
		_, err := c1.Client.Discovery().ServerResourcesForGroupVersion("security.istio.io/v1")
		return err == nil
	})
	namespace(t, c1, "istio-system", nil)
	namespace(t, c1, "sample", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, c1, files)
	_, err = c1.Client.CoreV1().Services("sample").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "sample"},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 5000}, {Name: "tcp", Port: 9000}}}}, metav1.CreateOptions{})
	must(t, err)
	for _, w := range meshed {
		must(t, createSA(c1, "sample", w.name))
		p, err := c1.Client.CoreV1().Pods("sample").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: "sample", Labels: map[string]string{"app": w.name, "security.istio.io/tlsMode": "istio"}},
			Spec:       corev1.PodSpec{ServiceAccountName: w.name, Containers: []corev1.Container{{Name: "app", Image: "x"}}}}, metav1.CreateOptions{})
		must(t, err)
		p.Status.PodIP = w.ip
		_, err = c1.Client.CoreV1().Pods("sample").UpdateStatus(ctx, p, metav1.UpdateOptions{})
		must(t, err)
	}
	_, err = c1.Client.DiscoveryV1().EndpointSlices("sample").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "sample", Labels: map[string]string{"kubernetes.io/service-name": "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](5000)}, {Name: ptr.To("tcp"), Port: ptr.To[int32](9000)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{webIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "sample", Name: "web"}}},
	}, metav1.CreateOptions{})
	must(t, err)

	// Discovery as installed: the default mode, PERMISSIVE.
	startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.SecureSANs, c.XDSAddr = "10.45.0.254:15012", []string{"10.45.0.254"}, ""
	})
	rootFile := filepath.Join(dir, "root-cert.pem")
	must(t, os.WriteFile(rootFile, files[ca.RootCertFile], 0o644))
	for _, w := range meshed {
		work := filepath.Join(dir, w.name)
		must(t, os.MkdirAll(work, 0o755))
		tokenFile := filepath.Join(dir, w.name+".token")
		must(t, os.WriteFile(tokenFile, []byte(token(t, c1, "sample", w.name, "istio-ca")), 0o644))
		must(t, os.Chown(work, proxyUID, proxyUID))
		lab.In(ns[w.name], agent, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
		lab.Start(ns[w.name], proxyUID, filepath.Join(dir, w.name+".agent.log"), agent, "agent",
			"--namespace", "sample", "--service-account", w.name, "--cluster-id", "cluster1", "--ip", w.ip,
			"--label", "app="+w.name, "--discovery-address", "10.45.0.254:15012", "--root-cert", rootFile,
			"--token-file", tokenFile, "--envoy-path", envoy, "--work-dir", work, "--drain", "1s")
	}
	for _, port := range []string{"5000", "9000"} {
		lab.Start(ns["web"], 0, filepath.Join(dir, "web."+port+".log"), filepath.Join(dir, "helloworld"),
			"-addr", ":"+port, "-version", "v1", "-instance", "web-"+port)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range meshed {
				t.Logf("--- %s agent log:\n%s\n--- %s envoy log:\n%s", w.name, tail(filepath.Join(dir, w.name+".agent.log")),
					w.name, tail(filepath.Join(dir, w.name, "envoy.log")))
			}
		}
	})
	admin := func(w, path string) string {
		out, _ := lab.Try(ns[w], 0, "curl", "-s", "-m", "2", "http://127.0.0.1:15000"+path)
		return out
	}
	waitFor(t, 60*time.Second, "both Envoys to get their config", func() bool {
		return strings.Contains(admin("sleep", "/clusters"), "outbound|9000||web.sample.svc.cluster.local::"+webIP+":9000") &&
			strings.Contains(admin("web", "/listeners"), "virtualInbound")
	})

	// get fetches /hello from a port as a client: the outsider straight to
	// the pod, sleep by the Service name through its sidecar.
	get := func(from, port string) (string, error) {
		url := "http://web.sample:" + port + "/hello"
		if from == "outsider" {
			url = "http://" + webIP + ":" + port + "/hello"
		}
		return lab.Try(ns[from], 0, "curl", "-s", "-f", "-m", "3", url)
	}
	reaches := func(from, port string) bool {
		out, err := get(from, port)
		return err == nil && strings.Contains(out, "instance: web-"+port)
	}
	// meshedTLS checks that sleep reaches port over mTLS: web's inbound
	// access log names sleep's identity for a connection to that port.
	identity := "peer_san=spiffe://cluster.local/ns/sample/sa/sleep"
	logged := func(port string) int {
		return strings.Count(tail(filepath.Join(dir, "web", "envoy.log")), "downstream_local="+webIP+":"+port+" "+identity)
	}
	meshedTLS := func(phase, port string) {
		t.Helper()
		before := logged(port)
		if out, err := get("sleep", port); err != nil || !strings.Contains(out, "instance: web-"+port) {
			t.Fatalf("%s: sleep to %s: %v %q", phase, port, err, out)
		}
		waitFor(t, 10*time.Second, phase+": web's log of sleep's mTLS connection to "+port, func() bool { return logged(port) > before })
	}

	// PERMISSIVE (no policy): both clients on both ports.
	for _, port := range []string{"5000", "9000"} {
		waitFor(t, 30*time.Second, "PERMISSIVE: the outsider's plaintext to "+port, func() bool { return reaches("outsider", port) })
		meshedTLS("PERMISSIVE", port)
	}

	// STRICT for the namespace, by a real PeerAuthentication.
	dyn, err := dynamic.NewForConfig(c1.AdminConfig)
	must(t, err)
	pas := dyn.Resource(schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}).Namespace("sample")
	apply := func(doc string) {
		t.Helper()
		obj := &unstructured.Unstructured{}
		must(t, utilyaml.Unmarshal([]byte(doc), &obj.Object))
		_, err := pas.Create(ctx, obj, metav1.CreateOptions{})
		must(t, err)
	}
	apply(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: sample}
spec: {mtls: {mode: STRICT}}
`)
	for _, port := range []string{"5000", "9000"} {
		waitFor(t, 30*time.Second, "STRICT: the outsider refused on "+port, func() bool { return !reaches("outsider", port) })
		meshedTLS("STRICT", port)
	}

	// Port 9000 of web DISABLE: plaintext for everyone there, sleep's
	// sidecar included; 5000 stays STRICT.
	apply(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: sample}
spec:
  selector: {matchLabels: {app: web}}
  portLevelMtls:
    9000: {mode: DISABLE}
`)
	waitFor(t, 30*time.Second, "DISABLE: the outsider's plaintext to 9000", func() bool { return reaches("outsider", "9000") })
	// Until its EDS drops the endpoint's tlsMode, sleep's sidecar speaks
	// mTLS to a port with no mTLS chain left, and fails.
	waitFor(t, 30*time.Second, "DISABLE: sleep's sidecar to send 9000 plaintext", func() bool { return reaches("sleep", "9000") })
	if reaches("outsider", "5000") {
		t.Error("DISABLE on 9000: the outsider reached the STRICT port 5000")
	}
	meshedTLS("STRICT beside DISABLE", "5000")
}
