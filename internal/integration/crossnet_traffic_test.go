//go:build integration

package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTCPAndGRPCAcrossNetworks is TCP and gRPC through the east-west
// gateway, on TestAcrossIsolatedNetworks's topology: echo2, a pod in
// cluster2 (network2) with Horizon's sidecar, serves tcp-echo (port
// tcp-echo 9000: TCP) and grpc-health (port grpc 50051: gRPC, the standard
// health service); both Services exist in cluster2 only. sleep1 in
// cluster1 (network1, Horizon's sidecar) calls them:
//
//  1. TCP at the address Horizon's NDS answers for tcp-echo (its cluster2
//     ClusterIP: sleep1's sidecar has a tcp_proxy chain on it): echo2
//     answers through cluster2's gateway, over mutual TLS (echo2's sidecar
//     logs sleep's identity; sleep1's logs the gateway as upstream).
//  2. gRPC by name (grpc-health.sample:50051; HTTP chains match the port,
//     routes the name): the health check returns SERVING through the
//     gateway, HTTP/2 from sleep1's sidecar to echo2's app.
//  3. tcp-echo reachable by name without NDS: published in cluster1 as a
//     ClusterIP Service without endpoints (as the walkthrough has a user
//     publish a service only another cluster runs), its name resolving to
//     that ClusterIP in sleep1's pod; echo2 answers through the gateway.
//
// (Horizon's agent has no DNS proxy; the name through NDS and Istio's
// agent's DNS capture is TestIstioSidecarAcrossNetworks's.)
func TestTCPAndGRPCAcrossNetworks(t *testing.T) {
	start := time.Now()
	x := startCrossnet(t, crossnetOptions{Prefix: "hztg", Net1: "10.61.0", Net2: "10.62.0"})
	t.Logf("crossnet topology up in %s", time.Since(start).Round(time.Millisecond))
	lab, c1, c2, n2 := x.lab, x.c1, x.c2, x.opts.Net2
	const (
		echoIP2    = "10.96.0.70" // tcp-echo's ClusterIP in cluster2
		grpcIP2    = "10.96.0.71" // grpc-health's
		echoIP1    = "10.96.0.80" // tcp-echo's in cluster1, once published there
		echoHost   = "tcp-echo.sample.svc.cluster.local"
		grpcHost   = "grpc-health.sample.svc.cluster.local"
		echoOut    = "outbound|9000||" + echoHost
		grpcOut    = "outbound|50051||" + grpcHost
		peerSleep  = "peer_san=spiffe://cluster.local/ns/sample/sa/sleep"
		echoAnswer = "echo2/v2 "
	)
	gw2 := x.gw2Public + ":15443"

	echo2 := crossWorkload{"echo2", x.opts.Prefix + "-n2", n2 + ".12", n2 + ".1", "echo", "cluster2", "network2", "", ""}
	must(t, createSA(c2, "sample", echo2.sa))
	podOnNode(t, c2, "sample", echo2.name, echo2.ip, echo2.sa, "node2", map[string]string{"app": echo2.name})
	serviceWith(t, c2, "sample", "tcp-echo", echoIP2, "tcp-echo", 9000, nil, "")
	serviceWith(t, c2, "sample", "grpc-health", grpcIP2, "grpc", 50051, nil, "")
	endpoints(t, c2, "sample", "tcp-echo", "tcp-echo", 9000, map[string]string{echo2.name: echo2.ip})
	endpoints(t, c2, "sample", "grpc-health", "grpc", 50051, map[string]string{echo2.name: echo2.ip})
	x.addWorkload(echo2,
		[]string{"tcp-echo", "-addr", ":9000", "-instance", echo2.name, "-version", "v2"},
		[]string{"grpc-health", "-addr", ":50051", "-instance", echo2.name, "-version", "v2"})
	// sleep1's names: grpc-health at the address NDS answers (any address
	// on port 50051 reaches the HTTP chain), tcp-echo at its cluster1
	// ClusterIP (step 3; until then nothing listens there).
	lab.Hosts(x.ns["sleep1"], append([]string{grpcIP2 + " grpc-health.sample", echoIP1 + " tcp-echo.sample"}, crossnetHosts...)...)

	waitFor(t, 60*time.Second, "gw2 to pass tcp-echo and grpc-health to echo2, echo2's Envoy to listen for inbound mTLS, sleep1's to know both through gw2", func() bool {
		gw, s1 := x.admin("gw2", "/clusters"), x.admin("sleep1", "/clusters")
		return strings.Contains(gw, "outbound_.9000_._."+echoHost+"::"+echo2.ip+":9000::") &&
			strings.Contains(gw, "outbound_.50051_._."+grpcHost+"::"+echo2.ip+":50051::") &&
			strings.Contains(x.admin(echo2.name, "/listeners"), ":15006") &&
			strings.Contains(s1, echoOut+"::"+gw2+"::") && strings.Contains(s1, grpcOut+"::"+gw2+"::")
	})
	t.Logf("echo2 reachable from sleep1's Envoy %s after the start", time.Since(start).Round(time.Millisecond))
	sleepLog, echoLog := filepath.Join(x.dir, "sleep1", "envoy.log"), filepath.Join(x.dir, echo2.name, "envoy.log")

	// 1. TCP, tcp-echo only in cluster2, at the address NDS answers.
	tcpCall := func(addr, msg string) (string, error) {
		out, err := lab.Try(x.ns["sleep1"], 0, x.hello, "tcp-echo-client", addr, msg)
		return strings.TrimSpace(out), err
	}
	var out string
	var err error
	waitFor(t, 15*time.Second, "echo2 to answer sleep1 at "+echoIP2+":9000", func() bool {
		out, err = tcpCall(echoIP2+":9000", "first")
		return err == nil
	})
	for i := range 5 {
		msg := "hello " + string(rune('a'+i))
		if out, err = tcpCall(echoIP2+":9000", msg); err != nil || out != echoAnswer+msg {
			t.Fatalf("tcp-echo-client %s:9000 %q from sleep1: %v %q, want %q", echoIP2, msg, err, out, echoAnswer+msg)
		}
	}
	t.Logf("sleep1: helloworld tcp-echo-client %s:9000 'hello e': %s", echoIP2, out)
	waitLogLine(t, "sleep1's Envoy, TCP to tcp-echo through cluster2's gateway", sleepLog,
		"upstream_host="+gw2, "upstream_cluster="+echoOut, "downstream_local="+echoIP2+":9000")
	waitLogLine(t, "echo2's sidecar, TCP inbound from sleep over mutual TLS", echoLog,
		"upstream_cluster=inbound|9000||", peerSleep)

	// 2. gRPC health, by name, through the gateway over HTTP/2.
	grpcCall := func() (string, error) {
		out, err := lab.Try(x.ns["sleep1"], 0, x.hello, "grpc-health-probe", "grpc-health.sample:50051")
		return strings.TrimSpace(out), err
	}
	waitFor(t, 15*time.Second, "grpc-health to answer sleep1", func() bool {
		out, err = grpcCall()
		if err != nil {
			t.Logf("grpc-health-probe: %v %s", err, out)
		}
		return err == nil
	})
	const serving = "status: SERVING (instance: echo2/v2)"
	for i := range 5 {
		if out, err = grpcCall(); err != nil || out != serving {
			t.Fatalf("grpc-health-probe grpc-health.sample:50051 from sleep1, call %d: %v %q, want %q", i, err, out, serving)
		}
	}
	t.Logf("sleep1: helloworld grpc-health-probe grpc-health.sample:50051: %s", out)
	check := `"POST /grpc.health.v1.Health/Check HTTP/2" 200`
	waitLogLine(t, "sleep1's Envoy, the health check through cluster2's gateway", sleepLog,
		check, `"grpc-health.sample:50051"`, "upstream_host="+gw2, "upstream_cluster="+grpcOut)
	waitLogLine(t, "echo2's sidecar, the health check inbound from sleep over mutual TLS", echoLog,
		check, "upstream_cluster=inbound|50051||", peerSleep)

	// 3. tcp-echo by name: its ClusterIP published in cluster1. Before,
	// nothing in sleep1's sidecar matches that address (the connection
	// passes through to nowhere).
	if out, err := lab.Try(x.ns["sleep1"], 0, x.hello, "tcp-echo-client", "-timeout", "2s", "tcp-echo.sample:9000", "too early"); err == nil {
		t.Fatalf("tcp-echo.sample:9000 answered before tcp-echo was published in cluster1: %s", out)
	}
	serviceWith(t, c1, "sample", "tcp-echo", echoIP1, "tcp-echo", 9000, nil, "")
	published := time.Now()
	waitFor(t, 30*time.Second, "echo2 to answer sleep1 at tcp-echo.sample:9000", func() bool {
		out, err = tcpCall("tcp-echo.sample:9000", "by name")
		return err == nil && out == echoAnswer+"by name"
	})
	t.Logf("sleep1: helloworld tcp-echo-client tcp-echo.sample:9000 'by name': %s (%s after the Service was published in cluster1)",
		out, time.Since(published).Round(time.Millisecond))
	waitLogLine(t, "sleep1's Envoy, TCP to tcp-echo by its cluster1 ClusterIP, through cluster2's gateway", sleepLog,
		"upstream_host="+gw2, "upstream_cluster="+echoOut, "downstream_local="+echoIP1+":9000")

	if syncz := x.d.get(t, "/debug/syncz"); strings.Contains(syncz, "lastNACK") {
		t.Errorf("a proxy rejected config:\n%s", syncz)
	}
	t.Logf("test took %s", time.Since(start).Round(time.Millisecond))
}
