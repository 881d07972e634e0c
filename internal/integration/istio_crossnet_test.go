//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// TestIstioSidecarAcrossNetworks is issue 12's traffic test across
// networks, on TestAcrossIsolatedNetworks's topology (two API servers, two
// isolated networks, Horizon's sidecars and AUTO_PASSTHROUGH east-west
// gateways) with two Istio-injected client pods in cluster1 (network1),
// each run as TestIstioSidecarTrafficOneNetwork runs one: Istio's own
// capture, pilot-agent with Istio's bootstrap, a TokenRequest token,
// ISTIO_META_CLUSTER_ID=cluster1, ISTIO_META_NETWORK=network1.
//
//  1. istio-sleep calls helloworld.sample: v1 answers from cluster1, v2 from
//     cluster2 through cluster2's gateway (its Envoy's helloworld cluster
//     has the gateway's public address as an endpoint, v2's weight), over
//     mutual TLS end to end (v2's sidecar logs the Istio pod's identity).
//  2. istio-dns has DNS capture on (ISTIO_META_DNS_CAPTURE for istio-init,
//     which makes istio-iptables redirect DNS to the resolv.conf
//     nameserver to the agent's DNS proxy, and for the agent; the pod's
//     resolv.conf names a kube-dns address that nothing answers): its
//     agent's one stream asks for and acknowledges Istio's NameTable and
//     stays up while a Service that exists only in cluster2 (remoteonly,
//     ClusterIP 10.96.0.60, served by a new pod remote2 in network2) is
//     created; then that name, looked up with getent in the pod (glibc's
//     resolver, captured to the agent's DNS proxy), resolves to its cluster2
//     ClusterIP, and curl to it reaches remote2 through cluster2's gateway,
//     over mutual TLS.
//
// remote2's sidecar starts once remoteonly's EndpointSlice exists
// (addWorkload says why).
func TestIstioSidecarAcrossNetworks(t *testing.T) {
	pilotAgent := pilotAgentBinary(t)
	tmpl := istioBootstrapTemplate(t)
	start := time.Now()
	x := startCrossnet(t, crossnetOptions{Prefix: "hzix", Net1: "10.51.0", Net2: "10.52.0",
		SecureSANs: []string{"istiod.istio-system.svc"}})
	t.Logf("crossnet topology up (every Horizon proxy configured) in %s", time.Since(start).Round(time.Millisecond))
	lab, c1, c2, n1, n2 := x.lab, x.c1, x.c2, x.opts.Net1, x.opts.Net2
	const (
		remoteIP     = "10.96.0.60" // remoteonly's ClusterIP in cluster2
		remoteHost   = "remoteonly.sample.svc.cluster.local"
		remote       = "outbound|5000||" + remoteHost
		remoteAnswer = "Hello version: remoteonly, instance: remote2"
	)
	gw2 := x.gw2Public + ":15443"

	// The proxy uid reads pilot-agent and the template from the lab's
	// directory.
	agentBin, tmplFile := filepath.Join(x.dir, "pilot-agent"), filepath.Join(x.dir, "envoy_bootstrap.json")
	copyFile(t, pilotAgent, agentBin, 0o755)
	copyFile(t, tmpl, tmplFile, 0o644)

	// The Istio pods, on network1's segment; istiod's name is Horizon's
	// address, as for a user who points the istiod Service at Horizon.
	pods := []istioPod{
		{name: "istio-sleep", sa: "istio-sleep", ip: n1 + ".12"},
		{name: "istio-dns", sa: "istio-dns", ip: n1 + ".13", dnsCapture: true},
	}
	logs := map[string]string{}
	for _, p := range pods {
		must(t, createSA(c1, "sample", p.sa))
		podOnNode(t, c1, "sample", p.name, p.ip, p.sa, "node1", map[string]string{"app": p.name})
		ns := lab.Namespace(p.name)
		x.ns[p.name] = ns
		lab.Attach(ns, x.opts.Prefix+"-br", "eth0", p.ip+"/24")
		lab.In(ns, "ip", "route", "add", "default", "via", n1+".1")
		lab.Hosts(ns, crossnetClusterIP+" helloworld.sample", x.discoveryIP+" istiod.istio-system.svc")
		if p.dnsCapture {
			// A pod's resolv.conf; 10.96.0.10 (kube-dns) answers nobody.
			must(t, os.WriteFile(filepath.Join("/etc/netns", ns, "resolv.conf"), []byte("nameserver 10.96.0.10\n"+
				"search sample.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:1\n"), 0o644))
		}
		p.agent, p.envoy, p.template = agentBin, x.envoy, tmplFile
		p.cluster, p.network = "cluster1", "network1"
		p.token, p.root = token(t, c1, "sample", p.sa, "istio-ca"), x.files[ca.RootCertFile]
		logs[p.name] = startIstioPod(t, lab, ns, x.dir, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range pods {
				t.Logf("--- %s pilot-agent log:\n%s", p.name, tail(logs[p.name]))
			}
		}
	})
	for _, p := range pods {
		waitFor(t, 30*time.Second, p.name+"'s Envoy to know helloworld in both networks", func() bool {
			c := x.admin(p.name, "/clusters")
			return strings.Contains(c, hw+"::"+x.hwPod1+"::") && strings.Contains(c, hw+"::"+gw2+"::")
		})
	}
	t.Logf("both Istio sidecars configured %s after the start", time.Since(start).Round(time.Millisecond))

	// Horizon's view of an Istio pod's stream; exactly one.
	stream := func(p istioPod) server.StreamStatus {
		t.Helper()
		body, _, mine := syncStreams(t, x.d, "sidecar~"+p.ip+"~"+p.name+".sample~")
		if len(mine) != 1 {
			t.Fatalf("%s has %d streams, want 1:\n%s", p.name, len(mine), body)
		}
		st := mine[0]
		if want := "token of system:serviceaccount:sample:" + p.sa + " (cluster cluster1)"; st.Identity != want || !st.Secure {
			t.Errorf("%s's stream: identity %q (want %q), secure %v", p.name, st.Identity, want, st.Secure)
		}
		return st
	}
	xdsTypes := []string{typeCDS, typeEDS, typeLDS, typeRDS}
	dnsTypes := append(slices.Clone(xdsTypes), typeNameTable)
	var dnsFirst server.StreamStatus
	waitFor(t, 10*time.Second, "istio-dns's stream to acknowledge every type and the NameTable", func() bool {
		st := stream(pods[1])
		dnsFirst = st
		nt := st.Types[typeNameTable]
		return allAcked(st, dnsTypes) && nt != nil && !nt.Unsupported
	})
	t.Logf("istio-dns's stream: %s", describeStream(dnsFirst))

	// 1. The Istio sidecar reaches v2 in cluster2 through cluster2's
	// gateway, v1 directly. The calls before v2's first answer are logged:
	// in 2 of some 45 runs while this test was written, the Istio
	// sidecar's first connections to the gateway timed out (Envoy's 10 s
	// connect timeout, three in a row) while v1 answered, and the gateway
	// never saw them; not understood, hence the diagnostics on failure.
	call := func(from, url string) (string, error) {
		out, err := lab.Try(x.ns[from], 0, "curl", "-s", "-S", "-f", "-m", "5", url)
		return strings.TrimSpace(out), err
	}
	const hwURL = "http://helloworld.sample:5000/hello"
	var tries []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := call("istio-sleep", hwURL)
		if out == "Hello version: v2, instance: hw2" {
			break
		}
		tries = append(tries, fmt.Sprintf("%s %q %v", time.Now().Format("15:04:05.000"), out, err))
		if time.Now().After(deadline) {
			for _, w := range []string{"istio-sleep", "sleep1"} {
				t.Logf("%s's /clusters, %s to cluster2's gateway:\n%s", w, hw, grepLines(x.admin(w, "/clusters"), hw+"::"+gw2+"::"))
			}
			t.Logf("gw2's /clusters for helloworld:\n%s", grepLines(x.admin("gw2", "/clusters"), hwSNI+"::"))
			// Where a connection to the gateway stands: the pod's
			// sockets and neighbours, network1's router (its NAT
			// counts the connections it forwarded), gw2's sockets.
			for _, c := range [][]string{
				{x.ns["istio-sleep"], "ss", "-tanpi"}, {x.ns["istio-sleep"], "ip", "neigh"},
				{x.opts.Prefix + "-br", "ip", "neigh"}, {x.opts.Prefix + "-br", "iptables", "-t", "nat", "-L", "-v", "-n"},
				{x.ns["gw2"], "ss", "-tanp"},
			} {
				out, _ := lab.Try(c[0], 0, c[1:]...)
				t.Logf("%v:\n%s", c[1:], out)
			}
			t.Fatalf("istio-sleep never got v2's answer in 30 s; tries:\n%s", strings.Join(tries, "\n"))
		}
	}
	if len(tries) > 0 {
		t.Logf("istio-sleep's calls before v2's first answer: %s", strings.Join(tries, "; "))
	}
	seen := map[string]int{}
	for i := range 40 {
		out, err := call("istio-sleep", hwURL)
		if err != nil {
			t.Fatalf("istio-sleep, request %d: %v %s", i, err, out)
		}
		seen[out]++
	}
	t.Logf("istio-sleep (Istio sidecar, network1), 40 requests to helloworld.sample:5000: %v", seen)
	if seen["Hello version: v1, instance: hw1"] < 8 || seen["Hello version: v2, instance: hw2"] < 8 || len(seen) != 2 {
		t.Errorf("want v1 and v2 at least 8 times each, nothing else: %v", seen)
	}
	for _, l := range strings.Split(x.admin("istio-sleep", "/clusters"), "\n") {
		if strings.HasPrefix(l, hw+"::") && strings.Contains(l, "::weight::") {
			t.Logf("istio-sleep's /clusters: %s", l)
		}
	}
	waitLogLine(t, "istio-sleep's Envoy, a call through cluster2's gateway", logs["istio-sleep"], `"GET /hello HTTP/1.1" 200`,
		"upstream_host="+gw2, "upstream_cluster="+hw, "downstream_local="+crossnetClusterIP+":5000")
	waitLogLine(t, "istio-sleep's Envoy, a call to v1", logs["istio-sleep"], `"GET /hello HTTP/1.1" 200`,
		"upstream_host="+x.hwPod1, "upstream_cluster="+hw)
	waitLogLine(t, "v2's Horizon sidecar, inbound from the Istio sidecar", filepath.Join(x.dir, "hw2", "envoy.log"),
		`"GET /hello HTTP/1.1" 200`, "upstream_cluster=inbound|5000||", "peer_san=spiffe://cluster.local/ns/sample/sa/istio-sleep")
	if st := stream(pods[0]); !allAcked(st, xdsTypes) {
		t.Errorf("istio-sleep's stream is not acknowledged: %s", describeStream(st))
	}

	// 2. A Service only cluster2 has, created now: its name resolves in
	// istio-dns's pod (from Horizon's NDS: kube-dns does not answer,
	// cluster1 has no such Service) and its HTTP port answers through the
	// gateway.
	lookups := []string{remoteHost + ".", "remoteonly.sample"}
	// (Only the absolute name: the short one would wait for kube-dns once
	// per search domain.)
	if out, err := lab.Try(x.ns["istio-dns"], 0, "getent", "ahostsv4", lookups[0]); err == nil {
		t.Fatalf("%s resolves before any cluster has it: %s", lookups[0], out)
	}
	// remoteonly: a Service, pod and EndpointSlice in cluster2 only, its
	// workload (remote2, helloworld reporting "remoteonly") started with
	// Horizon's sidecar in network2 once its EndpointSlice exists.
	remote2 := crossWorkload{"remote2", x.opts.Prefix + "-n2", n2 + ".12", n2 + ".1", "remoteonly", "cluster2", "network2", "remoteonly", ""}
	must(t, createSA(c2, "sample", remote2.sa))
	podOnNode(t, c2, "sample", remote2.name, remote2.ip, remote2.sa, "node2", map[string]string{"app": remote2.name})
	serviceWith(t, c2, "sample", "remoteonly", remoteIP, "http", 5000, nil, "")
	endpoints(t, c2, "sample", "remoteonly", "http", 5000, map[string]string{remote2.name: remote2.ip})
	created := time.Now()
	x.addWorkload(remote2)
	for _, name := range lookups {
		var out string
		waitFor(t, 15*time.Second, name+" to resolve to "+remoteIP+" in istio-dns's pod", func() bool {
			out, _ = lab.Try(x.ns["istio-dns"], 0, "getent", "ahostsv4", name)
			return resolvesOnlyTo(out, remoteIP)
		})
		t.Logf("getent ahostsv4 %s in istio-dns's pod, %s after the Service was created in cluster2:\n%s", name,
			time.Since(created).Round(time.Millisecond), strings.TrimSpace(out))
	}
	// The lookups went through Istio's capture: the DNS redirect of the
	// resolv.conf nameserver to the agent's port counted them.
	if rules, _ := lab.Try(x.ns["istio-dns"], 0, "iptables-save", "-c", "-t", "nat"); !capturedDNS(rules) {
		t.Errorf("istio-dns's DNS redirect to 15053 counted no packets:\n%s", rules)
	} else {
		t.Logf("istio-dns's DNS capture: %s", grepLines(rules, "udp"))
	}
	waitFor(t, 30*time.Second, "istio-dns's Envoy to know remoteonly through cluster2's gateway, gw2 to pass it to remote2", func() bool {
		return strings.Contains(x.admin("istio-dns", "/clusters"), remote+"::"+gw2+"::") &&
			strings.Contains(x.admin("gw2", "/clusters"), "outbound_.5000_._."+remoteHost+"::"+remote2.ip+":5000::") &&
			strings.Contains(x.admin(remote2.name, "/listeners"), ":15006")
	})
	t.Logf("istio-dns's /clusters: %s", grepLines(x.admin("istio-dns", "/clusters"), remote+"::"+gw2+"::weight::"))
	for _, url := range []string{"http://remoteonly.sample:5000/hello", "http://" + remoteHost + ":5000/hello"} {
		var out string
		waitFor(t, 15*time.Second, "istio-dns to get remoteonly's answer from "+url, func() bool {
			out, _ = call("istio-dns", url)
			return out == remoteAnswer
		})
		for i := range 5 {
			if out, err := call("istio-dns", url); err != nil || out != remoteAnswer {
				t.Fatalf("istio-dns, request %d to %s: %v %q, want %q", i, url, err, out, remoteAnswer)
			}
		}
		t.Logf("istio-dns: curl %s: %s", url, out)
	}
	waitLogLine(t, "istio-dns's Envoy, a call to remoteonly", logs["istio-dns"], `"GET /hello HTTP/1.1" 200`,
		"upstream_host="+gw2, "upstream_cluster="+remote, "downstream_local="+remoteIP+":5000")
	waitLogLine(t, "remote2's Horizon sidecar, inbound from istio-dns", filepath.Join(x.dir, remote2.name, "envoy.log"),
		`"GET /hello HTTP/1.1" 200`, "upstream_cluster=inbound|5000||", "peer_san=spiffe://cluster.local/ns/sample/sa/istio-dns")

	// The agent's stream stayed up through the pushes, the new NameTable
	// acknowledged on it; nobody rejected anything.
	var dnsLater server.StreamStatus
	waitFor(t, 10*time.Second, "istio-dns's new NameTable acknowledged", func() bool {
		st := stream(pods[1])
		dnsLater = st
		return allAcked(st, dnsTypes) && st.Types[typeNameTable].Acked != dnsFirst.Types[typeNameTable].Acked
	})
	if dnsLater.StreamID != dnsFirst.StreamID || !dnsLater.Connected.Equal(dnsFirst.Connected) {
		t.Errorf("istio-dns's stream did not stay up: #%d (connected %s), then #%d (connected %s)",
			dnsFirst.StreamID, dnsFirst.Connected, dnsLater.StreamID, dnsLater.Connected)
	}
	t.Logf("istio-dns's stream, same as before: %s", describeStream(dnsLater))
	for _, p := range pods {
		if st := x.admin(p.name, "/stats?filter=update_rejected"); !containsOnlyZeros(st) {
			t.Errorf("%s's Envoy rejected updates:\n%s", p.name, st)
		}
	}
	t.Logf("test took %s", time.Since(start).Round(time.Millisecond))
}

// resolvesOnlyTo: getent ahostsv4's output names ip and no other address.
func resolvesOnlyTo(getent, ip string) bool {
	lines := strings.Split(strings.TrimSpace(getent), "\n")
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 0 || f[0] != ip {
			return false
		}
	}
	return getent != ""
}

// grepLines are the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// capturedDNS: iptables-save -c's nat table has a UDP rule redirecting
// port 53 to the agent's DNS port (15053) that matched packets.
func capturedDNS(rules string) bool {
	for _, l := range strings.Split(rules, "\n") {
		if !containsAll(l, []string{"-p udp", "--dport 53", "--to-ports 15053"}) || !strings.HasPrefix(l, "[") {
			continue
		}
		if n, _, ok := strings.Cut(strings.TrimPrefix(l, "["), ":"); ok && n != "0" {
			return true
		}
	}
	return false
}
