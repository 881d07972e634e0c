package agent

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

func TestRenewAtHalfLife(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := &Identity{Leaf: &x509.Certificate{NotBefore: start}, NotAfter: start.Add(24 * time.Hour)}
	if got := id.RenewAt(); !got.Equal(start.Add(12 * time.Hour)) {
		t.Errorf("RenewAt = %s, want half-way", got)
	}
}

func TestResolveEnvoyFindsTheWrappedBinary(t *testing.T) {
	venv := t.TempDir()
	launcher := filepath.Join(venv, "bin", "envoy")
	wrapped := filepath.Join(venv, "lib", "python3.11", "site-packages", "envoy", "_bin", "envoy")
	for path, content := range map[string]string{launcher: "#!/usr/bin/env python3\nimport envoy\n", wrapped: "\x7fELF..."} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := ResolveEnvoy(launcher); err != nil || got != wrapped {
		t.Errorf("ResolveEnvoy(launcher) = %q, %v; want %q", got, err, wrapped)
	}
	if got, err := ResolveEnvoy(wrapped); err != nil || got != wrapped {
		t.Errorf("ResolveEnvoy(binary) = %q, %v", got, err)
	}
	if err := os.RemoveAll(filepath.Dir(wrapped)); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveEnvoy(launcher); err == nil || !strings.Contains(err.Error(), "launcher") {
		t.Errorf("a launcher without its binary: %v", err)
	}
}

// TestEnvoyIsRestartedWhenItDies runs a stand-in "Envoy" that records each
// start and exits at once: the supervisor starts it again, with back-off,
// until the context ends.
func TestEnvoyIsRestartedWhenItDies(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	script := filepath.Join(dir, "envoy")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+starts+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, _ := os.Create(filepath.Join(dir, "log"))
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	e := &Envoy{Binary: script, Bootstrap: "b.json", AdminPort: 1, LogLevel: "info", Drain: time.Millisecond, Stdout: out,
		Log: testkit.Logger()}
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(starts)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 || len(lines) > 3 {
		t.Errorf("started %d times in 2.5s (back-off 1s, 2s): %q", len(lines), lines)
	}
	if !strings.Contains(lines[0], "--disable-hot-restart") || !strings.Contains(lines[0], "-c b.json") {
		t.Errorf("arguments: %s", lines[0])
	}
}
