//go:build integration

package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/xds/server"
)

// The resource types a sidecar's Envoy asks for, and Istio's name table.
const (
	typeCDS       = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeEDS       = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	typeLDS       = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRDS       = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeNameTable = "type.googleapis.com/istio.networking.nds.v1.NameTable"
)

// istioBootstrapTemplate is Istio's own Envoy bootstrap template, the one
// its proxy image installs, from the istio.io/istio pinned in tools/istiod.
func istioBootstrapTemplate(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", "istio.io/istio")
	cmd.Dir = filepath.Join("..", "..", "tools", "istiod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list istio.io/istio in tools/istiod: %v", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "tools", "packaging", "common", "envoy_bootstrap.json")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("Istio's bootstrap template: %v", err)
	}
	return p
}

// TestIstioSidecarGetsHorizonsConfig: Istio's own sidecar — `pilot-agent
// proxy sidecar` with the pinned Envoy and Istio's own bootstrap template
// (xds-grpc to the agent, sds-grpc served by the agent), as an injected
// sleep pod runs it: a TokenRequest token (audience istio-ca),
// ISTIO_META_CLUSTER_ID, the istiod address pointing at `horizon
// discovery`'s TLS port — is served by Horizon, over delta xDS (the agent's
// default) and state of the world: Envoy gets the walkthrough's clusters,
// endpoints, listeners and routes and accepts them all (no NACK in
// /debug/syncz, none in Envoy's stats); the stream authenticated with the
// token stays up through a later push; the mesh certificate the agent got
// from Horizon's CA reaches Envoy over the agent's SDS (default, ROOTCA),
// which the TLS listeners and clusters need to become active. With DNS
// capture on the agent also asks for Istio's NameTable on the same stream:
// the stream must survive that, and once Horizon answers it (NDS) the
// agent's DNS proxy answers helloworld's names with its ClusterIP.
func TestIstioSidecarGetsHorizonsConfig(t *testing.T) {
	agent, envoy := pilotAgentBinary(t), envoyBinary(t)
	tmpl := istioBootstrapTemplate(t)
	start := time.Now()
	c1, files := istioSampleCluster(t)
	must(t, createSA(c1, "sample", "sleep"))
	must(t, createSA(c1, "sample", "helloworld"))
	// The walkthrough's sample namespace in cluster1: helloworld (v1) and
	// sleep, each with its pod and EndpointSlice.
	serviceWith(t, c1, "sample", "helloworld", "", "http", 5000, nil, "")
	podWith(t, c1, "sample", "helloworld-v1", "10.1.0.5", "helloworld", map[string]string{"app": "helloworld", "version": "v1"})
	hwPods := map[string]string{"helloworld-v1": "10.1.0.5"}
	endpoints(t, c1, "sample", "helloworld", "http", 5000, hwPods)
	serviceWith(t, c1, "sample", "sleep", "", "http", 80, nil, "")
	podWith(t, c1, "sample", "sleep-0", "10.1.0.9", "sleep", map[string]string{"app": "sleep"})
	endpoints(t, c1, "sample", "sleep", "http", 80, map[string]string{"sleep-0": "10.1.0.9"})

	svc, err := c1.Client.CoreV1().Services("sample").Get(ctx, "helloworld", metav1.GetOptions{})
	must(t, err)
	hwIP := svc.Spec.ClusterIP

	securePort := freePort(t)
	// The TLS port keeps its default SANs (istiod.istio-system.svc among
	// them), as for a user who points the istiod name at Horizon.
	d := startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr = "127.0.0.1:" + strconv.Itoa(securePort)
	})
	t.Logf("API server and discovery ready in %s", time.Since(start).Round(time.Millisecond))

	for i, tt := range []struct {
		name       string
		delta, dns bool
	}{
		{"delta", true, false},
		{"sotw", false, false},
		{"delta with DNS capture", true, true},
		{"sotw with DNS capture", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			caseStart := time.Now()
			sc := startIstioSidecar(t, istioSidecarConfig{agent: agent, envoy: envoy, template: tmpl,
				discoveryPort: securePort, token: token(t, c1, "sample", "sleep", "istio-ca"),
				root: files[ca.RootCertFile], delta: tt.delta, dnsCapture: tt.dns, d: d})

			// Everything Envoy needs from Horizon, and from the agent's SDS.
			waitFor(t, 30*time.Second, "Envoy to have Horizon's config and the agent's secrets active", func() bool {
				sc.checkAlive(t)
				return sc.configComplete(t) == ""
			})
			// Endpoints, from EDS.
			waitFor(t, 10*time.Second, "helloworld's endpoint in Envoy's /clusters", func() bool {
				return strings.Contains(sc.admin("/clusters"), hw+"::10.1.0.5:5000::")
			})
			types := []string{typeCDS, typeEDS, typeLDS, typeRDS}
			if tt.dns {
				types = append(types, typeNameTable)
			}
			var first server.StreamStatus
			waitFor(t, 10*time.Second, "Horizon to see its "+strings.Join(types, ", ")+" acknowledged", func() bool {
				st, ok := sc.stream(t)
				first = st
				return ok && allAcked(st, types)
			})
			t.Logf("config complete and acknowledged %s after pilot-agent started; Horizon's stream: %s",
				time.Since(sc.started).Round(time.Millisecond), describeStream(first))
			sc.checkStream(t, first, tt.delta, tt.dns)
			if got := sc.rejected(); got != "" {
				t.Errorf("Envoy rejected updates: %s", got)
			}
			if nt := first.Types[typeNameTable]; nt != nil && !nt.Unsupported {
				// Horizon serves NDS: the agent's DNS proxy answers the
				// service names from Horizon's table.
				for _, name := range []string{"helloworld.sample.svc.cluster.local", "helloworld.sample"} {
					var got []string
					waitFor(t, 5*time.Second, "the agent's DNS proxy to answer "+name+" with "+hwIP, func() bool {
						got = sc.lookup(name)
						return slices.Equal(got, []string{hwIP})
					})
				}
			}

			// The stream stays up: a later push reaches Envoy on the
			// same stream, acknowledged.
			ip := fmt.Sprintf("10.1.0.%d", 20+i)
			podWith(t, c1, "sample", "helloworld-x"+strconv.Itoa(i), ip, "helloworld", map[string]string{"app": "helloworld", "version": "v1"})
			hwPods["helloworld-x"+strconv.Itoa(i)] = ip
			endpoints(t, c1, "sample", "helloworld", "http", 5000, hwPods)
			waitFor(t, 10*time.Second, "the new endpoint "+ip+" in Envoy's /clusters", func() bool {
				sc.checkAlive(t)
				return strings.Contains(sc.admin("/clusters"), hw+"::"+ip+":5000::")
			})
			var later server.StreamStatus
			waitFor(t, 10*time.Second, "Horizon to see the push acknowledged", func() bool {
				st, ok := sc.stream(t)
				later = st
				return ok && allAcked(st, types) && st.Types[typeEDS].Acked != first.Types[typeEDS].Acked
			})
			if later.StreamID != first.StreamID || !later.Connected.Equal(first.Connected) {
				t.Errorf("the agent's stream did not stay up: stream %d (connected %s), then %d (connected %s)",
					first.StreamID, first.Connected, later.StreamID, later.Connected)
			}
			sc.checkStream(t, later, tt.delta, tt.dns)
			if msg := sc.configComplete(t); msg != "" {
				t.Errorf("after the push: %s", msg)
			}
			if got := sc.rejected(); got != "" {
				t.Errorf("Envoy rejected updates: %s", got)
			}
			t.Logf("push acknowledged on the same stream: %s; case took %s", describeStream(later),
				time.Since(caseStart).Round(time.Millisecond))
		})
	}
}

type istioSidecarConfig struct {
	agent, envoy, template string
	discoveryPort          int
	token                  string
	root                   []byte
	delta, dnsCapture      bool
	d                      *discoveryProc
}

// istioSidecar is a running pilot-agent with its Envoy.
type istioSidecar struct {
	cfg       istioSidecarConfig
	adminPort int
	logPath   string
	dnsAddr   string // the agent's DNS proxy
	exited    chan error
	started   time.Time
}

// startIstioSidecar runs `pilot-agent proxy sidecar` as an Istio-injected
// sleep pod (sample/sleep, 10.1.0.9) would, in a directory of its own
// holding what such a pod mounts, with every port it or its Envoy binds
// on the host chosen free (Horizon's listeners bind 15001 and 15006 with
// SO_REUSEPORT, as Envoy does by default). Cleanup stops it and waits
// until Horizon has seen its stream close.
func startIstioSidecar(t *testing.T, cfg istioSidecarConfig) *istioSidecar {
	t.Helper()
	work := t.TempDir()
	write := istioPodFiles(t, work, cfg.token, cfg.root)
	// The downward-API files an injected pod has.
	write("etc/istio/pod/labels", []byte("app=\"sleep\"\nsecurity.istio.io/tlsMode=\"istio\"\n"))
	write("etc/istio/pod/annotations", []byte("sidecar.istio.io/status=\"{}\"\n"))
	must(t, os.MkdirAll(filepath.Join(work, "etc/istio/proxy"), 0o755))

	s := &istioSidecar{cfg: cfg, adminPort: freePort(t), logPath: filepath.Join(work, "pilot-agent.log"), exited: make(chan error, 1)}
	statusPort, envoyStatus, prometheus := freePort(t), freePort(t), freePort(t)
	s.dnsAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	proxyConfig, err := json.Marshal(map[string]any{
		// What the istiod Service would give; the agent checks the
		// name istiod.istio-system.svc on it.
		"discoveryAddress":           "localhost:" + strconv.Itoa(cfg.discoveryPort),
		"binaryPath":                 cfg.envoy,
		"configPath":                 "./etc/istio/proxy", // the XDS socket too: relative keeps it short
		"proxyBootstrapTemplatePath": cfg.template,
		"proxyAdminPort":             s.adminPort,
		"statusPort":                 statusPort,
		"concurrency":                1,
		"drainDuration":              "1s",
		"terminationDrainDuration":   "0s",
	})
	must(t, err)
	logFile, err := os.Create(s.logPath)
	must(t, err)
	cmd := exec.Command(cfg.agent, "proxy", "sidecar", "--proxyLogLevel", "warning")
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Envoy too, on cleanup
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + work,
		"PROXY_CONFIG=" + string(proxyConfig),
		"POD_NAME=sleep-0", "POD_NAMESPACE=sample", "SERVICE_ACCOUNT=sleep", "INSTANCE_IP=10.1.0.9",
		"JWT_POLICY=third-party-jwt",
		"ISTIO_META_CLUSTER_ID=cluster1",
		"ENVOY_STATUS_PORT=" + strconv.Itoa(envoyStatus),
		"ENVOY_PROMETHEUS_PORT=" + strconv.Itoa(prometheus),
		"DNS_PROXY_ADDR=" + s.dnsAddr,
		"ISTIO_DELTA_XDS=" + strconv.FormatBool(cfg.delta),
		"ISTIO_META_DNS_CAPTURE=" + strconv.FormatBool(cfg.dnsCapture),
	}
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	logFile.Close()
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		var exit error
		select {
		case exit = <-s.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("pilot-agent did not stop within 10 s of SIGTERM")
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			exit = <-s.exited
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // whatever of its group is left (Envoy)
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			t.Logf("pilot-agent (exit: %v) log:\n%s", exit, lastLines(b, 80))
		}
		// Horizon sees the stream go, so the next case finds only its own.
		waitFor(t, 10*time.Second, "Horizon to see the agent's stream close", func() bool {
			_, ok := s.stream(t)
			return !ok
		})
	})
	return s
}

// checkAlive fails the test at once if pilot-agent has exited.
func (s *istioSidecar) checkAlive(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.exited:
		s.exited <- err
		t.Fatalf("pilot-agent exited: %v", err)
	default:
	}
}

func (s *istioSidecar) admin(path string) string {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(s.adminPort) + path)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// configComplete returns what is still missing from Envoy's config dump,
// "" when it has: Horizon's helloworld cluster active (its TLS needs the
// SDS secrets), both of Horizon's listeners active (virtualInbound's TLS
// needs them too), the route for port 5000, and the agent's default and
// ROOTCA secrets, the former for spiffe://cluster.local/ns/sample/sa/sleep.
func (s *istioSidecar) configComplete(t *testing.T) string {
	var dump struct {
		Configs []struct {
			Type                  string `json:"@type"`
			DynamicActiveClusters []struct {
				Cluster struct {
					Name string `json:"name"`
				} `json:"cluster"`
			} `json:"dynamic_active_clusters"`
			DynamicListeners []struct {
				Name         string          `json:"name"`
				ActiveState  json.RawMessage `json:"active_state"`
				WarmingState json.RawMessage `json:"warming_state"`
				ErrorState   json.RawMessage `json:"error_state"`
			} `json:"dynamic_listeners"`
			DynamicRouteConfigs []struct {
				RouteConfig struct {
					Name string `json:"name"`
				} `json:"route_config"`
			} `json:"dynamic_route_configs"`
			DynamicActiveSecrets []struct {
				Name   string `json:"name"`
				Secret struct {
					TLSCertificate *struct {
						CertificateChain struct {
							InlineBytes string `json:"inline_bytes"`
						} `json:"certificate_chain"`
					} `json:"tls_certificate"`
					ValidationContext *struct {
						TrustedCA struct {
							InlineBytes string `json:"inline_bytes"`
						} `json:"trusted_ca"`
					} `json:"validation_context"`
				} `json:"secret"`
			} `json:"dynamic_active_secrets"`
		} `json:"configs"`
	}
	raw := s.admin("/config_dump")
	if raw == "" {
		return "Envoy's admin is not answering yet"
	}
	if err := json.Unmarshal([]byte(raw), &dump); err != nil {
		return "config dump: " + err.Error()
	}
	var clusters, listeners, routes, secrets []string
	var missing []string
	for _, c := range dump.Configs {
		for _, cl := range c.DynamicActiveClusters {
			clusters = append(clusters, cl.Cluster.Name)
		}
		for _, l := range c.DynamicListeners {
			if len(l.ErrorState) > 0 {
				missing = append(missing, "listener "+l.Name+" failed: "+string(l.ErrorState))
			}
			if len(l.ActiveState) > 0 && len(l.WarmingState) == 0 {
				listeners = append(listeners, l.Name)
			}
		}
		for _, r := range c.DynamicRouteConfigs {
			routes = append(routes, r.RouteConfig.Name)
		}
		for _, sec := range c.DynamicActiveSecrets {
			switch {
			case sec.Name == "default" && sec.Secret.TLSCertificate != nil:
				chain, err := base64.StdEncoding.DecodeString(sec.Secret.TLSCertificate.CertificateChain.InlineBytes)
				if err == nil && len(chain) > 0 {
					if cs := certs(t, chain); len(cs[0].URIs) == 1 && cs[0].URIs[0].String() == "spiffe://cluster.local/ns/sample/sa/sleep" {
						secrets = append(secrets, sec.Name)
					}
				}
			case sec.Name == "ROOTCA" && sec.Secret.ValidationContext != nil:
				if len(sec.Secret.ValidationContext.TrustedCA.InlineBytes) > 0 {
					secrets = append(secrets, sec.Name)
				}
			}
		}
	}
	for _, want := range []struct {
		kind, name string
		have       []string
	}{
		{"active cluster", hw, clusters},
		{"active listener", "virtualOutbound", listeners},
		{"active listener", "virtualInbound", listeners},
		{"route", "5000", routes},
		{"SDS secret (spiffe://cluster.local/ns/sample/sa/sleep)", "default", secrets},
		{"SDS secret", "ROOTCA", secrets},
	} {
		if !slices.Contains(want.have, want.name) {
			missing = append(missing, want.kind+" "+want.name)
		}
	}
	if len(missing) > 0 {
		return "missing " + strings.Join(missing, ", ")
	}
	return ""
}

// lookup asks the agent's DNS proxy for name's addresses.
func (s *istioSidecar) lookup(name string) []string {
	r := &net.Resolver{PreferGo: true, Dial: func(c context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(c, "udp", s.dnsAddr)
	}}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, _ := r.LookupHost(c, name)
	return addrs
}

// rejected names Envoy's nonzero xDS rejection counters.
func (s *istioSidecar) rejected() string {
	var bad []string
	for _, line := range strings.Split(s.admin("/stats?filter=update_rejected"), "\n") {
		name, value, ok := strings.Cut(line, ": ")
		if ok && strings.TrimSpace(value) != "0" {
			bad = append(bad, name+"="+value)
		}
	}
	return strings.Join(bad, ", ")
}

// stream returns Horizon's view of this sidecar's xDS stream; it fails the
// test if there is more than one.
func (s *istioSidecar) stream(t *testing.T) (server.StreamStatus, bool) {
	t.Helper()
	var syncz struct {
		Streams []server.StreamStatus `json:"streams"`
	}
	body := s.cfg.d.get(t, "/debug/syncz")
	if err := json.Unmarshal([]byte(body), &syncz); err != nil {
		t.Fatalf("/debug/syncz: %v\n%s", err, body)
	}
	var mine []server.StreamStatus
	for _, st := range syncz.Streams {
		if strings.HasPrefix(st.Proxy, "sidecar~10.1.0.9~sleep-0.sample~") {
			mine = append(mine, st)
		}
	}
	switch len(mine) {
	case 0:
		return server.StreamStatus{}, false
	case 1:
		return mine[0], true
	}
	t.Fatalf("the agent has %d streams to Horizon, want one:\n%s", len(mine), body)
	return server.StreamStatus{}, false
}

// allAcked: Horizon sent every type (but an unsupported one) and the
// proxy acknowledged the last it sent.
func allAcked(st server.StreamStatus, types []string) bool {
	for _, typ := range types {
		ts := st.Types[typ]
		if ts == nil {
			return false
		}
		if !ts.Unsupported && (ts.Sent == "" || ts.Acked != ts.Sent) {
			return false
		}
	}
	return true
}

// checkStream: the stream is the sidecar's own (delta or not, secure,
// authenticated as sample/sleep by its token in cluster1), nothing was
// rejected, and it asks for Istio's NameTable exactly with DNS capture on.
func (s *istioSidecar) checkStream(t *testing.T, st server.StreamStatus, delta, dns bool) {
	t.Helper()
	if st.Delta != delta || !st.Secure || st.Cluster != "cluster1" {
		t.Errorf("stream: delta %v (want %v), secure %v, cluster %q", st.Delta, delta, st.Secure, st.Cluster)
	}
	if want := "token of system:serviceaccount:sample:sleep (cluster cluster1)"; st.Identity != want {
		t.Errorf("stream identity %q, want %q", st.Identity, want)
	}
	for typ, ts := range st.Types {
		if ts.LastNACK != "" || ts.NACKs > 0 {
			t.Errorf("Envoy rejected %s (%d times): %s", typ, ts.NACKs, ts.LastNACK)
		}
		switch {
		case typ == typeNameTable:
			// Left unanswered, or (once Horizon serves NDS) answered
			// and acknowledged: either way on the same stream.
			if !dns {
				t.Errorf("the agent asked for the NameTable without DNS capture")
			}
		case !slices.Contains([]string{typeCDS, typeEDS, typeLDS, typeRDS}, typ):
			t.Errorf("the stream asked for %s as well (unsupported %v)", typ, ts.Unsupported)
		}
	}
	if _, ok := st.Types[typeNameTable]; dns && !ok {
		t.Errorf("with DNS capture the agent did not ask for the NameTable on its stream")
	}
}

func describeStream(st server.StreamStatus) string {
	var parts []string
	for _, typ := range []string{typeCDS, typeEDS, typeLDS, typeRDS, typeNameTable} {
		ts := st.Types[typ]
		if ts == nil {
			continue
		}
		short := typ[strings.LastIndex(typ, ".")+1:]
		if ts.Unsupported {
			parts = append(parts, short+" unanswered")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s sent %s acked %s", short, ts.Sent, ts.Acked))
	}
	return fmt.Sprintf("#%d delta=%v identity=%q: %s", st.StreamID, st.Delta, st.Identity, strings.Join(parts, "; "))
}
