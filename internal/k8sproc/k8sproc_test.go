package k8sproc

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPKI(t *testing.T) {
	p, err := NewPKI(PKIOptions{CAName: "lab-ca", Validity: 48 * time.Hour,
		ServingIPs: []net.IP{net.ParseIP("10.96.0.1")}, ServingDNS: []string{"kubernetes.default"}})
	if err != nil {
		t.Fatal(err)
	}
	ca := parse(t, p.CACert)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if ca.Subject.CommonName != "lab-ca" || !ca.IsCA || time.Until(ca.NotAfter) < 47*time.Hour {
		t.Errorf("CA %v until %v", ca.Subject, ca.NotAfter)
	}
	serving := parse(t, p.ServingCert)
	for _, name := range []string{"127.0.0.1", "10.96.0.1", "localhost", "kubernetes.default.svc", "kubernetes.default"} {
		if err := serving.VerifyHostname(name); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Error(err)
	}
	admin := parse(t, p.AdminCert)
	if admin.Subject.CommonName != "admin" || !slices.Equal(admin.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin %v", admin.Subject)
	}
	cert, _, err := p.ClientCert("system:kube-scheduler")
	if err != nil {
		t.Fatal(err)
	}
	sched := parse(t, cert)
	if _, err := sched.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil ||
		sched.Subject.CommonName != "system:kube-scheduler" || sched.SerialNumber.Cmp(admin.SerialNumber) == 0 {
		t.Errorf("client certificate %v serial %v: %v", sched.Subject, sched.SerialNumber, err)
	}

	cert, _, err = p.IssueServingCert("cluster1-node", []net.IP{net.ParseIP("10.51.0.1")}, []string{"cluster1-node"})
	if err != nil {
		t.Fatal(err)
	}
	node := parse(t, cert)
	if _, err := node.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil ||
		node.VerifyHostname("10.51.0.1") != nil || node.VerifyHostname("cluster1-node") != nil || node.VerifyHostname("127.0.0.1") == nil {
		t.Errorf("node serving certificate %v %v %v: %v", node.Subject, node.IPAddresses, node.DNSNames, err)
	}

	dir := t.TempDir()
	files, err := p.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CACertFile, CAKeyFile, ServingCertFile, ServingKeyFile, SAKeyFile, SAPubFile} {
		fi, err := os.Stat(files[name])
		if err != nil || fi.Mode().Perm() != 0o600 || filepath.Dir(files[name]) != dir {
			t.Errorf("%s: %v %v", name, fi, err)
		}
	}
	if b, _ := os.ReadFile(files[SAPubFile]); !strings.Contains(string(b), "PUBLIC KEY") {
		t.Errorf("sa.pub: %s", b)
	}
}

func TestBinDir(t *testing.T) {
	t.Setenv(BinDirEnv, "")
	t.Setenv("XDG_CACHE_HOME", "/cache")
	if got, want := BinDir(), "/cache/horizon/k8s-"+KubernetesVersion+"-etcd-"+EtcdVersion; got != want {
		t.Errorf("BinDir() = %s, want %s", got, want)
	}
	t.Setenv(BinDirEnv, "/bins")
	if got := BinDir(); got != "/bins" {
		t.Errorf("BinDir() = %s with %s set", got, BinDirEnv)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Etcd), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KubeScheduler), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckBinaries(dir, Etcd); err != nil {
		t.Error(err)
	}
	if err := CheckBinaries(dir, Etcd, KubeScheduler); err == nil || !strings.Contains(err.Error(), "kube-scheduler is not executable") {
		t.Errorf("non-executable: %v", err)
	}
	if err := CheckBinaries(dir, KubeAPIServer); err == nil || !strings.Contains(err.Error(), KubeAPIServer) {
		t.Errorf("missing: %v", err)
	}
}
