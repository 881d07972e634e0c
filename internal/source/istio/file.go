package istio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
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
	diags := eachDocument(path, "Gateway", "--gateways", func(raw []byte) error {
		g := &networkingv1.Gateway{}
		if err := yaml.Unmarshal(raw, g); err != nil {
			return err
		}
		m, err := ConvertGateway(g)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, diags
}

// LoadDestinationRulesFile reads the DestinationRules of a YAML or JSON
// file, as LoadGatewaysFile its Gateways (`horizon translate
// --destination-rules`).
func LoadDestinationRulesFile(path string) ([]*model.DestinationRule, model.Diagnostics) {
	var out []*model.DestinationRule
	diags := eachDocument(path, "DestinationRule", "--destination-rules", func(raw []byte) error {
		dr := &networkingv1.DestinationRule{}
		if err := yaml.Unmarshal(raw, dr); err != nil {
			return err
		}
		m, err := ConvertDestinationRule(dr)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, diags
}

// eachDocument calls convert with every document of kind in the
// networking.istio.io group (any served version) of a file; its errors
// and the file's are diagnostics naming the document.
func eachDocument(path, kind, flag string, convert func(raw []byte) error) model.Diagnostics {
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
		if meta.Kind != kind || !isNetworkingGroup(meta.APIVersion) {
			continue
		}
		if err := convert(raw); err != nil {
			diags.AddError(path, fmt.Sprintf("document %d (%s)", doc, kind), "", err.Error())
		}
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
