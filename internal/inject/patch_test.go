package inject

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

func TestCreatePatch(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		ops        int
	}{
		{"equal", `{"a":1,"b":[1,2]}`, `{"a":1,"b":[1,2]}`, 0},
		{"add member", `{"a":1}`, `{"a":1,"b":{"c":[1]}}`, 1},
		{"remove member", `{"a":1,"b":2}`, `{"a":1}`, 1},
		{"replace scalar", `{"a":1}`, `{"a":"1"}`, 1},
		{"null values", `{"a":null,"b":1}`, `{"a":1,"b":null,"c":null}`, 3},
		{"escaped keys", `{"m":{"x/y":1,"a~b":2}}`, `{"m":{"x/y":3,"a~b":4,"c/~d":5}}`, 3},
		{"append", `{"l":[{"n":1}]}`, `{"l":[{"n":1},{"n":2},{"n":3}]}`, 2},
		{"shrink", `{"l":[1,2,3,4]}`, `{"l":[1]}`, 3},
		{"change inside", `{"l":[{"n":1,"m":2}]}`, `{"l":[{"n":1,"m":3}]}`, 1},
		{"type change", `{"l":[1]}`, `{"l":{"0":1}}`, 1},
		{"root type change", `[1]`, `{"a":1}`, 1},
		{"big numbers exact", `{"n":12345678901234567890}`, `{"n":12345678901234567891}`, 1},
		{"empty to filled", `{}`, `{"metadata":{"labels":{"a":"b"}}}`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CreatePatch([]byte(tc.a), []byte(tc.b))
			if err != nil {
				t.Fatal(err)
			}
			var ops []Operation
			if err := json.Unmarshal(p, &ops); err != nil || len(ops) != tc.ops {
				t.Errorf("%d ops (%v), want %d: %s", len(ops), err, tc.ops, p)
			}
			checkApplies(t, tc.a, tc.b, p)
		})
	}
	for _, bad := range [][2]string{{`{`, `{}`}, {`{}`, `x`}, {`{} {}`, `{}`}} {
		if _, err := CreatePatch([]byte(bad[0]), []byte(bad[1])); err == nil {
			t.Errorf("CreatePatch(%s, %s) accepted", bad[0], bad[1])
		}
	}
}

func checkApplies(t testing.TB, a, b string, p []byte) {
	t.Helper()
	patch, err := jsonpatch.DecodePatch(p)
	if err != nil {
		t.Fatalf("decode %s: %v", p, err)
	}
	got, err := patch.Apply([]byte(a))
	if err != nil {
		t.Fatalf("apply %s to %s: %v", p, a, err)
	}
	var vg, vb any
	if err := json.Unmarshal(got, &vg); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vg, vb) {
		t.Errorf("patch %s turns %s into %s, want %s", p, a, got, b)
	}
}
