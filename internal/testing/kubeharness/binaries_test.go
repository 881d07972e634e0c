package kubeharness

import (
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that records Fatal and Skip instead of stopping.
type recorder struct {
	testing.TB
	fatal, skip bool
}

func (r *recorder) Helper()             {}
func (r *recorder) Fatal(...any)        { r.fatal = true }
func (r *recorder) Skip(...any)         { r.skip = true }
func (r *recorder) Logf(string, ...any) {}

// Missing binaries skip a test locally and fail it under CI=true or
// HORIZON_REQUIRE_E2E=1 (what `make integration` sets).
func TestBinariesSkipOrFail(t *testing.T) {
	empty := t.TempDir()
	for _, c := range []struct {
		ci, require string
		wantFatal   bool
	}{
		{"", "", false},
		{"true", "", true},
		{"", "1", true},
		{"false", "0", false},
	} {
		t.Setenv("HORIZON_K8S_BIN_DIR", empty)
		t.Setenv("CI", c.ci)
		t.Setenv("HORIZON_REQUIRE_E2E", c.require)
		r := &recorder{TB: t}
		Binaries(r)
		if r.fatal != c.wantFatal || (!c.wantFatal && !r.skip) { // a real Fatal would not return to Skip
			t.Errorf("CI=%q HORIZON_REQUIRE_E2E=%q: fatal=%v skip=%v, want fatal=%v", c.ci, c.require, r.fatal, r.skip, c.wantFatal)
		}
	}

	// Present and executable: neither.
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(empty, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	if got := Binaries(r); got != empty || r.fatal || r.skip {
		t.Errorf("with both binaries: dir %q fatal=%v skip=%v", got, r.fatal, r.skip)
	}
	// Not executable: missing.
	if err := os.Chmod(filepath.Join(empty, "etcd"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = &recorder{TB: t}
	if Binaries(r); !r.fatal {
		t.Error("a non-executable etcd passed")
	}
}
