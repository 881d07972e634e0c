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
	var diags model.Diagnostics
	b, err := os.ReadFile(path)
	if err != nil {
		diags.AddError(path, "", "--gateways", err.Error())
		return nil, diags
	}
	var out []*model.IstioGateway
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
		if meta.Kind != "Gateway" || !isNetworkingGroup(meta.APIVersion) {
			continue
		}
		g := &networkingv1.Gateway{}
		if err := yaml.Unmarshal(raw, g); err != nil {
			diags.AddError(path, fmt.Sprintf("document %d (Gateway)", doc), "spec", err.Error())
			continue
		}
		m, err := ConvertGateway(g)
		if err != nil {
			diags.AddError(path, "", "", err.Error())
			continue
		}
		out = append(out, m)
	}
	return out, diags
}

func isNetworkingGroup(apiVersion string) bool {
	switch apiVersion {
	case "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3":
		return true
	}
	return false
}
