//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// The test binary doubles as the matrix's TLS client and as the non-mesh
// pod's TLS server, run inside network namespaces with HZ_GWMATRIX set.
func init() {
	switch os.Getenv("HZ_GWMATRIX") {
	case "probe":
		os.Exit(gmProbe(os.Args[1:]))
	case "tlsserver":
		os.Exit(gmTLSServer(os.Args[1:]))
	}
}

// Probe exit codes.
const (
	gmAnswered        = 0 // TLS handshake done and an HTTP answer came back
	gmHandshakeFailed = 4 // connected, but closed before the handshake finished
	gmConnectFailed   = 5 // no TCP connection at all
	gmNoAnswer        = 3 // handshake done, but no answer
)

// gmProbe dials addr with TLS (SNI, ALPN list, optional client
// certificate; the server is not verified), sends GET /hello and reports
// how far it got through its exit code.
func gmProbe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	addr := fs.String("addr", "", "host:port")
	sni := fs.String("sni", "", "server name ('' sends none)")
	alpn := fs.String("alpn", "", "comma-separated ALPN protocols ('' offers none)")
	cert := fs.String("cert", "", "client certificate chain (PEM)")
	key := fs.String("key", "", "client key (PEM)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := &tls.Config{ServerName: *sni, InsecureSkipVerify: true} //nolint:gosec // a probe: what matters is whether the gateway lets it through
	if *alpn != "" {
		cfg.NextProtos = strings.Split(*alpn, ",")
	}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			fmt.Println("probe:", err)
			return 2
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	raw, err := net.DialTimeout("tcp", *addr, 3*time.Second)
	if err != nil {
		fmt.Println("connect failed:", err)
		return gmConnectFailed
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(4 * time.Second))
	conn := tls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		fmt.Println("handshake failed:", err)
		return gmHandshakeFailed
	}
	fmt.Printf("handshake done (ALPN %q)\n", conn.ConnectionState().NegotiatedProtocol)
	fmt.Fprintf(conn, "GET /hello HTTP/1.1\r\nHost: helloworld.sample:5000\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(conn)
	if !strings.HasPrefix(string(b), "HTTP/1.") {
		fmt.Printf("no answer: %v %q\n", err, b)
		return gmNoAnswer
	}
	fmt.Print(string(b))
	return gmAnswered
}

// gmTLSServer is a pod outside the mesh that nevertheless speaks TLS (a
// self-signed certificate, any ALPN, no client certificate): were the
// gateway to pass a connection to it, the probe's handshake would complete
// and its request be answered.
func gmTLSServer(args []string) int {
	fs := flag.NewFlagSet("tlsserver", flag.ContinueOnError)
	addr := fs.String("addr", ":5000", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plain"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"plain.sample.svc.cluster.local"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	lis, err := tls.Listen("tcp", *addr, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "plain backend (not in the mesh) answered")
	})}
	fmt.Println(srv.Serve(lis))
	return 1
}

// TestGatewayMatrixOnlyMeshMTLSToSidecarsPasses: an outside client before
// an AUTO_PASSTHROUGH east-west gateway (the real Envoy, configured by
// discovery from an Istio Gateway) tries every SNI form × ALPN × backend
// (helloworld with a sidecar requiring mTLS; a non-mesh pod that speaks
// TLS itself). Only the mesh SNI with a mesh ALPN to the sidecar gets
// through; everything else is closed by the gateway before the handshake
// completes. Controls show the non-mesh pod would answer a TLS client that
// reached it.
func TestGatewayMatrixOnlyMeshMTLSToSidecarsPasses(t *testing.T) {
	netlab.Require(t)
	envoy := envoyBinary(t)
	dir := buildBinaries(t)
	agentBin, hello := filepath.Join(dir, "horizon-agent"), filepath.Join(dir, "helloworld")
	self, err := os.Executable() // run as root in the namespaces: the probe and the non-mesh server
	must(t, err)

	// One network, 10.62.0.0/24 (its bridge namespace routes, .1), with
	// discovery in the test's namespace at .254; the gateway also has a
	// public address on a separate segment, where the outside client is
	// and from which nothing routes into the network.
	const (
		net1      = "10.62.0"
		gwPublic  = "198.18.62.10"
		outsideIP = "198.18.62.50"
		hwIP      = net1 + ".11"
		plainIP   = net1 + ".12"
		discIP    = net1 + ".254"
		hwHost    = "helloworld.sample.svc.cluster.local"
		plainHost = "plain.sample.svc.cluster.local"
	)
	lab := netlab.New(t, "hzgm", net1+".1/24")
	n1 := "hzgm-br"
	pub := lab.Bridge("pub")
	lab.AttachRoot(n1, discIP+"/24")
	ns := map[string]string{}
	for _, w := range []struct{ name, ip string }{{"hw", hwIP}, {"plain", plainIP}, {"gw", net1 + ".20"}} {
		ns[w.name] = lab.Namespace(w.name)
		lab.Attach(ns[w.name], n1, "eth0", w.ip+"/24")
		lab.In(ns[w.name], "ip", "route", "add", "default", "via", net1+".1")
	}
	lab.Attach(ns["gw"], pub, "eth1", gwPublic+"/24")
	ns["outside"] = lab.Namespace("outside")
	lab.Attach(ns["outside"], pub, "eth0", outsideIP+"/24")

	// Kubernetes: helloworld (mesh pod, sidecar) and plain (no tlsMode
	// label: outside the mesh), both port 5000.
	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	files, err := catest.New("mesh")
	must(t, err)
	namespace(t, c1, "istio-system", map[string]string{"topology.istio.io/network": "network1"})
	namespace(t, c1, "sample", nil)
	for _, sa := range []string{"helloworld", "plain"} {
		must(t, createSA(c1, "sample", sa))
	}
	must(t, createSA(c1, "istio-system", "istio-eastwestgateway"))
	installCACerts(t, c1, files)
	serviceWith(t, c1, "sample", "helloworld", "10.96.0.50", "http", 5000, nil, "")
	serviceWith(t, c1, "sample", "plain", "10.96.0.51", "http", 5000, nil, "")
	podWith(t, c1, "sample", "hw", hwIP, "helloworld", map[string]string{"app": "helloworld"})
	createPod(t, c1, "sample", "plain", plainIP, "plain", "", map[string]string{"app": "plain"}) // no tlsMode label: not mTLS-capable
	endpoints(t, c1, "sample", "helloworld", "http", 5000, map[string]string{"hw": hwIP})
	endpoints(t, c1, "sample", "plain", "http", 5000, map[string]string{"plain": plainIP})
	applyIstioCRDs(t, c1)
	gw := &unstructured.Unstructured{}
	must(t, utilyaml.Unmarshal([]byte("apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: cross-network-gateway, namespace: istio-system}\n"+
		"spec:\n  selector: {istio: eastwestgateway}\n  servers:\n  - port: {number: 15443, name: tls, protocol: TLS}\n    tls: {mode: AUTO_PASSTHROUGH}\n    hosts: [\"*\"]\n"), &gw.Object))
	dyn, err := dynamic.NewForConfig(c1.AdminConfig)
	must(t, err)
	_, err = dyn.Resource(schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "gateways"}).
		Namespace("istio-system").Create(ctx, gw, metav1.CreateOptions{})
	must(t, err)
	startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.XDSAddr, c.SecureSANs = discIP+":15012", "", []string{discIP}
	})

	// Proxies: helloworld's sidecar (capture, mTLS required inbound) and
	// the gateway; the non-mesh pod's TLS server.
	rootFile := filepath.Join(dir, "root-cert.pem")
	must(t, os.WriteFile(rootFile, files[ca.RootCertFile], 0o644))
	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range []string{"hw", "gw"} {
				t.Logf("--- %s agent:\n%s\n--- %s envoy:\n%s", w, tail(filepath.Join(dir, w+".agent.log")), w, tail(filepath.Join(dir, w, "envoy.log")))
			}
			t.Logf("--- plain:\n%s", tail(filepath.Join(dir, "plain.log")))
		}
	})
	agent := func(name, tokenNS, sa, ip string, extra ...string) {
		work := filepath.Join(dir, name)
		must(t, os.MkdirAll(work, 0o755))
		must(t, os.Chown(work, proxyUID, proxyUID))
		tokenFile := filepath.Join(dir, name+".token")
		must(t, os.WriteFile(tokenFile, []byte(token(t, c1, tokenNS, sa, "istio-ca")), 0o644))
		args := append([]string{agentBin, "agent", "--namespace", tokenNS, "--service-account", sa, "--cluster-id", "cluster1",
			"--network", "network1", "--ip", ip, "--discovery-address", discIP + ":15012", "--discovery-san", discIP,
			"--root-cert", rootFile, "--token-file", tokenFile, "--envoy-path", envoy, "--work-dir", work, "--drain", "1s"}, extra...)
		lab.Start(ns[name], proxyUID, filepath.Join(dir, name+".agent.log"), args...)
	}
	lab.In(ns["hw"], agentBin, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
	lab.Start(ns["hw"], 0, filepath.Join(dir, "hw.app.log"), hello, "-version", "v1", "-instance", "hw")
	agent("hw", "sample", "helloworld", hwIP, "--label", "app=helloworld")
	agent("gw", "istio-system", "istio-eastwestgateway", net1+".20", "--router", "--label", "istio=eastwestgateway")
	lab.Start(ns["plain"], 0, filepath.Join(dir, "plain.log"), "env", "HZ_GWMATRIX=tlsserver", self, "-addr", ":5000")

	meshCert, meshKey := identityFiles(t, dir, "mesh-sleep", files)
	otherFiles, err := catest.New("other-mesh")
	must(t, err)
	otherCert, otherKey := identityFiles(t, dir, "foreign", otherFiles)
	// probe runs the TLS client in network namespace netns.
	probe := func(netns, addr, sni, alpn string, cert, key string) (int, string) {
		args := []string{"env", "HZ_GWMATRIX=probe", self, "-addr", addr, "-sni", sni, "-alpn", alpn}
		if cert != "" {
			args = append(args, "-cert", cert, "-key", key)
		}
		out, err := lab.Try(netns, 0, args...)
		code := 0
		if err != nil {
			code = -1
			if ee, ok := err.(interface{ ExitCode() int }); ok {
				code = ee.ExitCode()
			}
		}
		return code, strings.TrimSpace(out)
	}
	const gwAddr = gwPublic + ":15443"
	meshSNI := func(port int, host string) string { return fmt.Sprintf("outbound_.%d_._.%s", port, host) }
	admin := func(name, path string) string {
		out, _ := lab.Try(ns[name], 0, "curl", "-s", "-m", "2", "http://127.0.0.1:15000"+path)
		return out
	}
	waitFor(t, 90*time.Second, "the gateway to pass helloworld through", func() bool {
		return strings.Contains(admin("gw", "/clusters"), meshSNI(5000, hwHost)+"::"+hwIP+":5000")
	})
	// Controls. (1) The positive cell, once the sidecar is up: mesh mTLS
	// through the gateway is answered by helloworld.
	waitFor(t, 90*time.Second, "a mesh client to be answered through the gateway", func() bool {
		code, out := probe(ns["outside"], gwAddr, meshSNI(5000, hwHost), "istio", meshCert, meshKey)
		return code == gmAnswered && strings.Contains(out, "Hello version: v1, instance: hw")
	})
	// (2) The non-mesh pod answers a TLS client that reaches it (from its
	// network's router), with every ALPN of the matrix: its refusals below
	// are the gateway's doing.
	for _, alpn := range []string{"istio", "istio-peer-exchange", "h2", ""} {
		code, out := probe(n1, plainIP+":5000", meshSNI(5000, plainHost), alpn, meshCert, meshKey)
		if code != gmAnswered || !strings.Contains(out, "plain backend") {
			t.Fatalf("control: the non-mesh pod, reached directly with ALPN %q, did not answer: exit %d\n%s", alpn, code, out)
		}
	}
	// (3) The outside client has no route into the network.
	if code, out := probe(ns["outside"], plainIP+":5000", "", "istio", meshCert, meshKey); code != gmConnectFailed {
		t.Fatalf("control: the outside client reached the non-mesh pod directly: exit %d\n%s", code, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway listeners:\n%s", admin("gw", "/config_dump?resource=dynamic_listeners"))
		}
	})

	type backend struct{ name, host, answer string }
	backends := []backend{{"sidecar", hwHost, "Hello version: v1, instance: hw"}, {"non-mesh pod", plainHost, "plain backend"}}
	snis := []struct {
		name string
		sni  func(host string) string
		mesh bool
	}{
		{"mesh SNI", func(h string) string { return meshSNI(5000, h) }, true},
		{"mesh SNI, wrong port", func(h string) string { return meshSNI(5001, h) }, false},
		{"mesh SNI, unknown host", func(string) string { return meshSNI(5000, "nosuch.sample.svc.cluster.local") }, false},
		{"plain hostname", func(h string) string { return h }, false},
		{"no SNI", func(string) string { return "" }, false},
	}
	alpns := []struct {
		name, alpn string
		mesh       bool
	}{{"istio", "istio", true}, {"istio-peer-exchange", "istio-peer-exchange", true}, {"h2", "h2", false}, {"none", "", false}}
	for _, b := range backends {
		for _, s := range snis {
			for _, a := range alpns {
				pass := b.name == "sidecar" && s.mesh && a.mesh
				t.Run(fmt.Sprintf("%s/%s/ALPN %s", b.name, s.name, a.name), func(t *testing.T) {
					code, out := probe(ns["outside"], gwAddr, s.sni(b.host), a.alpn, meshCert, meshKey)
					switch {
					case pass && (code != gmAnswered || !strings.Contains(out, b.answer)):
						t.Errorf("mesh mTLS to a sidecar was not answered: exit %d\n%s", code, out)
					case !pass && code != gmHandshakeFailed:
						t.Errorf("want the gateway to close the connection before the TLS handshake completes; exit %d\n%s", code, out)
					}
				})
			}
		}
	}
	// The mesh cell without a mesh certificate: the gateway passes it (it
	// never decrypts), and the sidecar refuses it.
	for _, c := range []struct{ name, cert, key string }{{"no client certificate", "", ""}, {"certificate of another root", otherCert, otherKey}} {
		t.Run("sidecar/mesh SNI/ALPN istio/"+c.name, func(t *testing.T) {
			code, out := probe(ns["outside"], gwAddr, meshSNI(5000, hwHost), "istio", c.cert, c.key)
			if code == gmAnswered || strings.Contains(out, "Hello") {
				t.Errorf("answered without a mesh certificate: exit %d\n%s", code, out)
			}
		})
	}
}
