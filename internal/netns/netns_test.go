package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeRunner records commands and answers from a table; commands in fail
// fail.
type fakeRunner struct {
	ran     []string
	answers map[string]string
	fail    map[string]bool
}

func (f *fakeRunner) Run(_ context.Context, args ...string) (string, error) {
	cmd := strings.Join(args, " ")
	f.ran = append(f.ran, cmd)
	if f.fail[cmd] {
		return "", errors.New(cmd + ": failed")
	}
	return f.answers[cmd], nil
}

func joined(cmds [][]string) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = strings.Join(c, " ")
	}
	return out
}

func TestPlan(t *testing.T) {
	var p Plan
	p.Namespace("lab-r1")
	p.Up("lab-r1", "lo")
	p.Bridge("lab-r1", "br0", BridgeMAC('l', 1), "10.0.0.1/24")
	p.Bridge("lab-pub", "br0", BridgeMAC('l', 0x102), "")
	// A port of a bridge in another namespace, the other end renamed and
	// addressed in its own.
	p.Veth(End{NS: "lab-pub", Name: "labr1a", Bridge: "br0"}, End{NS: "lab-r1", Name: "labr1b", As: "pub0", CIDR: "203.0.113.1/24"})
	// One end staying here, the bridge in this namespace.
	p.Veth(End{NS: "lab-r1", Name: "labh1r", As: "host0", CIDR: "169.254.0.2/30"}, End{Name: "labh1", CIDR: "169.254.0.1/30"})
	p.Veth(End{Name: "labp1h", Bridge: "br1"}, End{NS: "lab-p1", Name: "labp1c", As: "labp1c"})
	p.DefaultRoute("lab-p1", "10.0.0.1")
	p.Exec("lab-r1", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	p.IP("", "route", "add", "10.96.0.0/16", "via", "169.254.0.2", "dev", "labh1")
	want := []string{
		"ip netns add lab-r1",
		"ip -n lab-r1 link set lo up",
		"ip -n lab-r1 link add br0 address 02:68:6c:00:00:01 type bridge",
		"ip -n lab-r1 addr add 10.0.0.1/24 dev br0",
		"ip -n lab-r1 link set br0 up",
		"ip -n lab-pub link add br0 address 02:68:6c:00:01:02 type bridge",
		"ip -n lab-pub link set br0 up",
		"ip link add labr1a type veth peer name labr1b netns lab-r1",
		"ip link set labr1a netns lab-pub",
		"ip -n lab-pub link set labr1a master br0 up",
		"ip -n lab-r1 link set labr1b name pub0",
		"ip -n lab-r1 addr add 203.0.113.1/24 dev pub0",
		"ip -n lab-r1 link set pub0 up",
		"ip link add labh1r type veth peer name labh1",
		"ip link set labh1r netns lab-r1",
		"ip -n lab-r1 link set labh1r name host0",
		"ip -n lab-r1 addr add 169.254.0.2/30 dev host0",
		"ip -n lab-r1 link set host0 up",
		"ip addr add 169.254.0.1/30 dev labh1",
		"ip link set labh1 up",
		"ip link add labp1h type veth peer name labp1c netns lab-p1",
		"ip link set labp1h master br1 up",
		"ip -n lab-p1 link set labp1c up",
		"ip -n lab-p1 route add default via 10.0.0.1",
		"ip netns exec lab-r1 sysctl -qw net.ipv4.ip_forward=1",
		"ip route add 10.96.0.0/16 via 169.254.0.2 dev labh1",
	}
	if got := joined(p.Commands()); !reflect.DeepEqual(got, want) {
		t.Errorf("plan\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	r := &fakeRunner{fail: map[string]bool{"ip -n lab-r1 link set lo up": true}}
	if err := RunAll(context.Background(), r, p.Commands()); err == nil || len(r.ran) != 2 {
		t.Errorf("RunAll went on after a failure: %v, ran %q", err, r.ran)
	}
}

func TestTeardown(t *testing.T) {
	ctx := context.Background()
	r := &fakeRunner{answers: map[string]string{
		"ip netns list":              "hz-br\nhz-p0000aaaa (id: 1)\nhz-pbbbb0000\nother-p1\n",
		"ip netns pids hz-pbbbb0000": "42\n43\n",
	}}
	if names, err := List(ctx, r, "hz-p"); err != nil || !reflect.DeepEqual(names, []string{"hz-p0000aaaa", "hz-pbbbb0000"}) {
		t.Errorf("List = %q, %v", names, err)
	}
	for ns, want := range map[string]bool{"hz-br": true, "hz-b": false, "other-p": false} {
		if ok, err := Exists(ctx, r, ns); ok != want || err != nil {
			t.Errorf("Exists(%s) = %v, %v", ns, ok, err)
		}
	}
	r.ran = nil
	// Every namespace of the prefix, what runs in it killed first.
	if err := DeleteAll(ctx, r, "hz-p"); err != nil {
		t.Fatal(err)
	}
	want := []string{"ip netns list", "ip netns pids hz-p0000aaaa", "ip netns del hz-p0000aaaa",
		"ip netns pids hz-pbbbb0000", "kill -KILL 42 43", "ip netns del hz-pbbbb0000"}
	if !reflect.DeepEqual(r.ran, want) {
		t.Errorf("DeleteAll ran %q, want %q", r.ran, want)
	}
	r.ran, r.fail = nil, map[string]bool{"ip netns del hz-p0000aaaa": true}
	if err := DeleteAll(ctx, r, "hz-p"); err == nil || !strings.Contains(err.Error(), "del hz-p0000aaaa") || r.ran[len(r.ran)-1] != "ip netns del hz-pbbbb0000" {
		t.Errorf("a failed delete: %v, ran %q", err, r.ran)
	}

	// Links: this namespace's of the prefix; one that is gone by the time
	// it is deleted (a veth's peer) is no error, one that stays is.
	r = &fakeRunner{answers: map[string]string{"ip -o link show": "1: lo: <LOOPBACK>\n7: hzh1@if6: <BROADCAST>\n8: hzroot: <UP>\n9: eth0: <UP>\n",
		"ip link show hzroot": "8: hzroot"}, fail: map[string]bool{"ip link del hzh1": true, "ip link show hzh1": true}}
	if links, err := Links(ctx, r, "hz"); err != nil || !reflect.DeepEqual(links, []string{"hzh1", "hzroot"}) {
		t.Errorf("Links = %q, %v", links, err)
	}
	if err := DeleteLinks(ctx, r, "hz"); err != nil {
		t.Errorf("DeleteLinks: %v", err)
	}
	r.fail["ip link del hzroot"] = true
	if err := DeleteLinks(ctx, r, "hz"); err == nil || !strings.Contains(err.Error(), "hzroot") {
		t.Errorf("DeleteLinks with a link that stays: %v", err)
	}
}

// Listen and Dial inside a namespace, for real (root and ip needed).
func TestSockets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip")
	}
	ctx := context.Background()
	ns := fmt.Sprintf("hznt-%d", os.Getpid())
	var p Plan
	p.Namespace(ns)
	p.Up(ns, "lo")
	if err := RunAll(ctx, ExecRunner{}, p.Commands()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Delete(ctx, ExecRunner{}, ns) })
	l, err := Listen(ns, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			_, _ = io.WriteString(c, "from "+ns)
			c.Close()
		}
	}()
	c, err := Dial(ctx, ns, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "from "+ns {
		t.Errorf("read %q", b)
	}
	// This thread's namespace is this process's again: the listener is
	// not reachable from here, and a namespace that does not exist is an
	// error.
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("reached a listener of another namespace")
	}
	if _, err := Listen(ns+"-none", "127.0.0.1:0"); err == nil {
		t.Error("listened in a namespace that does not exist")
	}
}
