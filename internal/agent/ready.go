package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/internal/clip"
)

// DefaultStatusPort is Istio's status port: the kubelet's readiness probe
// (GET ReadyPath) reaches the agent there, outside inbound capture.
const DefaultStatusPort = 15021

// ReadyPath is the readiness endpoint on the status port (Istio's).
const ReadyPath = "/healthz/ready"

// Bounds of the status server, as internal/ops bounds its server: the
// kubelet sends one small request every few seconds, so idle or slow
// clients may not hold connections long.
const (
	statusIdleTimeout       = 30 * time.Second
	statusReadHeaderTimeout = 10 * time.Second
	statusMaxHeaderBytes    = 16 << 10
	// adminCheckTimeout bounds one readiness check (two admin requests):
	// under the injected probe's timeoutSeconds, so a slow Envoy gets a
	// 503 naming it rather than a probe timeout.
	adminCheckTimeout = 2 * time.Second
	// maxAdminBody bounds what is read of an admin answer (a state name,
	// two counters).
	maxAdminBody = 64 << 10
)

// Readiness says whether Envoy serves: its admin /ready answers 200 (state
// LIVE) and it has accepted a CDS and an LDS update from discovery. LIVE
// alone is not enough: Envoy also goes LIVE when its initial CDS and LDS
// fetches time out (15 s each; 30 s with discovery unreachable, seen with
// Envoy 1.40) without any config, and then serves nothing.
type Readiness struct {
	// Admin is Envoy's admin address, host:port.
	Admin  string
	Client *http.Client
}

// Check returns nil when Envoy is ready, else why not (short, for the
// probe's answer and the kubelet's event).
func (r *Readiness) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, adminCheckTimeout)
	defer cancel()
	code, body, err := r.get(ctx, "/ready")
	if err != nil {
		return fmt.Errorf("Envoy admin: %w", err)
	}
	if code != http.StatusOK {
		state := strings.TrimSpace(body)
		if state == "" {
			state = strconv.Itoa(code)
		}
		return fmt.Errorf("Envoy is %s, not LIVE", clip.Quote(state))
	}
	code, body, err = r.get(ctx, `/stats?filter=^(cluster_manager\.cds|listener_manager\.lds)\.update_success$`)
	if err != nil {
		return fmt.Errorf("Envoy admin stats: %w", err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("Envoy admin stats: status %d", code)
	}
	got := parseCounters(body)
	for _, s := range []struct{ stat, what string }{
		{"cluster_manager.cds.update_success", "clusters (CDS)"},
		{"listener_manager.lds.update_success", "listeners (LDS)"},
	} {
		if got[s.stat] == 0 {
			return fmt.Errorf("no %s accepted from discovery yet", s.what)
		}
	}
	return nil
}

func (r *Readiness) get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Admin+path, nil)
	if err != nil {
		return 0, "", err
	}
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminBody))
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(b), nil
}

// parseCounters reads Envoy's text stats ("name: value" lines).
func parseCounters(body string) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[strings.TrimSpace(name)] = n
		}
	}
	return out
}

// StatusHandler serves GET ReadyPath: 200 "ready" when ready() is nil,
// else 503 with the reason.
func StatusHandler(ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ReadyPath, func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// newStatusServer is the status port's server, bounded like ops.NewServer.
func newStatusServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, IdleTimeout: statusIdleTimeout, ReadHeaderTimeout: statusReadHeaderTimeout,
		MaxHeaderBytes: statusMaxHeaderBytes, WriteTimeout: 2 * adminCheckTimeout}
}

// serveStatus listens on the status port (all addresses: the kubelet
// probes the pod's IP) and serves h until stop is called. Listening fails
// at once, so a taken port stops the agent with a clear error instead of
// leaving the pod unready without a word.
func serveStatus(port uint32, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.FormatUint(uint64(port), 10)))
	if err != nil {
		return nil, fmt.Errorf("--status-port %d: %w (0 turns the status port off)", port, err)
	}
	srv := newStatusServer(h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status port", "error", err)
		}
	}()
	log.Info("status port", "address", ln.Addr().String(), "ready", ReadyPath)
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}
