package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Operation is one RFC 6902 JSON Patch operation.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// PodPatch is the JSON Patch that turns original into patched, as the API
// server applies it to the pod it sent. Both are encoded the same way, so
// fields this build does not know (a newer API server's) are never touched:
// the patch only adds to lists and maps what injection added.
func PodPatch(original, patched *corev1.Pod) ([]byte, error) {
	a, err := json.Marshal(original)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(patched)
	if err != nil {
		return nil, err
	}
	return CreatePatch(a, b)
}

// CreatePatch returns the RFC 6902 JSON Patch (a JSON array, "[]" when
// equal) that turns the JSON document a into b. Objects are compared
// member by member; arrays element by element over their common length,
// then elements are added at the end or removed from it, so appending to a
// list is a list of "add" operations; a value whose type changed is
// replaced.
func CreatePatch(a, b []byte) ([]byte, error) {
	va, err := decode(a)
	if err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	vb, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("patched: %w", err)
	}
	ops := diff(nil, "", va, vb)
	if ops == nil {
		ops = []Operation{}
	}
	return json.Marshal(ops)
}

func decode(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber() // numbers compared and copied exactly
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func diff(ops []Operation, path string, a, b any) []Operation {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(a)+len(b))
		for k := range a {
			keys = append(keys, k)
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "/" + escapePointer(k)
			va, inA := a[k]
			vb, inB := b[k]
			switch {
			case !inB:
				ops = append(ops, Operation{Op: "remove", Path: p})
			case !inA:
				ops = append(ops, Operation{Op: "add", Path: p, Value: jsonValue(vb)})
			default:
				ops = diff(ops, p, va, vb)
			}
		}
		return ops
	case []any:
		b, ok := b.([]any)
		if !ok {
			break
		}
		n := min(len(a), len(b))
		for i := 0; i < n; i++ {
			ops = diff(ops, path+"/"+strconv.Itoa(i), a[i], b[i])
		}
		for i := n; i < len(b); i++ {
			ops = append(ops, Operation{Op: "add", Path: path + "/" + strconv.Itoa(i), Value: jsonValue(b[i])})
		}
		for i := len(a) - 1; i >= n; i-- {
			ops = append(ops, Operation{Op: "remove", Path: path + "/" + strconv.Itoa(i)})
		}
		return ops
	}
	if reflect.DeepEqual(a, b) {
		return ops
	}
	return append(ops, Operation{Op: "replace", Path: path, Value: jsonValue(b)})
}

// jsonValue keeps a JSON null as an explicit value: Operation's omitempty
// would drop a nil, and "add" and "replace" need a value.
func jsonValue(v any) any {
	if v == nil {
		return json.RawMessage("null")
	}
	return v
}

// escapePointer escapes a member name for a JSON Pointer (RFC 6901):
// label keys hold '/'.
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
