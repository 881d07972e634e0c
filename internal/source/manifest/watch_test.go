package manifest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
	"github.com/horizonmesh/horizon/internal/source/filewatch"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// registry records every call in order: "set [endpoints]", "error MSG",
// "clear", and hands each to the test.
type registry struct{ *testkit.Events }

func (r registry) SetCluster(c source.Cluster) {
	r.Add("set " + endpoints(c.Source.(*kube.Source).Store))
}

func (r registry) ClusterError(_ model.ClusterID, _, msg string) {
	if msg == "" {
		r.Add("clear")
		return
	}
	r.Add("error " + msg)
}

// endpoints lists the addresses of every endpoint of the store, sorted.
func endpoints(s *kube.Store) string {
	snap, _ := kube.Convert("c1", s, kube.Options{})
	var addrs []string
	for _, svc := range snap.Services {
		for _, eps := range svc.Endpoints {
			for _, e := range eps {
				addrs = append(addrs, e.Address.String())
			}
		}
	}
	slices.Sort(addrs)
	return fmt.Sprint(addrs)
}

func startWatch(t *testing.T, path string, opts filewatch.Options) registry {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := registry{testkit.NewEvents()}
	if err := watch(ctx, ClusterSource{ID: "c1", Path: path}, opts, kube.Options{}, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// sliceWith is hello's EndpointSlice with the given pod addresses.
func sliceWith(addrs ...string) string {
	s := strings.TrimSuffix(sliceDoc[:strings.Index(sliceDoc, "endpoints:")], "\n") + "\nendpoints:\n"
	for _, a := range addrs {
		s += fmt.Sprintf("- addresses: [%s]\n", a)
	}
	return s
}

var quick = filewatch.Options{Settle: 50 * time.Millisecond, Poll: 10 * time.Millisecond}

func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A rejected change is logged (the docs promise a log line) as well as
// reported, and the next valid change clears the error.
func TestWatchLogsAndReportsRejectedChanges(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "all.yaml", svcDoc+"---\n"+sliceWith("10.0.0.1"))
	logs := &testkit.SyncBuffer{}
	opts := quick
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r := startWatch(t, dir, opts)
	r.Expect(t, "set [10.0.0.1]")

	replaceFile(t, file, svcDoc+"---\nkind: [\n")
	r.Expect(t, "error change rejected")
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "cluster=c1") || !strings.Contains(l, "all.yaml#2") {
		t.Errorf("rejection not logged with cluster and file:\n%s", l)
	}
	replaceFile(t, file, svcDoc+"---\n"+sliceWith("10.0.0.2"))
	r.Expect(t, "set [10.0.0.2]", "clear")
}

// A manifest cut after `endpoints:` still decodes (an EndpointSlice with no
// endpoints is legal), so only the settle time protects a writer that
// pauses: a pause longer than the old two polls, shorter than the settle
// time, must not drop the pods.
func TestWatchValidPrefixIsNotAppliedWhileWriterPausesWithinSettle(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "all.yaml", svcDoc+"---\n"+sliceWith("10.0.0.1", "10.0.0.2"))
	r := startWatch(t, dir, filewatch.Options{Settle: time.Second, Poll: 10 * time.Millisecond})
	r.Expect(t, "set [10.0.0.1 10.0.0.2]")

	full := svcDoc + "---\n" + sliceWith("10.0.0.1", "10.0.0.3")
	prefix := full[:strings.Index(full, "endpoints:")+len("endpoints:\n")]
	f := openTruncated(t, file)
	writeTo(t, f, prefix)
	time.Sleep(200 * time.Millisecond) // the writer's pause, not a wait for the watcher
	writeTo(t, f, full[len(prefix):])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.ExpectReached(t, "set [10.0.0.1 10.0.0.3]", "set ")
}

// A prefix that does not decode is never applied, however long the writer
// pauses: it is reported, then the completed file applies.
func TestWatchInvalidPrefixIsNeverApplied(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "all.yaml", svcDoc+"---\n"+sliceWith("10.0.0.1"))
	r := startWatch(t, dir, quick)
	r.Expect(t, "set [10.0.0.1]")

	full := svcDoc + "---\n" + sliceWith("10.0.0.1", "10.0.0.3")
	cut := strings.LastIndex(full, "[10.0.0.3") + len("[10.0")
	f := openTruncated(t, file)
	writeTo(t, f, full[:cut])
	r.Expect(t, "error change rejected")
	writeTo(t, f, full[cut:])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.ExpectReached(t, "set [10.0.0.1 10.0.0.3]", "set ")
}

// A file replaced by a dangling symlink is rejected; once the symlink is
// removed, the rest is loaded (the old watcher's fingerprint skipped the
// dangling link, so removing it changed nothing and the cluster was stuck).
func TestWatchDanglingSymlinkRemovedIsRetried(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "svc.yaml", svcDoc)
	slice := write(t, dir, "slice.yaml", sliceWith("10.0.0.1"))
	r := startWatch(t, dir, quick)
	r.Expect(t, "set [10.0.0.1]")

	if err := os.Symlink("missing.yaml", filepath.Join(dir, ".link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, ".link"), slice); err != nil {
		t.Fatal(err)
	}
	r.Expect(t, "error change rejected")
	if err := os.Remove(slice); err != nil {
		t.Fatal(err)
	}
	r.Expect(t, "set []", "clear")
	replaceFile(t, slice, sliceWith("10.0.0.4"))
	r.Expect(t, "set [10.0.0.4]", "clear")
}

// Manifests mounted from a ConfigMap: files are symlinks into ..data, which
// the kubelet swaps atomically. Polling is off (an hour), so only the
// directory watch can see the swap.
func TestWatchFollowsConfigMapVolumeSwaps(t *testing.T) {
	dir := t.TempDir()
	swap := func(version, content string) {
		t.Helper()
		write(t, filepath.Join(dir, version), "cluster.yaml", content)
		if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	swap("..2026_01_01_00_00_00.000000001", svcDoc+"---\n"+sliceWith("10.0.0.1"))
	if err := os.Symlink("..data/cluster.yaml", filepath.Join(dir, "cluster.yaml")); err != nil {
		t.Fatal(err)
	}
	r := startWatch(t, dir, filewatch.Options{Settle: 50 * time.Millisecond, Poll: time.Hour})
	r.Expect(t, "set [10.0.0.1]")
	swap("..2026_01_01_00_00_01.000000002", svcDoc+"---\n"+sliceWith("10.0.0.5"))
	r.Expect(t, "set [10.0.0.5]", "clear")
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

func writeTo(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
