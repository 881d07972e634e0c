package istio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/horizonmesh/horizon/internal/model"
)

// LoadGatewaysFile reads the Istio Gateways of a YAML or JSON file (one or
// more documents; documents of other kinds are skipped) for offline use
// (`horizon translate --gateways`). Every invalid Gateway is an error
// naming it and its field.
func LoadGatewaysFile(path string) ([]*model.IstioGateway, model.Diagnostics) {
	var out []*model.IstioGateway
	diags := eachDocument(path, "--gateways", func(doc int, apiVersion, kind string, raw []byte, diags *model.Diagnostics) {
		if kind != "Gateway" || !isNetworkingGroup(apiVersion) {
			return
		}
		g := &networkingv1.Gateway{}
		if err := yaml.Unmarshal(raw, g); err != nil {
			diags.AddError(path, fmt.Sprintf("document %d (Gateway)", doc), "spec", err.Error())
			return
		}
		m, err := ConvertGateway(g)
		if err != nil {
			diags.AddError(path, "", "", err.Error())
			return
		}
		out = append(out, m)
	})
	return out, diags
}

// LoadDestinationRulesFile reads the DestinationRules of a YAML or JSON
// file, as LoadGatewaysFile its Gateways (`horizon translate
// --destination-rules`).
func LoadDestinationRulesFile(path string) ([]*model.DestinationRule, model.Diagnostics) {
	var out []*model.DestinationRule
	diags := eachDocument(path, "--destination-rules", func(doc int, apiVersion, kind string, raw []byte, diags *model.Diagnostics) {
		if kind != "DestinationRule" || !isNetworkingGroup(apiVersion) {
			return
		}
		dr := &networkingv1.DestinationRule{}
		if err := yaml.Unmarshal(raw, dr); err != nil {
			diags.AddError(path, fmt.Sprintf("document %d (DestinationRule)", doc), "spec", err.Error())
			return
		}
		m, err := ConvertDestinationRule(dr)
		if err != nil {
			diags.AddError(path, fmt.Sprintf("document %d (DestinationRule)", doc), "", err.Error())
			return
		}
		out = append(out, m)
	})
	return out, diags
}

// LoadPeerAuthenticationsFile reads the PeerAuthentications
// (security.istio.io v1 or v1beta1) of a YAML or JSON file for offline use
// (`horizon translate --peer-authentications`, the golden tests); other
// kinds are skipped. Every invalid one is an error naming it and its field.
func LoadPeerAuthenticationsFile(path string) ([]*model.PeerAuthentication, model.Diagnostics) {
	var out []*model.PeerAuthentication
	diags := eachDocument(path, "--peer-authentications", func(doc int, apiVersion, kind string, raw []byte, diags *model.Diagnostics) {
		if kind != "PeerAuthentication" || (apiVersion != "security.istio.io/v1" && apiVersion != "security.istio.io/v1beta1") {
			return
		}
		// v1 and v1beta1 share the spec: one type reads both.
		pa := &securityv1.PeerAuthentication{}
		if err := yaml.Unmarshal(raw, pa); err != nil {
			diags.AddError(path, fmt.Sprintf("document %d (PeerAuthentication)", doc), "spec", err.Error())
			return
		}
		m, err := ConvertPeerAuthentication(pa.ObjectMeta, &pa.Spec)
		if err != nil {
			diags.AddError(path, "", "", err.Error())
			return
		}
		out = append(out, m)
	})
	return out, diags
}

// eachDocument calls f with every non-empty document of a YAML or JSON
// file and its apiVersion and kind; f adds its own problems to diags.
func eachDocument(path, flag string, f func(doc int, apiVersion, kind string, raw []byte, diags *model.Diagnostics)) model.Diagnostics {
	var diags model.Diagnostics
	b, err := os.ReadFile(path)
	if err != nil {
		diags.AddError(path, "", flag, err.Error())
		return diags
	}
	r := utilyaml.NewYAMLReader(bufio.NewReaderSize(bytes.NewReader(b), 4096))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			diags.AddError(path, fmt.Sprintf("document %d", doc), "", err.Error())
			break
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			diags.AddError(path, fmt.Sprintf("document %d", doc), "", err.Error())
			continue
		}
		f(doc, meta.APIVersion, meta.Kind, raw, &diags)
	}
	return diags
}

func isNetworkingGroup(apiVersion string) bool {
	switch apiVersion {
	case "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3":
		return true
	}
	return false
}
