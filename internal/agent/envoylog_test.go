package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvoyOutput(t *testing.T) {
	dir := t.TempDir()
	f, done, err := envoyOutput(Config{WorkDir: dir, EnvoyLog: "-"})
	if err != nil || f != os.Stdout {
		t.Fatalf(`"-": %v, %v; want the agent's stdout`, f, err)
	}
	done()

	f, done, err = envoyOutput(Config{WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != filepath.Join(dir, "envoy.log") {
		t.Errorf("default: %s, want envoy.log in the work dir", f.Name())
	}
	done()

	_, _, err = envoyOutput(Config{WorkDir: dir, EnvoyLog: filepath.Join(dir, "missing", "envoy.log")})
	if err == nil || !strings.Contains(err.Error(), "--envoy-log") {
		t.Errorf("unwritable file: %v, want an error naming --envoy-log", err)
	}
}
