package ca

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// Files returns the authority in the cacerts layout (ca-cert.pem,
// ca-key.pem, root-cert.pem, cert-chain.pem), which Load reads back. It is
// how replicas share a self-signed root: the first stores it in a Secret,
// the others load that Secret.
func (a *Authority) Files() (map[string][]byte, error) {
	key, err := x509.MarshalPKCS8PrivateKey(a.key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	var chain []byte
	for _, c := range a.chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return map[string][]byte{
		CACertFile:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw}),
		CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		RootCertFile:  a.rootPEM,
		CertChainFile: chain,
	}, nil
}
