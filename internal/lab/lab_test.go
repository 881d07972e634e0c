package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/k8sproc"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// The test binary doubles as a fake control-plane process (symlinked as
// etcd, kube-apiserver, ...) when fakeEnv is set: "sleep" runs until a
// signal, "ignore-term" ignores SIGTERM, "exit" fails at once with a line
// on stderr.
const fakeEnv = "HORIZON_LAB_FAKE"

// ignoringTerm is what an "ignore-term" fake logs once it ignores SIGTERM.
const ignoringTerm = "fake: ignoring SIGTERM"

func TestMain(m *testing.M) {
	switch os.Getenv(fakeEnv) {
	case "":
		os.Exit(m.Run())
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		// Said once SIGTERM is ignored: a test that stops it waits for
		// this line rather than for a time that a busy machine outlasts.
		fmt.Fprintln(os.Stderr, ignoringTerm)
	case "exit":
		fmt.Fprintln(os.Stderr, "fake: cannot bind: something is wrong")
		os.Exit(3)
	}
	select {}
}

// fakeBins makes dir hold the named fake binaries.
func fakeBins(t *testing.T, dir string, names ...string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.Symlink(exe, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
}

func flag(t *testing.T, args []string, name string) string {
	t.Helper()
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	t.Errorf("no %s in %q", name, args)
	return ""
}

func TestCommands(t *testing.T) {
	dir := clusterDir("/state/cluster2")
	p := Ports{EtcdClient: 1001, EtcdPeer: 1002, APIServer: 1003, ControllerManager: 1004, Scheduler: 1005}
	cmds := commands("/bin", Clusters[1], dir, p)
	var names []string
	for _, c := range cmds {
		names = append(names, c.Component)
		if c.Path != "/bin/"+c.Component {
			t.Errorf("%s runs %s", c.Component, c.Path)
		}
		// Down finds a lost process by its command line naming the state
		// directory.
		if !matchesLab(append([]string{c.Path}, c.Args...), "/state/", false) {
			t.Errorf("%s's command line does not name the state directory: %q", c.Component, c.Args)
		}
	}
	if !slices.Equal(names, Components) {
		t.Fatalf("components %v, want %v", names, Components)
	}
	etcd, api, kcm, sched := cmds[0].Args, cmds[1].Args, cmds[2].Args, cmds[3].Args

	if got := flag(t, etcd, "--listen-client-urls"); got != "http://127.0.0.1:1001" {
		t.Errorf("etcd client URL %s", got)
	}
	if got := flag(t, etcd, "--listen-peer-urls"); got != "http://127.0.0.1:1002" {
		t.Errorf("etcd peer URL %s", got)
	}
	if got := flag(t, etcd, "--data-dir"); got != "/state/cluster2/etcd-data" {
		t.Errorf("etcd data dir %s", got)
	}

	for flagName, want := range map[string]string{
		"--etcd-servers":                     "http://127.0.0.1:1001",
		"--secure-port":                      "1003",
		"--bind-address":                     "127.0.0.1",
		"--service-cluster-ip-range":         "10.97.0.0/16",
		"--authorization-mode":               "RBAC",
		"--service-account-issuer":           "https://kubernetes.default.svc.cluster2",
		"--service-account-key-file":         "/state/cluster2/pki/sa.pub",
		"--service-account-signing-key-file": "/state/cluster2/pki/sa.key",
		"--client-ca-file":                   "/state/cluster2/pki/ca.crt",
		"--kubelet-preferred-address-types":  "InternalIP",
		"--kubelet-certificate-authority":    "/state/cluster2/pki/ca.crt",
		"--kubelet-client-certificate":       "/state/cluster2/pki/apiserver-kubelet-client.crt",
		"--kubelet-client-key":               "/state/cluster2/pki/apiserver-kubelet-client.key",
	} {
		if got := flag(t, api, flagName); got != want {
			t.Errorf("kube-apiserver %s=%s, want %s", flagName, got, want)
		}
	}
	admission := strings.Split(flag(t, api, "--enable-admission-plugins"), ",")
	for _, want := range []string{"ServiceAccount", "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook", "NamespaceLifecycle"} {
		if !slices.Contains(admission, want) {
			t.Errorf("admission plugins %v lack %s", admission, want)
		}
	}
	if slices.Contains(api, "--disable-admission-plugins") {
		t.Error("the lab disables admission plugins")
	}

	for flagName, want := range map[string]string{
		"--controllers":                      "*",
		"--use-service-account-credentials":  "true",
		"--leader-elect":                     "false",
		"--secure-port":                      "1004",
		"--bind-address":                     "127.0.0.1",
		"--root-ca-file":                     "/state/cluster2/pki/ca.crt",
		"--kubeconfig":                       "/state/cluster2/kube-controller-manager.kubeconfig",
		"--cert-dir":                         "/state/cluster2/kube-controller-manager-certs",
		"--service-account-private-key-file": flag(t, api, "--service-account-signing-key-file"), // one key signs every token
	} {
		if got := flag(t, kcm, flagName); got != want {
			t.Errorf("kube-controller-manager %s=%s, want %s", flagName, got, want)
		}
	}
	for flagName, want := range map[string]string{
		"--leader-elect": "false",
		"--secure-port":  "1005",
		"--bind-address": "127.0.0.1",
		"--kubeconfig":   "/state/cluster2/kube-scheduler.kubeconfig",
		"--cert-dir":     "/state/cluster2/kube-scheduler-certs",
	} {
		if got := flag(t, sched, flagName); got != want {
			t.Errorf("kube-scheduler %s=%s, want %s", flagName, got, want)
		}
	}
	for _, c := range Components {
		if p.of(c) == 0 {
			t.Errorf("no port for %s", c)
		}
	}
}

func TestClusters(t *testing.T) {
	if len(Clusters) != 2 || Clusters[0].Name != "cluster1" || Clusters[1].Name != "cluster2" {
		t.Fatalf("clusters %+v", Clusters)
	}
	for i, want := range []string{"10.96.0.1", "10.97.0.1"} {
		ip, err := serviceIP(Clusters[i].ServiceCIDR)
		if err != nil || ip.String() != want {
			t.Errorf("%s: kubernetes Service IP %v %v, want %s", Clusters[i].Name, ip, err, want)
		}
	}
	if _, err := serviceIP("fd00::/64"); err == nil {
		t.Error("an IPv6 service CIDR passed")
	}
}

func TestDefaultStateDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/xdg/state")
	if got := DefaultStateDir(); got != "/xdg/state/horizon/lab" {
		t.Errorf("with XDG_STATE_HOME: %s", got)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/someone")
	if got := DefaultStateDir(); got != "/home/someone/.local/state/horizon/lab" {
		t.Errorf("without XDG_STATE_HOME: %s", got)
	}
}

func TestEnv(t *testing.T) {
	if got, want := Env("/s/lab", ""), "export KUBECONFIG=/s/lab/kubeconfig CTX_LOCAL=cluster1 CTX_REMOTE=cluster2\n"; got != want {
		t.Errorf("Env = %q, want %q", got, want)
	}
	if got, want := Env("/my lab/it's", "/k8s bins"), `export KUBECONFIG='/my lab/it'\''s/kubeconfig' CTX_LOCAL=cluster1 CTX_REMOTE=cluster2 PATH='/k8s bins':"$PATH"`+"\n"; got != want {
		t.Errorf("Env = %q, want %q", got, want)
	}
	wd, _ := os.Getwd()
	if got := Env("rel", "bins"); !strings.Contains(got, "KUBECONFIG="+filepath.Join(wd, "rel", "kubeconfig")+" ") ||
		!strings.Contains(got, " PATH="+filepath.Join(wd, "bins")+`:"$PATH"`) {
		t.Errorf("a relative state or bin dir is not made absolute: %q", got)
	}
	// The lab's bin dir when it holds kubectl, else no PATH.
	bin, state := t.TempDir(), t.TempDir()
	if got := EnvOf(Options{StateDir: state, BinDir: bin}); strings.Contains(got, "PATH") {
		t.Errorf("PATH without kubectl: %q", got)
	}
	fakeBins(t, bin, k8sproc.Kubectl)
	if got := EnvOf(Options{StateDir: state, BinDir: bin}); !strings.HasSuffix(got, " PATH="+bin+`:"$PATH"`+"\n") {
		t.Errorf("EnvOf = %q", got)
	}
}

func TestShellLine(t *testing.T) {
	got := shellLine([]string{"kubectl", "wait", "--for=jsonpath={.status.loadBalancer.ingress}", "-o", "jsonpath={.a[0]}", "--timeout=3m", "it's"})
	if want := `kubectl wait --for=jsonpath='{.status.loadBalancer.ingress}' -o 'jsonpath={.a[0]}' --timeout=3m 'it'\''s'`; got != want {
		t.Errorf("shellLine = %s, want %s", got, want)
	}
}

func TestParseStat(t *testing.T) {
	line := "4242 (kube) (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 12 0 987654 123 456\n"
	st, err := parseStat([]byte(line))
	if err != nil || st.state != 'S' || st.start != 987654 {
		t.Errorf("parseStat = %+v, %v", st, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) passed", bad)
		}
	}
	self, err := readStat(os.Getpid())
	if err != nil || self.start == 0 {
		t.Fatalf("own stat: %+v %v", self, err)
	}
	me := Process{PID: os.Getpid(), StartTime: self.start}
	if !me.Running() {
		t.Error("this process is not running")
	}
	me.StartTime++
	if me.Running() {
		t.Error("a reused PID (other start time) counts as the recorded process")
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	if st, err := LoadState(dir); st != nil || err != nil {
		t.Fatalf("no state: %v %v", st, err)
	}
	st := &State{StateDir: dir, BinDir: "/bin"}
	c := st.cluster("cluster1")
	c.Ports.APIServer = 6443
	c.Processes = append(c.Processes, Process{Component: "etcd", PID: 7, StartTime: 8, Port: 9, Log: "x.log"})
	if st.cluster("cluster1") != c || len(st.Clusters) != 1 {
		t.Fatal("cluster() does not find a recorded cluster")
	}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil || got == nil {
		t.Fatal(err)
	}
	if got.Clusters[0].Ports.APIServer != 6443 || got.processes()[0] != c.Processes[0] {
		t.Errorf("round trip: %+v", got)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(dir); err == nil || !strings.Contains(err.Error(), stateFile) {
		t.Errorf("a corrupt state file: %v", err)
	}

	// Only the lab's entries go; the directory stays while anything else
	// is in it.
	for _, e := range []string{"cluster1/pki", "cluster2"} {
		if err := os.MkdirAll(filepath.Join(dir, e), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "mine.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !hasRuntime(dir) {
		t.Fatal("hasRuntime: false")
	}
	if err := removeRuntime(dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "mine.txt" || hasRuntime(dir) {
		t.Errorf("left %v", ents)
	}
	os.Remove(filepath.Join(dir, "mine.txt"))
	if err := removeRuntime(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the empty state dir stays: %v", err)
	}
}

func TestMatchesLab(t *testing.T) {
	for _, c := range []struct {
		argv []string
		any  bool
		want bool
	}{
		{[]string{"/bin/etcd", "--data-dir", "/s/lab/cluster1/etcd-data"}, false, true},
		{[]string{"/bin/kube-scheduler", "--kubeconfig=/s/lab/cluster1/x"}, false, true},
		{[]string{"/bin/etcd", "--data-dir", "/s/lab2/cluster1/etcd-data"}, false, false}, // another state dir
		{[]string{"tail", "-f", "/s/lab/cluster1/etcd.log"}, false, false},
		{[]string{"tail", "-f", "/s/lab/cluster1/etcd.log"}, true, true},
		{nil, true, false},
		// The lab node names the state directory itself.
		{[]string{"/usr/bin/horizon", "lab", "node", "--state-dir", "/s/lab", "--cluster", "cluster1"}, false, true},
		{[]string{"/usr/bin/horizon", "lab", "node", "--state-dir", "/s/lab2", "--cluster", "cluster1"}, false, false},
		{[]string{"/usr/bin/horizon", "lab", "status", "--state-dir", "/s/lab"}, false, false},
	} {
		if got := matchesLab(c.argv, "/s/lab/", c.any); got != c.want {
			t.Errorf("matchesLab(%q, any=%v) = %v", c.argv, c.any, got)
		}
	}
}

// Down stops recorded processes, stray ones a lost lab.json would hide,
// and ones that ignore SIGTERM; it leaves alone processes of another state
// directory, removes the lab's files and is a no-op the second time.
func TestDownStopsEverything(t *testing.T) {
	bin, state, other := t.TempDir(), filepath.Join(t.TempDir(), "lab"), t.TempDir()
	fakeBins(t, bin, Components...)
	dir := clusterDir(filepath.Join(state, "cluster1"))
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	st := &State{StateDir: state, BinDir: bin}
	start := func(component, mode, arg string) *child {
		t.Helper()
		t.Setenv(fakeEnv, mode)
		p, err := spawn(command{Component: component, Path: filepath.Join(bin, component), Args: []string{"--x", arg}}, string(dir), dir.log(component), 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(p.PID, syscall.SIGKILL) })
		return p
	}
	recorded := start(k8sproc.Etcd, "sleep", dir.path("etcd-data"))
	stubborn := start(k8sproc.KubeAPIServer, "ignore-term", dir.pki("ca.crt"))
	c := st.cluster("cluster1")
	c.Processes = append(c.Processes, recorded.Process, stubborn.Process)
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	stray := start(k8sproc.KubeScheduler, "sleep", dir.kubeconfig("kube-scheduler"))
	foreign := start(k8sproc.Etcd, "sleep", filepath.Join(other, "etcd-data"))
	testkit.WaitFor(t, "the stubborn fake to ignore SIGTERM", func() bool {
		b, _ := os.ReadFile(dir.log(k8sproc.KubeAPIServer))
		return strings.Contains(string(b), ignoringTerm)
	})

	found := FindProcesses(state, false)
	for _, p := range []*child{recorded, stubborn, stray} {
		if !slices.Contains(found, p.PID) {
			t.Errorf("FindProcesses misses %s (pid %d): %v", p.Component, p.PID, found)
		}
	}
	if slices.Contains(found, foreign.PID) {
		t.Error("FindProcesses finds another state dir's process")
	}

	var progress bytes.Buffer
	n, err := Down(context.Background(), Options{StateDir: state, BinDir: bin, StopGrace: 300 * time.Millisecond, Progress: &progress})
	if err != nil || n != 3 {
		t.Fatalf("Down = %d, %v\n%s", n, err, &progress)
	}
	for _, p := range []*child{recorded, stubborn, stray} {
		select {
		case <-p.proc.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("%s (pid %d) still running", p.Component, p.PID)
		}
	}
	if err := stubborn.proc.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the process ignoring SIGTERM ended with %v, want killed", err)
	}
	if foreign.exited() {
		t.Error("Down stopped another state dir's process")
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
	progress.Reset()
	if n, err := Down(context.Background(), Options{StateDir: state, BinDir: bin, Progress: &progress}); n != 0 || err != nil ||
		!strings.Contains(progress.String(), "not up") {
		t.Errorf("second Down = %d, %v, %q", n, err, &progress)
	}
}

// Envoy is found where scripts/envoy.sh installs the version it pins.
func TestDefaultEnvoy(t *testing.T) {
	b, err := os.ReadFile("../../scripts/envoy.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nversion="+EnvoyVersion+"\n") || !strings.Contains(string(b), `venv="${HORIZON_ENVOY_VENV:-/opt/horizon/envoy-$version}"`) ||
		!strings.Contains(string(b), `bin="$venv/envoy-bin"`) {
		t.Errorf("scripts/envoy.sh does not install Envoy %s where DefaultEnvoy looks", EnvoyVersion)
	}
	t.Setenv(EnvoyVenvEnv, "")
	if got := DefaultEnvoy(); got != "/opt/horizon/envoy-"+EnvoyVersion+"/envoy-bin" {
		t.Errorf("DefaultEnvoy() = %s", got)
	}
	t.Setenv(EnvoyVenvEnv, "/v")
	if got := DefaultEnvoy(); got != "/v/envoy-bin" {
		t.Errorf("DefaultEnvoy() with %s=/v: %s", EnvoyVenvEnv, got)
	}
}

func TestUpNamesMissingBinary(t *testing.T) {
	bin := t.TempDir()
	fakeBins(t, bin, k8sproc.Etcd, k8sproc.KubeAPIServer)
	state := filepath.Join(t.TempDir(), "lab")
	_, err := Up(context.Background(), Options{StateDir: state, BinDir: bin})
	if err == nil || !strings.Contains(err.Error(), k8sproc.KubeControllerManager) || !strings.Contains(err.Error(), "scripts/k8s-bins.sh") {
		t.Errorf("Up without kube-controller-manager: %v", err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("Up without binaries made the state dir: %v", err)
	}
}

// testPrograms stand in for horizon, horizon-discovery, horizon-agent,
// helloworld and Envoy where Up only checks that they are there.
func testPrograms(t *testing.T, o Options) Options {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"horizon", DiscoveryProgram, AgentProgram} {
		if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	o.Horizon, o.Helloworld, o.Envoy = filepath.Join(dir, "horizon"), exe, exe
	return o
}

func TestUpRefusesMissingPrograms(t *testing.T) {
	bin := t.TempDir()
	fakeBins(t, bin, k8sproc.Etcd, k8sproc.KubeAPIServer, k8sproc.KubeControllerManager, k8sproc.KubeScheduler, k8sproc.Kubectl)
	notExec := filepath.Join(t.TempDir(), "envoy")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Nothing found by itself: no $HORIZON_ENVOY, no scripts/envoy.sh
	// installation, no helloworld next to this test binary.
	t.Setenv(EnvoyEnv, "")
	t.Setenv(EnvoyVenvEnv, filepath.Join(t.TempDir(), "venv"))
	exe, _ := os.Executable()
	partial := t.TempDir() // horizon and horizon-discovery, no horizon-agent
	for _, name := range []string{"horizon", DiscoveryProgram} {
		if err := os.Symlink(exe, filepath.Join(partial, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Envoy: "/nonexistent/envoy"}, "--envoy: stat /nonexistent/envoy"},
		{Options{Envoy: notExec}, "--envoy " + notExec + ": not an executable file"},
		{Options{Helloworld: t.TempDir()}, "--helloworld"},
		{Options{Envoy: exe}, "no helloworld program for the samples' istio/examples-helloworld images: none next to " + exe + "; `make build` builds bin/helloworld"},
		{Options{Helloworld: exe}, "no Envoy for the proxy pods (sidecars, gateways): $HORIZON_ENVOY is not set and " + os.Getenv(EnvoyVenvEnv) + "/envoy-bin does not exist; install it with ./scripts/envoy.sh"},
		{Options{Helloworld: exe, Envoy: exe}, "no horizon-discovery for the horizon/discovery images: " + filepath.Dir(exe) + "/horizon-discovery is not an executable file; `make build` builds bin/horizon-discovery"},
		{Options{Horizon: filepath.Join(partial, "horizon"), Helloworld: exe, Envoy: exe}, "no horizon-agent for the horizon/proxy images: " + partial + "/horizon-agent is not an executable file"},
	} {
		c.opts.StateDir, c.opts.BinDir = filepath.Join(t.TempDir(), "lab"), bin
		_, err := Up(context.Background(), c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Up(%+v): %v, want %q", c.opts, err, c.want)
		}
		if _, err := os.Stat(c.opts.StateDir); !os.IsNotExist(err) {
			t.Errorf("Up with a bad program made the state dir: %v", err)
		}
	}
}

// Up cleans what a crashed lab left (a recorded process, a stray one, its
// files), and when a process fails names it with its log's tail and stops
// everything it started.
func TestUpCleansLeftoversAndReportsFailure(t *testing.T) {
	bin := t.TempDir()
	fakeBins(t, bin, append(Components, k8sproc.Kubectl)...)
	state := filepath.Join(t.TempDir(), "lab")
	dir := clusterDir(filepath.Join(state, "cluster2"))
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeEnv, "sleep")
	old, err := spawn(command{Component: k8sproc.KubeAPIServer, Path: filepath.Join(bin, k8sproc.KubeAPIServer), Args: []string{dir.pki("ca.crt")}}, string(dir), dir.log("old"), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(old.PID, syscall.SIGKILL) })
	st := &State{StateDir: state, BinDir: bin}
	st.cluster("cluster2").Processes = []Process{old.Process}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}

	t.Setenv(fakeEnv, "exit") // every fake etcd fails at once
	var progress bytes.Buffer
	_, err = Up(context.Background(), testPrograms(t, Options{StateDir: state, BinDir: bin, Progress: &progress, Timeout: 20 * time.Second}))
	select {
	case <-old.proc.Done():
	case <-time.After(5 * time.Second):
		t.Error("the earlier lab's process still runs")
	}
	if !strings.Contains(progress.String(), "leftover") {
		t.Errorf("no word of the leftovers:\n%s", &progress)
	}
	if err == nil {
		t.Fatal("Up passed with failing processes")
	}
	for _, want := range []string{"cluster1: etcd exited (exit status 3)", "cluster2: etcd exited", "fake: cannot bind: something is wrong",
		filepath.Join(state, "cluster1", "etcd.log")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if left := FindProcesses(state, true); len(left) > 0 {
		t.Errorf("processes left after a failed Up: %v", left)
	}
	if _, err := os.Stat(filepath.Join(state, "cluster1", "etcd.log")); err != nil {
		t.Errorf("the failed process's log is gone: %v", err)
	}
}

// A process that does not come up in time is named with what was awaited.
func TestUpTimeout(t *testing.T) {
	bin := t.TempDir()
	fakeBins(t, bin, append(Components, k8sproc.Kubectl)...)
	state := filepath.Join(t.TempDir(), "lab")
	t.Setenv(fakeEnv, "sleep") // a fake etcd never answers /health
	begin := time.Now()
	_, err := Up(context.Background(), testPrograms(t, Options{StateDir: state, BinDir: bin, Timeout: 1500 * time.Millisecond, StopGrace: time.Second}))
	if err == nil || !strings.Contains(err.Error(), "etcd not ready after") {
		t.Fatalf("Up = %v", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("Up took %s to give up", d)
	}
	if left := FindProcesses(state, true); len(left) > 0 {
		t.Errorf("processes left after a failed Up: %v", left)
	}
	st, err := LoadState(state)
	if err != nil || st == nil || len(st.processes()) != 2 {
		t.Fatalf("state after a failed Up: %+v %v", st, err)
	}
	if n, err := Down(context.Background(), Options{StateDir: state, BinDir: bin}); err != nil || n != 0 {
		t.Errorf("Down after a failed Up = %d, %v", n, err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
}

func TestWritePods(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	created := metav1.NewTime(now.Add(-90 * time.Second))
	deleting := metav1.NewTime(now)
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "sample", Name: "b", CreationTimestamp: created},
			Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{}, {}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.5", ContainerStatuses: []corev1.ContainerStatus{
				{Ready: true, RestartCount: 2}, {Ready: false, RestartCount: 1}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "sample", Name: "a", CreationTimestamp: created},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "c", DeletionTimestamp: &deleting},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "d"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
				{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}}}},
	}
	var b bytes.Buffer
	WritePods(&b, pods, now, "  ")
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	want := [][]string{
		{"NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"},
		{"default", "c", "0/1", "Terminating", "0", "<unknown>", "<none>", "<none>"},
		{"default", "d", "0/1", "ErrImagePull", "0", "<unknown>", "<none>", "<none>"},
		{"default", "e", "0/1", "Init:Error", "0", "<unknown>", "<none>", "<none>"},
		{"sample", "a", "0/1", "Pending", "0", "90s", "<none>", "<none>"},
		{"sample", "b", "1/2", "Running", "3", "90s", "10.0.0.5", "node1"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", &b)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "  ") || !slices.Equal(strings.Fields(l), want[i]) {
			t.Errorf("line %d: %q, want %v", i, l, want[i])
		}
	}
	b.Reset()
	WritePods(&b, nil, now, "")
	if b.String() != "No Pods.\n" {
		t.Errorf("no pods: %q", &b)
	}
}

// Up is its named steps, in order (up.go).
func TestUpSteps(t *testing.T) {
	names := func(steps any) string {
		var out []string
		v := reflect.ValueOf(steps)
		for i := range v.Len() {
			out = append(out, reflect.TypeOf(v.Index(i).Interface()).Name())
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct{ got, want string }{
		{names(upSteps(nil)), "checkPrograms cleanLeftovers buildNetworks recordState"},
		{names(startSteps()), "startControlPlanes writeKubeconfig startNodes"},
		{names(clusterSteps()), "prepareCluster startEtcd startAPIServer startControllers awaitServiceAccount"},
	} {
		if c.got != c.want {
			t.Errorf("steps %s, want %s", c.got, c.want)
		}
	}
}

// otherRunningLab is a lab in another state directory with one running
// (fake) process, recorded as the owner of the machine's lab networks in
// a file of the test's; it returns that directory, the process and the
// owner file.
func otherRunningLab(t *testing.T, bin string) (string, *child, string) {
	t.Helper()
	other := filepath.Join(t.TempDir(), "other-lab")
	dir := clusterDir(filepath.Join(other, "cluster1"))
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeEnv, "sleep")
	p, err := spawn(command{Component: k8sproc.KubeAPIServer, Path: filepath.Join(bin, k8sproc.KubeAPIServer), Args: []string{dir.pki("ca.crt")}}, string(dir), dir.log("api"), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(p.PID, syscall.SIGKILL) })
	st := &State{StateDir: other, BinDir: bin}
	st.cluster("cluster1").Processes = []Process{p.Process}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	owner := filepath.Join(t.TempDir(), "lab-owner")
	if err := writeOwner(owner, other); err != nil {
		t.Fatal(err)
	}
	return other, p, owner
}

// One lab per machine: Up stops, whole, the running lab of another state
// directory that holds the lab networks (rather than rebuilding them under
// it), and records itself as their owner.
func TestUpStopsTheLabOfAnotherStateDir(t *testing.T) {
	bin := t.TempDir()
	fakeBins(t, bin, append(Components, k8sproc.Kubectl)...)
	other, p, owner := otherRunningLab(t, bin)
	state := filepath.Join(t.TempDir(), "lab")
	t.Setenv(fakeEnv, "exit") // this lab's fake etcds fail at once: Up stops after its networks
	var progress bytes.Buffer
	if _, err := Up(context.Background(), testPrograms(t, Options{StateDir: state, BinDir: bin, Progress: &progress, Timeout: 20 * time.Second, OwnerFile: owner})); err == nil {
		t.Fatal("Up passed with failing processes")
	}
	select {
	case <-p.proc.Done():
	case <-time.After(5 * time.Second):
		t.Error("the other lab's process still runs")
	}
	if want := "stopping the lab in " + other + " (1 processes)"; !strings.Contains(progress.String(), want) {
		t.Errorf("progress lacks %q:\n%s", want, &progress)
	}
	if got := readOwner(owner); got != state {
		t.Errorf("owner %q, want %q", got, state)
	}
}

// Down leaves the lab networks alone while another state directory's lab
// that holds them runs, and stops only its own processes.
func TestDownLeavesARunningOtherLabsNetworks(t *testing.T) {
	bin := t.TempDir()
	fakeBins(t, bin, append(Components, k8sproc.Kubectl)...)
	other, p, owner := otherRunningLab(t, bin)
	mine, _, _ := otherRunningLab(t, bin) // this lab: one process of its own
	var progress bytes.Buffer
	n, err := Down(context.Background(), Options{StateDir: mine, BinDir: bin, Progress: &progress, OwnerFile: owner, StopGrace: time.Second})
	if err != nil || n != 1 {
		t.Fatalf("Down = %d, %v", n, err)
	}
	if want := "leaving the lab networks to the lab in " + other + ", which runs"; !strings.Contains(progress.String(), want) {
		t.Errorf("progress lacks %q:\n%s", want, &progress)
	}
	select {
	case <-p.proc.Done():
		t.Error("Down stopped the other lab's process")
	default:
	}
}

// The owner file is believed only when it names a lab's state directory:
// a relative path, a directory without lab.json, or one whose lab.json is
// another lab's, names no other lab (and so nothing is stopped).
func TestOtherLabBelievesOnlyALabsStateDir(t *testing.T) {
	bin := t.TempDir()
	fakeBins(t, bin, append(Components, k8sproc.Kubectl)...)
	other, _, owner := otherRunningLab(t, bin)
	o := Options{StateDir: filepath.Join(t.TempDir(), "lab"), OwnerFile: owner}
	if got, procs := otherLab(o); got != other || len(procs) != 1 {
		t.Fatalf("a running lab's owner file: %q, %d processes", got, len(procs))
	}
	notALab := t.TempDir()
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(other, moved); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"relative/dir", notALab, moved, "/"} {
		if err := writeOwner(owner, bad); err != nil {
			t.Fatal(err)
		}
		if got, procs := otherLab(o); got != "" || procs != nil {
			t.Errorf("owner %q: %q, %d processes; want none", bad, got, len(procs))
		}
	}
}
