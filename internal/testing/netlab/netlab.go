// Package netlab builds test networks from Linux network namespaces, veth
// pairs and bridges (internal/netns, as the lab does), and runs processes
// inside them. Every name it creates starts with the lab's prefix;
// leftovers of an earlier run with the same prefix are removed first.
package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/horizonmesh/horizon/internal/netns"
)

// Require skips the test unless it runs as root with ip, iptables, curl,
// setpriv and sysctl available; under CI=true or HORIZON_REQUIRE_E2E=1 (set
// by `make integration`) a missing prerequisite fails the test instead.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, b := range []string{"ip", "iptables", "curl", "setpriv", "sysctl"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("network-namespace tests need %s (run scripts/setup.sh as root: apt-get install iproute2 iptables curl util-linux procps)", strings.Join(missing, ", "))
		if os.Getenv("CI") == "true" || os.Getenv("HORIZON_REQUIRE_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// Lab is a set of namespaces joined by one bridge.
type Lab struct {
	t       testing.TB
	prefix  string
	bridge  string // namespace holding the bridge
	procs   []*Proc
	ns      []string
	links   int
	bridges int
}

// macFamily keeps the tests' bridge addresses apart from the lab's.
const macFamily = 'z'

// New creates the bridge namespace (PREFIX-br, bridge br0 with gateway
// address gw, e.g. "10.44.0.1/24") and removes leftovers first.
func New(t testing.TB, prefix, gw string) *Lab {
	t.Helper()
	l := &Lab{t: t, prefix: prefix, bridge: prefix + "-br"}
	l.cleanupLeftovers()
	t.Cleanup(l.close)
	l.addBridge(l.bridge, gw)
	return l
}

func (l *Lab) addBridge(ns, gw string) {
	l.t.Helper()
	l.addNS(ns)
	l.bridges++
	var p netns.Plan
	p.Bridge(ns, "br0", netns.BridgeMAC(macFamily, l.bridges), gw)
	p.Up(ns, "lo")
	l.apply(&p)
}

func (l *Lab) cleanupLeftovers() {
	ctx := context.Background()
	names, _ := netns.List(ctx, netns.ExecRunner{}, l.prefix+"-")
	for _, name := range names {
		_ = netns.Delete(ctx, netns.ExecRunner{}, name)
		_ = os.RemoveAll(filepath.Join("/etc/netns", name))
	}
	_ = exec.Command("ip", "link", "del", l.prefix+"-root").Run()
}

func (l *Lab) addNS(name string) {
	l.t.Helper()
	l.run("ip", "netns", "add", name)
	l.ns = append(l.ns, name)
}

// Host adds namespace PREFIX-name with address cidr (e.g. 10.44.0.10/24)
// on the bridge and a default route via gw; hosts lines go to its
// /etc/hosts. It returns the namespace's name.
func (l *Lab) Host(name, cidr, gw string, hosts ...string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.addNS(ns)
	a, b := ns+"-a", ns+"-b"
	if len(a) > 15 { // interface names are at most 15 bytes
		a, b = fmt.Sprintf("%s%da", l.prefix, len(l.ns)), fmt.Sprintf("%s%db", l.prefix, len(l.ns))
	}
	var p netns.Plan
	p.Veth(netns.End{NS: l.bridge, Name: a, Bridge: "br0"}, netns.End{NS: ns, Name: b, As: "eth0", CIDR: cidr})
	p.Up(ns, "lo")
	p.DefaultRoute(ns, gw)
	l.apply(&p)
	if len(hosts) > 0 {
		l.writeHosts(ns, hosts)
	}
	return ns
}

func (l *Lab) writeHosts(ns string, hosts []string) {
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	content := "127.0.0.1 localhost\n" + strings.Join(hosts, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(content), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// RootLink joins the test's own (root) namespace to the bridge with
// address cidr, so that a server the test runs in-process is reachable.
func (l *Lab) RootLink(cidr string) {
	l.t.Helper()
	l.AttachRoot(l.bridge, cidr)
}

// In runs a command in a namespace and fails the test if it fails.
func (l *Lab) In(ns string, args ...string) string {
	l.t.Helper()
	return l.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// Try runs a command in a namespace (as uid when uid > 0) and returns its
// output and error.
func (l *Lab) Try(ns string, uid int, args ...string) (string, error) {
	cmd := exec.Command("ip", l.nsArgs(ns, uid, args)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (l *Lab) nsArgs(ns string, uid int, args []string) []string {
	a := []string{"netns", "exec", ns}
	if uid > 0 {
		u := fmt.Sprint(uid)
		a = append(a, "setpriv", "--reuid", u, "--regid", u, "--clear-groups")
	}
	return append(a, args...)
}

// Start starts a long-running process in a namespace (as uid when uid > 0),
// its output to logFile; it is killed when the test ends. The process is
// the command itself (ip netns exec and setpriv exec it), the leader of
// its own process group: Kill ends it and what it started.
func (l *Lab) Start(ns string, uid int, logFile string, args ...string) *Proc {
	l.t.Helper()
	out, err := os.Create(logFile)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", l.nsArgs(ns, uid, args)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	l.procs = append(l.procs, p)
	return p
}

// Proc is a process Start started.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Kill SIGKILLs the process's group (a crash: no drain, no goodbye) and
// waits until the process is gone.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// apply runs a plan's commands, failing the test at the first that fails.
func (l *Lab) apply(p *netns.Plan) {
	l.t.Helper()
	for _, c := range p.Commands() {
		l.run(c...)
	}
}

func (l *Lab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *Lab) close() {
	for _, p := range l.procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	}
	for _, p := range l.procs {
		<-p.done
	}
	ctx := context.Background()
	for i := len(l.ns) - 1; i >= 0; i-- {
		_ = netns.Delete(ctx, netns.ExecRunner{}, l.ns[i])
		_ = os.RemoveAll(filepath.Join("/etc/netns", l.ns[i]))
	}
	_ = exec.Command("ip", "link", "del", l.prefix+"-root").Run()
}
