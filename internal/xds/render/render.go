// Package render prints xDS resources as stable, reviewable JSON or YAML, for
// `horizon translate`, debug endpoints and golden files.
package render

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Resource renders one resource in Envoy's proto3 JSON form. protojson's own
// whitespace is deliberately unstable, so the result is compact and callers
// indent it with Document.
func Resource(m proto.Message) (json.RawMessage, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	return json.RawMessage(b), nil
}

// Resources renders a list of resources.
func Resources[T proto.Message](ms []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		raw, err := Resource(m)
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}

// Document renders v (which may hold json.RawMessage values) as indented
// JSON, or as YAML when format is "yaml". The output ends with a newline.
func Document(format string, v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	switch format {
	case "json", "":
		return append(b, '\n'), nil
	case "yaml":
		return yaml.JSONToYAML(b)
	}
	return nil, fmt.Errorf("unknown output format %q", format)
}
