//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

// srCert is the workload certificate an Envoy holds (admin /certs).
type srCert struct {
	Serial  string
	Expires time.Time
}

// srEnvoyCert reads the leaf certificate Envoy serves, from its admin
// /certs (false when Envoy does not answer or holds none).
func srEnvoyCert(admin string) (srCert, bool) {
	var doc struct {
		Certificates []struct {
			CertChain []struct {
				SerialNumber   string `json:"serial_number"`
				ExpirationTime string `json:"expiration_time"`
			} `json:"cert_chain"`
		} `json:"certificates"`
	}
	if json.Unmarshal([]byte(admin), &doc) != nil {
		return srCert{}, false
	}
	for _, c := range doc.Certificates {
		if len(c.CertChain) > 0 {
			exp, err := time.Parse(time.RFC3339, c.CertChain[0].ExpirationTime)
			if err != nil {
				return srCert{}, false
			}
			return srCert{Serial: c.CertChain[0].SerialNumber, Expires: exp}, true
		}
	}
	return srCert{}, false
}

// TestSecurityCAUnreachableWhenRenewalIsDue is the fault "CA unreachable
// when a certificate is due", for real: two sidecars (real Envoy, capture,
// mTLS) with 90s certificates; discovery (CA and xDS) is cut off from both
// pods before their renewal is due. The renewals fail and are retried
// while every request from sleep to helloworld keeps succeeding over mTLS
// with the current certificates; once discovery is reachable again the
// certificates are renewed and pushed to Envoy, and traffic still flows.
func TestSecurityCAUnreachableWhenRenewalIsDue(t *testing.T) {
	netlab.Require(t)
	envoy := envoyBinary(t)
	dir := buildBinaries(t)
	agent, hello := filepath.Join(dir, "horizon-agent"), filepath.Join(dir, "helloworld")
	const (
		net1      = "10.63.0"
		discIP    = net1 + ".254"
		clusterIP = "10.96.0.50"
		certTTL   = 90 * time.Second
	)
	lab := netlab.New(t, "hzsr", net1+".1/24")
	lab.RootLink(discIP + "/24")
	workloads := []struct{ name, ip, sa, version string }{{"sleep", net1 + ".10", "sleep", ""}, {"hw", net1 + ".11", "helloworld", "v1"}}
	ns := map[string]string{}
	for _, w := range workloads {
		ns[w.name] = lab.Host(w.name, w.ip+"/24", net1+".1", clusterIP+" helloworld.sample")
	}

	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	namespace(t, c1, "istio-system", nil)
	namespace(t, c1, "sample", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, c1, files)
	serviceWith(t, c1, "sample", "helloworld", clusterIP, "http", 5000, nil, "")
	for _, w := range workloads {
		must(t, createSA(c1, "sample", w.sa))
		podWith(t, c1, "sample", w.name, w.ip, w.sa, map[string]string{"app": w.name})
	}
	endpoints(t, c1, "sample", "helloworld", "http", 5000, map[string]string{"hw": net1 + ".11"})
	startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.XDSAddr, c.SecureSANs = discIP+":15012", "", []string{discIP}
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
	for _, w := range workloads {
		work := filepath.Join(dir, w.name)
		must(t, os.MkdirAll(work, 0o755))
		must(t, os.Chown(work, proxyUID, proxyUID))
		tokenFile := filepath.Join(dir, w.name+".token")
		must(t, os.WriteFile(tokenFile, []byte(token(t, c1, "sample", w.sa, "istio-ca")), 0o644))
		lab.In(ns[w.name], agent, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
		if w.version != "" {
			lab.Start(ns[w.name], 0, filepath.Join(dir, w.name+".app.log"), hello, "-version", w.version, "-instance", w.name)
		}
		lab.Start(ns[w.name], proxyUID, filepath.Join(dir, w.name+".agent.log"), agent, "agent", "--namespace", "sample",
			"--service-account", w.sa, "--cluster-id", "cluster1", "--ip", w.ip, "--discovery-address", discIP+":15012",
			"--discovery-san", discIP, "--root-cert", rootFile, "--token-file", tokenFile, "--envoy-path", envoy,
			"--work-dir", work, "--drain", "1s", "--cert-ttl", certTTL.String(), "--label", "app="+w.name)
	}
	admin := func(w, path string) string {
		out, _ := lab.Try(ns[w], 0, "curl", "-s", "-m", "2", "http://127.0.0.1:15000"+path)
		return out
	}
	call := func() (string, error) {
		out, err := lab.Try(ns["sleep"], 0, "curl", "-s", "-f", "-m", "5", "http://helloworld.sample:5000/hello")
		return strings.TrimSpace(out), err
	}
	waitFor(t, 90*time.Second, "sleep to reach helloworld over mTLS", func() bool {
		out, err := call()
		return err == nil && strings.Contains(out, "Hello version: v1")
	})

	// Cut both pods off from discovery (the CA, and xDS: Envoys keep their
	// config). A reset, so that every attempt fails at once.
	block := []string{"OUTPUT", "-p", "tcp", "-d", discIP, "--dport", "15012", "-j", "REJECT", "--reject-with", "tcp-reset"}
	for _, w := range workloads {
		lab.In(ns[w.name], append([]string{"iptables", "-I"}, block...)...)
	}
	cut := time.Now()
	unblocked := false
	unblock := func() {
		if !unblocked {
			for _, w := range workloads {
				lab.In(ns[w.name], append([]string{"iptables", "-D"}, block...)...)
			}
			unblocked = true
		}
	}
	defer unblock()
	agentLog := func(w string) string { b, _ := os.ReadFile(filepath.Join(dir, w+".agent.log")); return string(b) }
	rotations := map[string]int{}
	for _, w := range workloads {
		rotations[w.name] = strings.Count(agentLog(w.name), "certificate rotated")
	}
	waitFor(t, certTTL, "both agents' renewals to fail", func() bool {
		return strings.Contains(agentLog("sleep"), "certificate renewal failed; the current certificate keeps serving") &&
			strings.Contains(agentLog("hw"), "certificate renewal failed; the current certificate keeps serving")
	})
	held := map[string]srCert{}
	expires := time.Time{}
	for _, w := range workloads {
		c, ok := srEnvoyCert(admin(w.name, "/certs"))
		if !ok {
			t.Fatalf("%s's Envoy serves no certificate: %s", w.name, admin(w.name, "/certs"))
		}
		held[w.name] = c
		if expires.IsZero() || c.Expires.Before(expires) {
			expires = c.Expires
		}
	}
	// Traffic while the CA is unreachable, until 25s before the first of the
	// current certificates expires (then discovery comes back, in time for
	// the back-off's next attempt).
	until := expires.Add(-25 * time.Second)
	if time.Until(until) < 5*time.Second {
		t.Fatalf("the certificates expire at %s: too soon to observe the outage", expires)
	}
	requests, failures := 0, 0
	for time.Now().Before(until) {
		out, err := call()
		requests++
		if err != nil || !strings.Contains(out, "Hello version: v1") {
			failures++
			t.Errorf("request %d while the CA is unreachable: %v %s", requests, err, out)
		}
	}
	for _, w := range workloads {
		if c, _ := srEnvoyCert(admin(w.name, "/certs")); c.Serial != held[w.name].Serial {
			t.Errorf("%s's Envoy changed certificate while the CA was unreachable: %v → %v", w.name, held[w.name], c)
		}
		var failed []string
		for _, line := range strings.Split(agentLog(w.name), "\n") {
			if strings.Contains(line, "certificate renewal failed") {
				failed = append(failed, line)
			}
		}
		if len(failed) < 2 {
			t.Errorf("%s's agent logged %d failed renewals; want retries", w.name, len(failed))
		}
		t.Logf("%s's agent while discovery was unreachable:\n%s", w.name, strings.Join(failed, "\n"))
	}
	t.Logf("%d requests, %d failed, while discovery was unreachable for %s", requests, failures, time.Since(cut).Round(time.Second))

	unblock()
	for _, w := range workloads {
		waitFor(t, 30*time.Second, w.name+"'s certificate to be renewed once discovery is back", func() bool {
			c, ok := srEnvoyCert(admin(w.name, "/certs"))
			return ok && c.Serial != held[w.name].Serial && c.Expires.After(held[w.name].Expires)
		})
		if n := strings.Count(agentLog(w.name), "certificate rotated"); n <= rotations[w.name] {
			t.Errorf("%s's agent did not log the rotation", w.name)
		}
	}
	for i := range 10 {
		if out, err := call(); err != nil || !strings.Contains(out, "Hello version: v1") {
			t.Errorf("request %d after renewal: %v %s", i, err, out)
		}
	}
}
