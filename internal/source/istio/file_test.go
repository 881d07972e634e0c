package istio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadGatewaysFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(good, []byte(`apiVersion: v1
kind: Service
metadata: {name: ignored}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	gws, diags := LoadGatewaysFile(good)
	if diags.Err() != nil || len(gws) != 1 {
		t.Fatalf("%d gateways, %v", len(gws), diags)
	}
	g := gws[0]
	if g.Name != "cross-network-gateway" || g.Selector["istio"] != "eastwestgateway" || len(g.Servers) != 1 ||
		g.Servers[0].Port != 15443 || g.Servers[0].TLSMode != "AUTO_PASSTHROUGH" {
		t.Errorf("gateway %+v", g)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: nosel, namespace: ns}
spec:
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, diags := LoadGatewaysFile(bad); diags.Err() == nil || !strings.Contains(diags.Err().Error(), "Gateway ns/nosel: spec.selector is empty") {
		t.Errorf("a Gateway without selector: %v", diags.Err())
	}
	if _, diags := LoadGatewaysFile(filepath.Join(dir, "missing.yaml")); diags.Err() == nil {
		t.Error("a missing file is no error")
	}
}
