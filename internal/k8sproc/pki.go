package k8sproc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKIOptions shape NewPKI's certificates.
type PKIOptions struct {
	// CAName is the CA's common name ("horizon-test-ca" by default).
	CAName string
	// Validity bounds every certificate (24 hours by default).
	Validity time.Duration
	// ServingIPs and ServingDNS are added to the serving certificate's
	// 127.0.0.1, localhost and kubernetes.default.svc.
	ServingIPs []net.IP
	ServingDNS []string
}

// PKI is what one API server and its clients need: a CA, a serving
// certificate, an admin (system:masters) client certificate and a
// service-account signing key pair, all PEM. ClientCert issues more client
// certificates from the same CA.
type PKI struct {
	CACert, CAKey           []byte
	ServingCert, ServingKey []byte
	AdminCert, AdminKey     []byte
	SAKey, SAPub            []byte

	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	validity time.Duration
}

// NewPKI makes a fresh CA and everything it signs.
func NewPKI(o PKIOptions) (*PKI, error) {
	if o.CAName == "" {
		o.CAName = "horizon-test-ca"
	}
	if o.Validity <= 0 {
		o.Validity = 24 * time.Hour
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: o.CAName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(o.Validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	p := &PKI{CACert: pemBlock("CERTIFICATE", caDER), CAKey: pemBlock("EC PRIVATE KEY", caKeyDER),
		ca: ca, caKey: caKey, validity: o.Validity}
	ips := append([]net.IP{net.ParseIP("127.0.0.1")}, o.ServingIPs...)
	dns := append([]string{"localhost", "kubernetes.default.svc"}, o.ServingDNS...)
	if p.ServingCert, p.ServingKey, err = p.leaf(pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth, ips, dns); err != nil {
		return nil, err
	}
	if p.AdminCert, p.AdminKey, err = p.ClientCert("admin", "system:masters"); err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	p.SAKey, p.SAPub = pemBlock("EC PRIVATE KEY", kder), pemBlock("PUBLIC KEY", pub)
	return p, nil
}

// ClientCert issues a client certificate for user cn in groups orgs.
func (p *PKI) ClientCert(cn string, orgs ...string) (cert, key []byte, err error) {
	return p.leaf(pkix.Name{CommonName: cn, Organization: orgs}, x509.ExtKeyUsageClientAuth, nil, nil)
}

// IssueServingCert issues a serving certificate for cn with the given IP and
// DNS names (e.g. a kubelet's, which the API server verifies against the
// CA when it proxies logs and exec to the node).
func (p *PKI) IssueServingCert(cn string, ips []net.IP, dns []string) (cert, key []byte, err error) {
	return p.leaf(pkix.Name{CommonName: cn}, x509.ExtKeyUsageServerAuth, ips, dns)
}

func (p *PKI) leaf(subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dns []string) ([]byte, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(p.validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, DNSNames: dns}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// The files Write stores, by name.
const (
	CACertFile      = "ca.crt"
	CAKeyFile       = "ca.key"
	ServingCertFile = "serving.crt"
	ServingKeyFile  = "serving.key"
	SAKeyFile       = "sa.key"
	SAPubFile       = "sa.pub"
)

// Write stores the files the control-plane processes read (mode 0600) in
// dir and returns their paths by name (CACertFile ...).
func (p *PKI) Write(dir string) (map[string]string, error) {
	files := map[string][]byte{CACertFile: p.CACert, CAKeyFile: p.CAKey, ServingCertFile: p.ServingCert,
		ServingKeyFile: p.ServingKey, SAKeyFile: p.SAKey, SAPubFile: p.SAPub}
	out := map[string]string{}
	for name, b := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
		out[name] = path
	}
	return out, nil
}
