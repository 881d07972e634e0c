package labnode

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// fakeRunner records commands and answers from a table.
type fakeRunner struct {
	ran     []string
	answers map[string]string
}

func (f *fakeRunner) Run(_ context.Context, args ...string) (string, error) {
	cmd := strings.Join(args, " ")
	f.ran = append(f.ran, cmd)
	return f.answers[cmd], nil
}

func TestNetworkAllocate(t *testing.T) {
	n := &Network{Prefix: "hzln", Bridge: "br0", CIDR: netip.MustParsePrefix("10.77.0.0/29"),
		Gateway: netip.MustParseAddr("10.77.0.1"), Reserved: []netip.Addr{netip.MustParseAddr("10.77.0.3")}}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range []string{"a", "b", "c", "d"} {
		a, err := n.Allocate(k)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	// .0 network, .1 gateway, .3 reserved, .7 broadcast.
	if want := []string{"10.77.0.2", "10.77.0.4", "10.77.0.5", "10.77.0.6"}; !reflect.DeepEqual(got, want) {
		t.Errorf("allocated %q, want %q", got, want)
	}
	if a, _ := n.Allocate("b"); a.String() != "10.77.0.4" {
		t.Errorf("b again: %s", a)
	}
	if _, err := n.Allocate("e"); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Errorf("want exhaustion, got %v", err)
	}
	n.Release("b")
	if a, err := n.Allocate("e"); err != nil || a.String() != "10.77.0.4" {
		t.Errorf("after release: %s, %v", a, err)
	}
}

func TestNetworkValidate(t *testing.T) {
	for _, n := range []*Network{
		{Prefix: "", Bridge: "br0", CIDR: netip.MustParsePrefix("10.0.0.0/24")},
		{Prefix: "toolong", Bridge: "br0", CIDR: netip.MustParsePrefix("10.0.0.0/24")},
		{Prefix: "a-b", Bridge: "br0", CIDR: netip.MustParsePrefix("10.0.0.0/24")},
		{Prefix: "hz", CIDR: netip.MustParsePrefix("10.0.0.0/24")},
		{Prefix: "hz", Bridge: "br0", CIDR: netip.MustParsePrefix("10.0.0.0/31")},
		{Prefix: "hz", Bridge: "br0", CIDR: netip.MustParsePrefix("fd00::/64")},
		{Prefix: "hz", Bridge: "br0", CIDR: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.1.1")},
	} {
		if err := n.Validate(); err == nil {
			t.Errorf("%+v: want an error", n)
		}
	}
}

func TestNetworkSetupAndTeardown(t *testing.T) {
	r := &fakeRunner{}
	n := &Network{Runner: r, Prefix: "hzln", BridgeNS: "hzln-br", Bridge: "br0", CIDR: netip.MustParsePrefix("10.77.0.0/24"),
		Gateway: netip.MustParseAddr("10.77.0.1")}
	ns, host := n.NetnsName("uid-1"), n.vethName("uid-1")
	if len(host) > 15 || !strings.HasPrefix(ns, "hzln-p") || len(ns) != len("hzln-p")+8 {
		t.Fatalf("names %q %q", ns, host)
	}
	peer := strings.TrimSuffix(host, "h") + "c"
	if err := n.Setup(context.Background(), "uid-1", netip.MustParseAddr("10.77.0.2")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ip netns list", // Teardown of a leftover: none
		"ip netns add " + ns,
		"ip link add " + host + " type veth peer name " + peer + " netns " + ns,
		"ip link set " + host + " netns hzln-br",
		"ip -n hzln-br link set " + host + " master br0 up",
		"ip -n " + ns + " link set " + peer + " name eth0",
		"ip -n " + ns + " addr add 10.77.0.2/24 dev eth0",
		"ip -n " + ns + " link set eth0 up",
		"ip -n " + ns + " link set lo up",
		"ip -n " + ns + " route add default via 10.77.0.1",
	}
	if !reflect.DeepEqual(r.ran, want) {
		t.Errorf("setup ran\n%s\nwant\n%s", strings.Join(r.ran, "\n"), strings.Join(want, "\n"))
	}

	// Teardown kills what is left in the namespace, then deletes it (and
	// with it the veth pair and the rules made inside).
	r.ran = nil
	r.answers = map[string]string{"ip netns list": "other\n" + ns + " (id: 3)\n", "ip netns pids " + ns: "42\n43\n"}
	if err := n.Teardown(context.Background(), "uid-1"); err != nil {
		t.Fatal(err)
	}
	want = []string{"ip netns list", "ip netns pids " + ns, "kill -KILL 42 43", "ip netns del " + ns}
	if !reflect.DeepEqual(r.ran, want) {
		t.Errorf("teardown ran %q, want %q", r.ran, want)
	}

	// Leftovers: every pod namespace of the prefix, nothing else.
	r.ran = nil
	r.answers = map[string]string{"ip netns list": "hzln-br\nhzln-p0000aaaa (id: 1)\nhzln-pbbbb0000\nother-p1\n"}
	if err := n.Leftovers(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = []string{"ip netns list", "ip netns pids hzln-p0000aaaa", "ip netns del hzln-p0000aaaa", "ip netns pids hzln-pbbbb0000", "ip netns del hzln-pbbbb0000"}
	if !reflect.DeepEqual(r.ran, want) {
		t.Errorf("leftovers ran %q, want %q", r.ran, want)
	}

	// The bridge in this namespace: no move.
	r.ran, r.answers = nil, nil
	n.BridgeNS = ""
	n.Gateway = netip.Addr{}
	cmds := n.SetupCommands("uid-1", netip.MustParseAddr("10.77.0.9"))
	joined := make([]string, len(cmds))
	for i, c := range cmds {
		joined[i] = strings.Join(c, " ")
	}
	if s := strings.Join(joined, "\n"); strings.Contains(s, "netns hzln-br") || strings.Contains(s, "route") || !strings.Contains(s, "ip link set "+host+" master br0 up") {
		t.Errorf("root-namespace bridge commands:\n%s", s)
	}
}
