package cli

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/internal/proxystatus"
	"github.com/horizonmesh/horizon/internal/testing/cptest"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// `horizon proxy-status --xds-address --plaintext` against a live control
// plane (the walkthrough's cluster1): a sidecar that acknowledged its
// clusters and endpoints is listed SYNCED for both, with its cluster and
// role, and "-" for the types it did not ask for.
func TestProxyStatusAgainstDiscovery(t *testing.T) {
	addr := cptest.ServeWithSidecar(t, filepath.Join(walkthrough, "cluster1"), nil)
	id := cptest.SidecarID

	args := []string{"proxy-status", "--xds-address", addr, "--plaintext"}
	var rows []proxystatus.Row
	testkit.WaitFor(t, "proxy-status to show the sidecar SYNCED for cds and eds", func() bool {
		code, out, errOut := run(t, append(args, "-o", "json")...)
		if code != 0 {
			t.Fatalf("proxy-status: exit %d: %s", code, errOut)
		}
		rows = nil
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatal(err)
		}
		return len(rows) == 1 && rows[0].Types["cds"].Status == proxystatus.Synced && rows[0].Types["eds"].Status == proxystatus.Synced
	})
	r := rows[0]
	if r.Proxy != id || r.Cluster != "cluster1" || r.Role != "sidecar" || r.Replica != addr || len(r.Types) != 2 {
		t.Errorf("row: %+v", r)
	}
	code, out, errOut := run(t, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "PROXY ") {
		t.Fatalf("table: exit %d\n%s%s", code, out, errOut)
	}
	f := strings.Fields(lines[1])
	// PROXY CLUSTER NETWORK ROLE LOCALITY VERSION CDS(2) LDS EDS(2) RDS NDS REPLICA
	if len(f) != 14 || f[0] != id || f[1] != "cluster1" || f[3] != "sidecar" || f[6] != "SYNCED" || f[8] != "-" || f[9] != "SYNCED" ||
		f[11] != "-" || f[12] != "-" || f[13] != addr {
		t.Errorf("table row %q", lines[1])
	}
}

func TestProxyStatusUsage(t *testing.T) {
	for _, args := range [][]string{
		{"proxy-status", "-o", "xml", "--xds-address", "127.0.0.1:1", "--plaintext"},
		{"proxy-status", "--plaintext"},
	} {
		if code, _, errOut := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage): %s", args, code, errOut)
		}
	}
	// A replica that does not answer: exit 1, the error named.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	code, _, errOut := run(t, "proxy-status", "--xds-address", addr, "--plaintext", "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "replica "+addr) {
		t.Errorf("a replica that does not answer: exit %d: %s", code, errOut)
	}
}
