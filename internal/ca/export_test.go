package ca

import (
	"bytes"
	"testing"
)

// A self-signed authority stored with Files and read back with Load is the
// same CA: what it signs, the original's roots verify.
func TestFilesRoundTrip(t *testing.T) {
	a, err := SelfSigned("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.Files()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(files)
	if err != nil {
		t.Fatalf("Load(Files()): %v", err)
	}
	if !bytes.Equal(a.RootPEM(), b.RootPEM()) || !b.cert.Equal(a.cert) || !publicKeysEqual(a.key.Public(), b.key.Public()) {
		t.Fatal("the loaded authority is not the stored one")
	}
}
