package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// fakeAdmin is an Envoy admin endpoint answering /ready and /stats as
// Envoy does (a state name; "name: value" counter lines).
type fakeAdmin struct {
	mu       sync.Mutex
	state    string // PRE_INITIALIZING, INITIALIZING, LIVE, DRAINING
	cds, lds int
	filters  []string // the /stats filters asked for
}

func (f *fakeAdmin) set(state string, cds, lds int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state, f.cds, f.lds = state, cds, lds
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/ready":
		if f.state != "LIVE" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, f.state)
	case "/stats":
		f.filters = append(f.filters, r.URL.Query().Get("filter"))
		fmt.Fprintf(w, "cluster_manager.cds.update_success: %d\nlistener_manager.lds.update_success: %d\n", f.cds, f.lds)
	default:
		http.NotFound(w, r)
	}
}

func TestReadinessFollowsEnvoy(t *testing.T) {
	admin := &fakeAdmin{}
	srv := httptest.NewServer(admin)
	defer srv.Close()
	r := &Readiness{Admin: strings.TrimPrefix(srv.URL, "http://")}
	for _, tt := range []struct {
		state    string
		cds, lds int
		want     string // "" for ready
	}{
		{"PRE_INITIALIZING", 0, 0, `Envoy is "PRE_INITIALIZING", not LIVE`},
		{"INITIALIZING", 1, 0, `Envoy is "INITIALIZING", not LIVE`},
		// LIVE after the initial fetch timed out, without any config.
		{"LIVE", 0, 0, "no clusters (CDS) accepted from discovery yet"},
		{"LIVE", 1, 0, "no listeners (LDS) accepted from discovery yet"},
		{"LIVE", 1, 1, ""},
		{"LIVE", 7, 3, ""},
		{"DRAINING", 7, 3, `Envoy is "DRAINING", not LIVE`},
	} {
		admin.set(tt.state, tt.cds, tt.lds)
		err := r.Check(context.Background())
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s cds=%d lds=%d: %v, want ready", tt.state, tt.cds, tt.lds, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("%s cds=%d lds=%d: %v, want %q", tt.state, tt.cds, tt.lds, err, tt.want)
		}
	}
	admin.mu.Lock()
	filter := admin.filters[0]
	admin.mu.Unlock()
	if filter != `^(cluster_manager\.cds|listener_manager\.lds)\.update_success$` {
		t.Errorf("stats filter %q", filter)
	}

	srv.Close()
	if err := r.Check(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "Envoy admin: ") {
		t.Errorf("admin gone: %v, want an Envoy admin error", err)
	}
}

// The status port as the kubelet sees it: 503 with the reason until Envoy
// is LIVE with its config, then 200; 503 again once the agent stops.
func TestStatusPortServesReadiness(t *testing.T) {
	admin := &fakeAdmin{state: "INITIALIZING"}
	adminSrv := httptest.NewServer(admin)
	defer adminSrv.Close()
	var adminPort uint32
	if _, err := fmt.Sscanf(adminSrv.URL[strings.LastIndex(adminSrv.URL, ":")+1:], "%d", &adminPort); err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	port := uint32(testkit.FreePort(t))
	stop, err := serveStatus(port, StatusHandler(readyCheck(agentCtx, adminPort)), testkit.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, ReadyPath)
	get := func() (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get(); code != http.StatusServiceUnavailable || body != `not ready: Envoy is "INITIALIZING", not LIVE` {
		t.Errorf("initializing: %d %q", code, body)
	}
	admin.set("LIVE", 1, 1)
	if code, body := get(); code != http.StatusOK || body != "ready" {
		t.Errorf("live: %d %q", code, body)
	}
	stopAgent()
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopping") {
		t.Errorf("stopping: %d %q", code, body)
	}

	// Bounded: another path is 404, another method 405, oversized
	// headers 431.
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-Big", strings.Repeat("a", 2*statusMaxHeaderBytes))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: %d", resp.StatusCode)
	}

	// A taken port is an error naming the flag.
	if _, err := serveStatus(port, http.NotFoundHandler(), testkit.Logger()); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--status-port %d", port)) {
		t.Errorf("taken port: %v", err)
	}
}
