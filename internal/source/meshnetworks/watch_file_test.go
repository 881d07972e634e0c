package meshnetworks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/source/filewatch"
)

const net2 = "networks:\n  network2:\n    endpoints: [{fromRegistry: c2}]\n    gateways: [{address: 192.0.2.1, port: 443}]\n"

// twoNets is the walkthrough's shape: cutting it after network1 still
// parses, but then network2's pods look reachable directly.
const twoNets = `networks:
  network1:
    endpoints:
    - fromRegistry: c1
    gateways:
    - address: 192.0.2.1
      port: 443
  network2:
    endpoints:
    - fromRegistry: c2
    gateways:
    - address: 192.0.2.2
      port: 443
`

// quick settles fast and polls often, like the old watcher's tests did.
var quick = filewatch.Options{Settle: 50 * time.Millisecond, Poll: 10 * time.Millisecond}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes path atomically (a temporary file renamed over it).
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	writeFile(t, path+".tmp", content)
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func startWatch(t *testing.T, path string, opts filewatch.Options) recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := newRecorder()
	if err := watchFile(ctx, path, opts, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWatchFileAppliesValidChangesAndRejectsInvalidOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mn.yaml")
	writeFile(t, path, "networks: {bad")
	if err := watchFile(context.Background(), path, quick, newRecorder()); err == nil {
		t.Fatal("an invalid file at start must be an error")
	}
	writeFile(t, path, net2)
	r := startWatch(t, path, quick)
	r.Expect(t, "applied network2[c2] gw 192.0.2.1:443")
	replaceFile(t, path, strings.Replace(net2, "port: 443", "port: 0", 1))
	r.Expect(t, "rejected")
	replaceFile(t, path, strings.Replace(net2, "192.0.2.1", "192.0.2.2", 1))
	r.Expect(t, "applied network2[c2] gw 192.0.2.2:443")
}

// One rule for empty files, at start and live: rejected, naming the file and
// the way to say "no networks".
func TestWatchFileEmptyIsRejectedAtStartAndLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mn.yaml")
	for _, empty := range []string{"", " \n\t\n", "# networks removed\n---\n"} {
		writeFile(t, path, empty)
		err := watchFile(context.Background(), path, quick, newRecorder())
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "networks: {}") {
			t.Fatalf("start with %q: err = %v, want one naming %s and `networks: {}`", empty, err, path)
		}
	}
	writeFile(t, path, "networks: {}\n")
	r := startWatch(t, path, quick)
	r.Expect(t, "applied (no networks)")
	replaceFile(t, path, net2)
	r.Expect(t, "applied network2")
	replaceFile(t, path, "\n  \n")
	if got := r.Expect(t, "rejected"); !strings.Contains(got, path) || !strings.Contains(got, "networks: {}") {
		t.Errorf("live: %q", got)
	}
}

// A deleted file is reported, the last good config stays, and the file is
// applied again when it is back — even with the same content.
func TestWatchFileDeletedIsReportedAndAppliedWhenBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mn.yaml")
	writeFile(t, path, net2)
	r := startWatch(t, path, quick)
	r.Expect(t, "applied network2")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := r.Expect(t, "rejected"); !strings.Contains(got, path) || !strings.Contains(got, "cannot be read") {
		t.Errorf("deleted: %q", got)
	}
	replaceFile(t, path, net2)
	r.Expect(t, "applied network2[c2] gw 192.0.2.1:443")
}

// A symlink whose target goes missing is reported; once the target is back
// the file is loaded again (the old watcher never retried a failed read).
func TestWatchFileDanglingSymlinkIsRetriedWhenFixed(t *testing.T) {
	dir := t.TempDir()
	target, path := filepath.Join(dir, "real.yaml"), filepath.Join(dir, "mn.yaml")
	writeFile(t, target, net2)
	if err := os.Symlink("real.yaml", path); err != nil {
		t.Fatal(err)
	}
	r := startWatch(t, path, quick)
	r.Expect(t, "applied network2")
	if err := os.Rename(target, target+".away"); err != nil {
		t.Fatal(err)
	}
	if got := r.Expect(t, "rejected"); !strings.Contains(got, path) {
		t.Errorf("dangling: %q", got)
	}
	if err := os.Rename(target+".away", target); err != nil {
		t.Fatal(err)
	}
	r.Expect(t, "applied network2[c2] gw 192.0.2.1:443")
}

// A writer that stops after a prefix that parses (network1 only) for longer
// than the old watcher's two polls must not get that prefix applied: a
// pause shorter than the settle time is covered.
func TestWatchFileValidPrefixIsNotAppliedWhileWriterPausesWithinSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mn.yaml")
	writeFile(t, path, net2)
	r := startWatch(t, path, filewatch.Options{Settle: time.Second, Poll: 10 * time.Millisecond})
	r.Expect(t, "applied network2")

	prefix := twoNets[:strings.Index(twoNets, "  network2:")]
	if _, diags := Parse(path, []byte(prefix)); diags.Err() != nil {
		t.Fatalf("the prefix should be valid on its own: %v", diags.Err())
	}
	writeSlowly(t, path, prefix, twoNets[len(prefix):], 200*time.Millisecond)
	r.ExpectReached(t, "applied network1[c1] gw 192.0.2.1:443; network2[c2] gw 192.0.2.2:443", "applied ")
}

// A prefix that does not validate is never applied, however long the
// writer pauses: at most it is reported, then the completed file applies.
func TestWatchFileInvalidPrefixIsNeverApplied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mn.yaml")
	writeFile(t, path, net2)
	r := startWatch(t, path, quick)
	r.Expect(t, "applied network2")

	cut := strings.LastIndex(twoNets, "port:") + len("port:")
	f := openTruncated(t, path)
	write(t, f, twoNets[:cut])
	r.Expect(t, "rejected") // seen, settled, and refused
	write(t, f, twoNets[cut:])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.ExpectReached(t, "applied network1[c1] gw 192.0.2.1:443; network2[c2] gw 192.0.2.2:443", "applied ")
}

// The Kubernetes ConfigMap volume: the visible file is a symlink into
// ..data, and ..data is swapped atomically to a new timestamped directory.
// Polling is off (an hour), so only the directory watch can see the swap.
func TestWatchFileFollowsConfigMapVolumeSwaps(t *testing.T) {
	dir := t.TempDir()
	configMapVersion(t, dir, "..2026_01_01_00_00_00.000000001", net2)
	if err := os.Symlink(filepath.Join("..data", ConfigMapKey), filepath.Join(dir, ConfigMapKey)); err != nil {
		t.Fatal(err)
	}
	r := startWatch(t, filepath.Join(dir, ConfigMapKey), filewatch.Options{Settle: 50 * time.Millisecond, Poll: time.Hour})
	r.Expect(t, "applied network2[c2] gw 192.0.2.1:443")
	configMapVersion(t, dir, "..2026_01_01_00_00_01.000000002", strings.Replace(net2, "c2", "c3", 1))
	r.Expect(t, "applied network2[c3] gw 192.0.2.1:443")
	configMapVersion(t, dir, "..2026_01_01_00_00_02.000000003", "networks: {n: {gateways: [{address: 1.2.3.4}]}}")
	r.Expect(t, "rejected")
}

// configMapVersion does what the kubelet does on a ConfigMap update: a new
// timestamped directory, ..data_tmp pointing at it renamed over ..data,
// the previous directory removed.
func configMapVersion(t *testing.T, dir, version, content string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, version, ConfigMapKey), content)
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// writeSlowly rewrites path in place: first, a pause, then rest.
func writeSlowly(t *testing.T, path, first, rest string, pause time.Duration) {
	t.Helper()
	f := openTruncated(t, path)
	write(t, f, first)
	time.Sleep(pause) // the writer's pause, not a wait for the watcher
	write(t, f, rest)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func openTruncated(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
