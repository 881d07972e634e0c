//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// TestIstioSidecarTrafficOneNetwork is issue 12's first traffic test, on
// one network: an Istio-injected pod (sample/hello-istio: helloworld
// reporting version "istio", Istio's own `pilot-agent istio-iptables`
// capture, `pilot-agent proxy sidecar` as uid 1337 with Istio's own
// bootstrap template, the pinned Envoy, a TokenRequest token and the istiod
// name pointing at `horizon-discovery discovery`) calls helloworld behind a Horizon
// sidecar and is called by sleep behind a Horizon sidecar, each in its own
// network namespace as in TestSidecarsMutualTLSEndToEnd. Both directions
// answer over mutual TLS: each server's access log (Horizon's LDS format,
// which the Istio sidecar's Envoy gets too) shows the caller's SPIFFE ID,
// and the caller's cluster only accepts the server's. No proxy NACKs
// anything; the Istio sidecar's stream is authenticated by its token.
func TestIstioSidecarTrafficOneNetwork(t *testing.T) {
	netlab.Require(t)
	pilotAgent, envoy := pilotAgentBinary(t), envoyBinary(t)
	tmpl := istioBootstrapTemplate(t)
	start := time.Now()
	// The proxy uid cannot read root's home (module and build caches):
	// everything it runs or reads goes to a directory it can.
	dir := buildBinaries(t)
	agent := filepath.Join(dir, "horizon-agent")
	agentBin := filepath.Join(dir, "pilot-agent")
	copyFile(t, pilotAgent, agentBin, 0o755)
	tmplFile := filepath.Join(dir, "envoy_bootstrap.json")
	copyFile(t, tmpl, tmplFile, 0o644)

	const (
		hwIP, istioIP, sleepIP = "10.46.0.11", "10.46.0.12", "10.46.0.10"
		hwClusterIP            = "10.96.0.70"
		istioClusterIP         = "10.96.0.71"
		discoveryIP            = "10.46.0.254"
		istioSAN               = "spiffe://cluster.local/ns/sample/sa/hello-istio"
		sleepSAN               = "spiffe://cluster.local/ns/sample/sa/sleep"
	)
	lab := netlab.New(t, "hzis", "10.46.0.1/24")
	lab.RootLink(discoveryIP + "/24")
	hosts := []string{
		hwClusterIP + " helloworld.sample helloworld.sample.svc.cluster.local",
		istioClusterIP + " hello-istio.sample hello-istio.sample.svc.cluster.local",
		// What the istiod Service's name resolves to for an Istio user
		// who points it at Horizon.
		discoveryIP + " istiod.istio-system.svc",
	}
	ns := map[string]string{
		"sleep":       lab.Host("sleep", sleepIP+"/24", "10.46.0.1", hosts...),
		"helloworld":  lab.Host("helloworld", hwIP+"/24", "10.46.0.1", hosts...),
		"hello-istio": lab.Host("hello-istio", istioIP+"/24", "10.46.0.1", hosts...),
	}

	// Kubernetes: the pods, Services, EndpointSlices and ServiceAccounts.
	c1, files := istioSampleCluster(t)
	for _, sa := range []string{"sleep", "helloworld", "hello-istio"} {
		must(t, createSA(c1, "sample", sa))
	}
	podWith(t, c1, "sample", "sleep", sleepIP, "sleep", map[string]string{"app": "sleep"})
	podWith(t, c1, "sample", "helloworld", hwIP, "helloworld", map[string]string{"app": "helloworld", "version": "v1"})
	podWith(t, c1, "sample", "hello-istio", istioIP, "hello-istio", map[string]string{"app": "hello-istio"})
	serviceWith(t, c1, "sample", "helloworld", hwClusterIP, "http", 5000, nil, "")
	endpoints(t, c1, "sample", "helloworld", "http", 5000, map[string]string{"helloworld": hwIP})
	serviceWith(t, c1, "sample", "hello-istio", istioClusterIP, "http", 5000, nil, "")
	endpoints(t, c1, "sample", "hello-istio", "http", 5000, map[string]string{"hello-istio": istioIP})

	// Discovery, TLS only, on the lab's root address; its certificate
	// names that address (Horizon's agents dial it) and the istiod name
	// (Istio's agent checks it).
	d := startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.XDSAddr = discoveryIP+":15012", ""
		c.SecureSANs = []string{discoveryIP, "istiod.istio-system.svc"}
		c.DefaultMTLSMode = "STRICT" // plaintext callers are refused below
	})
	t.Logf("network, API server and discovery ready in %s", time.Since(start).Round(time.Millisecond))

	// Horizon's sidecars, as TestSidecarsMutualTLSEndToEnd runs them.
	rootFile := filepath.Join(dir, "root-cert.pem")
	must(t, os.WriteFile(rootFile, files[ca.RootCertFile], 0o644))
	for _, w := range []struct{ name, ip string }{{"sleep", sleepIP}, {"helloworld", hwIP}} {
		work := filepath.Join(dir, w.name+".proxy")
		must(t, os.MkdirAll(work, 0o755))
		must(t, os.Chown(work, proxyUID, proxyUID))
		tokenFile := filepath.Join(dir, w.name+".token")
		must(t, os.WriteFile(tokenFile, []byte(token(t, c1, "sample", w.name, "istio-ca")), 0o644))
		lab.In(ns[w.name], agent, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
		if w.name == "helloworld" {
			lab.Start(ns[w.name], 0, filepath.Join(dir, "helloworld.app.log"), filepath.Join(dir, "helloworld"),
				"-version", "v1", "-instance", "helloworld")
		}
		lab.Start(ns[w.name], proxyUID, filepath.Join(dir, w.name+".agent.log"), agent, "agent",
			"--namespace", "sample", "--service-account", w.name, "--cluster-id", "cluster1", "--ip", w.ip,
			"--label", "app="+w.name, "--discovery-address", discoveryIP+":15012", "--root-cert", rootFile,
			"--token-file", tokenFile, "--envoy-path", envoy, "--work-dir", work, "--drain", "1s")
	}

	// The Istio-injected pod: istio-init, the app, the istio-proxy container.
	istioNS := ns["hello-istio"]
	istioLog := startIstioPod(t, lab, istioNS, dir, istioPod{agent: agentBin, envoy: envoy, template: tmplFile,
		name: "hello-istio", sa: "hello-istio", ip: istioIP, cluster: "cluster1",
		token: token(t, c1, "sample", "hello-istio", "istio-ca"), root: files[ca.RootCertFile],
		// Istio's bootstrap keeps few stats; the test reads the TLS
		// handshakes of its outbound cluster.
		statsSuffixes: []string{"ssl.handshake"}})
	lab.Start(istioNS, 0, filepath.Join(dir, "hello-istio.app.log"), filepath.Join(dir, "helloworld"),
		"-version", "istio", "-instance", "hello-istio")

	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range []string{"sleep", "helloworld"} {
				t.Logf("--- %s agent log:\n%s\n--- %s envoy log:\n%s", w, tail(filepath.Join(dir, w+".agent.log")),
					w, tail(filepath.Join(dir, w+".proxy", "envoy.log")))
			}
			t.Logf("--- hello-istio pilot-agent log:\n%s", tail(istioLog))
		}
	})
	admin := func(w, path string) string {
		out, _ := lab.Try(ns[w], 0, "curl", "-s", "-m", "2", "http://127.0.0.1:15000"+path)
		return out
	}
	for _, w := range []string{"sleep", "helloworld", "hello-istio"} {
		waitFor(t, 30*time.Second, w+"'s Envoy to get its config", func() bool {
			c := admin(w, "/clusters")
			ok := strings.Contains(c, hw+"::"+hwIP+":5000::") &&
				strings.Contains(c, "outbound|5000||hello-istio.sample.svc.cluster.local::"+istioIP+":5000::")
			if w != "sleep" { // serving pods get an inbound listener
				ok = ok && strings.Contains(admin(w, "/listeners"), "virtualInbound")
			}
			return ok
		})
	}
	t.Logf("every Envoy has its config %s after the start", time.Since(start).Round(time.Millisecond))

	// Both directions: the Istio sidecar calls helloworld, sleep calls
	// the Istio sidecar's workload. The first request may still find the
	// SDS secrets on their way.
	call := func(from, url, want string) {
		t.Helper()
		var out string
		waitFor(t, 15*time.Second, from+" to get "+want+" from "+url, func() bool {
			out, _ = lab.Try(ns[from], 0, "curl", "-s", "-f", "-m", "5", url)
			return strings.TrimSpace(out) == want
		})
		for i := range 5 {
			out, err := lab.Try(ns[from], 0, "curl", "-s", "-f", "-m", "5", url)
			if err != nil || strings.TrimSpace(out) != want {
				t.Fatalf("%s, request %d to %s: %v: %q, want %q", from, i, url, err, out, want)
			}
		}
	}
	call("hello-istio", "http://helloworld.sample:5000/hello", "Hello version: v1, instance: helloworld")
	call("sleep", "http://hello-istio.sample:5000/hello", "Hello version: istio, instance: hello-istio")

	// The access logs. Each server saw its caller's SPIFFE ID: mutual
	// TLS, the client's certificate verified against the mesh root. Each
	// client's cluster accepts only the server's service account's SAN
	// (checked below in its config), so an answer is proof of that one.
	hwOut := "upstream_cluster=" + hw
	istioOut := "upstream_cluster=outbound|5000||hello-istio.sample.svc.cluster.local"
	waitLogLine(t, "the Istio sidecar's outbound call", istioLog, `"GET /hello HTTP/1.1" 200`, hwOut,
		"upstream_host="+hwIP+":5000", "downstream_local="+hwClusterIP+":5000")
	waitLogLine(t, "helloworld's Horizon sidecar, inbound from the Istio sidecar", filepath.Join(dir, "helloworld.proxy", "envoy.log"),
		`"GET /hello HTTP/1.1" 200`, "upstream_cluster=inbound|5000||", "peer_san="+istioSAN)
	waitLogLine(t, "sleep's Horizon sidecar, outbound to the Istio sidecar", filepath.Join(dir, "sleep.proxy", "envoy.log"),
		`"GET /hello HTTP/1.1" 200`, istioOut, "upstream_host="+istioIP+":5000", "downstream_local="+istioClusterIP+":5000")
	waitLogLine(t, "the Istio sidecar, inbound from sleep", istioLog,
		`"GET /hello HTTP/1.1" 200`, "upstream_cluster=inbound|5000||", "downstream_local="+istioIP+":5000", "peer_san="+sleepSAN)
	for _, c := range []struct{ from, cluster, san string }{
		{"hello-istio", hw, "spiffe://cluster.local/ns/sample/sa/helloworld"},
		{"sleep", "outbound|5000||hello-istio.sample.svc.cluster.local", istioSAN},
	} {
		if got := upstreamSANs(t, admin(c.from, "/config_dump"), c.cluster); len(got) != 1 || got[0] != c.san {
			t.Errorf("%s's cluster %s accepts the server SANs %v, want [%s]", c.from, c.cluster, got, c.san)
		}
		stat := "cluster." + c.cluster + ".ssl.handshake"
		if n := statValue(admin(c.from, "/stats?filter=ssl.handshake"), stat); n < 1 {
			t.Errorf("%s's Envoy: %s = %d, want TLS handshakes", c.from, stat, n)
		} else {
			t.Logf("%s's Envoy: %s = %d", c.from, stat, n)
		}
	}

	// Without a mesh certificate the Istio sidecar's workload is not
	// reachable: the proxy uid is not captured in sleep's namespace, so
	// this is plain HTTP to the pod, captured by Istio's rules into
	// Horizon's inbound listener, which wants mutual TLS.
	if out, err := lab.Try(ns["sleep"], proxyUID, "curl", "-s", "-f", "-m", "3", "http://"+istioIP+":5000/hello"); err == nil {
		t.Errorf("a plaintext client was answered by the Istio sidecar's workload: %s", out)
	}

	// Nobody rejected anything; the Istio sidecar's one stream is its
	// token's, every type it asked for acknowledged.
	if st := admin("hello-istio", "/stats?filter=update_rejected"); !containsOnlyZeros(st) ||
		statValue(st, "cluster_manager.cds.update_rejected") != 0 || statValue(st, "listener_manager.lds.update_rejected") != 0 {
		t.Errorf("the Istio sidecar's Envoy rejected updates (or keeps no such stats):\n%s", st)
	}
	body, streams, istio := syncStreams(t, d, "sidecar~"+istioIP+"~hello-istio.sample~")
	if len(streams) != 3 || len(istio) != 1 {
		t.Fatalf("want 3 streams, one of them the Istio sidecar's:\n%s", body)
	}
	if want := "token of system:serviceaccount:sample:hello-istio (cluster cluster1)"; istio[0].Identity != want || !istio[0].Secure {
		t.Errorf("the Istio sidecar's stream: identity %q (want %q), secure %v", istio[0].Identity, want, istio[0].Secure)
	}
	if !allAcked(istio[0], []string{typeCDS, typeEDS, typeLDS, typeRDS}) {
		t.Errorf("the Istio sidecar's stream is not acknowledged: %s", describeStream(istio[0]))
	}
	t.Logf("the Istio sidecar's stream: %s; test took %s", describeStream(istio[0]), time.Since(start).Round(time.Millisecond))
}

// istioPod is an Istio-injected pod of namespace sample as the test runs it
// in a netlab namespace: its istio-init and istio-proxy containers.
type istioPod struct {
	// agent and template are pilot-agent and Istio's bootstrap template,
	// both where the proxy uid can read them; envoy is the pinned Envoy.
	agent, envoy, template string
	name, sa, ip           string
	// cluster and network are ISTIO_META_CLUSTER_ID and (if set)
	// ISTIO_META_NETWORK, as the injector gives them.
	cluster, network string
	token            string // a TokenRequest token, audience istio-ca
	root             []byte // istio-ca-root-cert's root-cert.pem
	// dnsCapture sets ISTIO_META_DNS_CAPTURE=true for istio-init (which
	// istio-iptables reads as --redirect-dns: DNS to the nameservers of
	// the pod's resolv.conf goes to the agent's DNS proxy on 15053) and
	// for the agent (which then asks for the NameTable and runs that
	// proxy).
	dnsCapture    bool
	statsSuffixes []string // proxyStatsMatcher's inclusionSuffixes
}

// startIstioPod does in namespace ns what an Istio-injected pod's
// containers do: istio-init (Istio's own capture, with the injector's
// default arguments), then istio-proxy: pilot-agent as the proxy uid in
// dir/NAME.proxy, holding what such a pod mounts, the discovery address the
// istiod Service gives (ns's hosts file must point istiod.istio-system.svc
// at Horizon). The app, if any, is the caller's. It returns pilot-agent's
// log, which holds its Envoy's access log too.
func startIstioPod(t *testing.T, lab *netlab.Lab, ns, dir string, p istioPod) string {
	t.Helper()
	initArgs := []string{"env"}
	if p.dnsCapture {
		initArgs = append(initArgs, "ISTIO_META_DNS_CAPTURE=true")
	}
	initArgs = append(initArgs, p.agent, "istio-iptables", "-p", "15001", "-z", "15006", "-u", fmt.Sprint(proxyUID),
		"-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020")
	lab.In(ns, initArgs...)
	work := filepath.Join(dir, p.name+".proxy")
	write := istioPodFiles(t, work, p.token, p.root)
	write("etc/istio/pod/labels", []byte("app=\""+p.name+"\"\nsecurity.istio.io/tlsMode=\"istio\"\n"))
	write("etc/istio/pod/annotations", []byte("sidecar.istio.io/status=\"{}\"\n"))
	must(t, os.MkdirAll(filepath.Join(work, "etc/istio/proxy"), 0o755))
	must(t, filepath.Walk(work, func(f string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(f, proxyUID, proxyUID)
	}))
	pc := map[string]any{
		"discoveryAddress":           "istiod.istio-system.svc:15012",
		"binaryPath":                 p.envoy,
		"configPath":                 "./etc/istio/proxy",
		"proxyBootstrapTemplatePath": p.template,
		"concurrency":                1,
		"drainDuration":              "1s",
		"terminationDrainDuration":   "0s",
	}
	if len(p.statsSuffixes) > 0 {
		pc["proxyStatsMatcher"] = map[string]any{"inclusionSuffixes": p.statsSuffixes}
	}
	proxyConfig, err := json.Marshal(pc)
	must(t, err)
	env := []string{"env", "-i", "-C", work,
		"PATH=" + os.Getenv("PATH"), "HOME=" + work,
		"PROXY_CONFIG=" + string(proxyConfig),
		"POD_NAME=" + p.name, "POD_NAMESPACE=sample", "SERVICE_ACCOUNT=" + p.sa, "INSTANCE_IP=" + p.ip,
		"JWT_POLICY=third-party-jwt", "ISTIO_META_CLUSTER_ID=" + p.cluster}
	if p.network != "" {
		env = append(env, "ISTIO_META_NETWORK="+p.network)
	}
	if p.dnsCapture {
		env = append(env, "ISTIO_META_DNS_CAPTURE=true")
	}
	logPath := filepath.Join(dir, p.name+".pilot-agent.log")
	lab.Start(ns, proxyUID, logPath, append(env, p.agent, "proxy", "sidecar", "--proxyLogLevel", "warning")...)
	return logPath
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	must(t, err)
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	must(t, out.Close())
}

// waitLogLine waits up to 15 s for a line of the log at path that holds
// every one of parts, and logs the last such line as what. (Envoy writes
// its access log out every 10 s, --file-flush-interval-msec's default,
// unless 64 KiB are waiting.)
func waitLogLine(t *testing.T, what, path string, parts ...string) {
	t.Helper()
	var found string
	waitFor(t, 15*time.Second, what+" in "+filepath.Base(path), func() bool {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if containsAll(l, parts) {
				found = l
			}
		}
		return found != ""
	})
	t.Logf("%s: %s", what, found)
}

// syncStreams reads d's /debug/syncz, fails the test (not at once) for
// each type any stream has rejected, and returns the body, every stream,
// and the streams whose proxy ID begins with prefix.
func syncStreams(t *testing.T, d *discoveryProc, prefix string) (body string, streams, matching []server.StreamStatus) {
	t.Helper()
	var syncz struct {
		Streams []server.StreamStatus `json:"streams"`
	}
	body = d.get(t, "/debug/syncz")
	must(t, json.Unmarshal([]byte(body), &syncz))
	for _, st := range syncz.Streams {
		for typ, ts := range st.Types {
			if ts.LastNACK != "" || ts.NACKs > 0 {
				t.Errorf("%s rejected %s (%d times): %s", st.Proxy, typ, ts.NACKs, ts.LastNACK)
			}
		}
		if strings.HasPrefix(st.Proxy, prefix) {
			matching = append(matching, st)
		}
	}
	return body, syncz.Streams, matching
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// containsOnlyZeros: every "name: value" line of Envoy's stats has value 0.
func containsOnlyZeros(stats string) bool {
	for _, l := range strings.Split(strings.TrimSpace(stats), "\n") {
		if _, v, ok := strings.Cut(l, ": "); ok && strings.TrimSpace(v) != "0" {
			return false
		}
	}
	return true
}

// upstreamSANs are the URI SANs a cluster in Envoy's config dump accepts
// from its mutual-TLS endpoints (transport socket match tlsMode-istio).
func upstreamSANs(t *testing.T, dump, cluster string) []string {
	t.Helper()
	var d struct {
		Configs []struct {
			DynamicActiveClusters []struct {
				Cluster struct {
					Name    string `json:"name"`
					Matches []struct {
						Name            string `json:"name"`
						TransportSocket struct {
							TypedConfig struct {
								CommonTLSContext struct {
									Combined struct {
										Default struct {
											Matchers []struct {
												Matcher struct {
													Exact string `json:"exact"`
												} `json:"matcher"`
											} `json:"match_typed_subject_alt_names"`
										} `json:"default_validation_context"`
									} `json:"combined_validation_context"`
								} `json:"common_tls_context"`
							} `json:"typed_config"`
						} `json:"transport_socket"`
					} `json:"transport_socket_matches"`
				} `json:"cluster"`
			} `json:"dynamic_active_clusters"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(dump), &d); err != nil {
		t.Errorf("config dump: %v", err)
		return nil
	}
	var out []string
	for _, c := range d.Configs {
		for _, cl := range c.DynamicActiveClusters {
			if cl.Cluster.Name != cluster {
				continue
			}
			for _, m := range cl.Cluster.Matches {
				if m.Name != "tlsMode-istio" {
					continue
				}
				for _, san := range m.TransportSocket.TypedConfig.CommonTLSContext.Combined.Default.Matchers {
					out = append(out, san.Matcher.Exact)
				}
			}
		}
	}
	return out
}

// statValue is the value of the counter name in Envoy's /stats text, -1
// when absent.
func statValue(stats, name string) int {
	for _, l := range strings.Split(stats, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
