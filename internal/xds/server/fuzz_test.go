package server

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/model"
)

// maxEchoedInput bounds how much of one input value an error may repeat: a
// node is client input, and errors end up in logs and /debug output.
const maxEchoedInput = 512

// FuzzProxyFromNode builds nodes from fuzzed strings — each metadata value
// as a string, a number, a bool, null, a list or a struct, as kinds selects,
// and each string repeated up to 64 times so that oversized values are
// reached quickly — and reads them with ProxyFromNode. Invariants: no panic;
// deterministic; on success the ID is the node's, the network is at most 63
// bytes and matches the network pattern, the cluster ID is valid, the IPs
// are valid and unmapped (one per listed address), Router is the router~
// prefix; on error, the message repeats at most 512 bytes of any input value
// and is bounded in length.
func FuzzProxyFromNode(f *testing.F) {
	f.Add("sidecar~10.0.0.1~sleep.sample~sample.svc.cluster.local", "network2", "remote_kubecfg", "10.0.0.1, fd00::1", "sample", "sleep", "app=sleep", uint16(0), uint8(0))
	f.Add("router~10.0.0.9~gw.istio-system~istio-system.svc.cluster.local", "", "cluster1", "", "istio-system", "gw", "istio=eastwestgateway", uint16(0), uint8(0))
	f.Add("a", "net/2", "a b", "10.0.0.300", "", "", "", uint16(1), uint8(0))
	f.Add("a", "n", "..", "::ffff:10.0.0.1,,", "", "", "", uint16(0), uint8(0x55))
	f.Add("", "n", "c", "", "", "", "", uint16(0), uint8(0))
	f.Add("x", "-bad-", "c", "fe80::1%eth0", "ns", "sa", "k", uint16(3), uint8(0xff))
	f.Add("x", "a.b_c-d", "c.d", "1.2.3.4", "ns", "sa", "k", uint16(63), uint8(0x0f))
	f.Fuzz(func(t *testing.T, id, network, cluster, ips, ns, sa, label string, repeat uint16, kinds uint8) {
		n := int(repeat%64) + 1
		long := func(s string) string { return strings.Repeat(s, n) }
		// repeat's high bits choose which values are repeated.
		if repeat&0x100 != 0 {
			id = long(id)
		}
		if repeat&0x200 != 0 {
			network = long(network)
		}
		if repeat&0x400 != 0 {
			cluster = long(cluster)
		}
		if repeat&0x800 != 0 {
			ips = long(ips)
		}
		if repeat&0x1000 != 0 {
			ns, sa = long(ns), long(sa)
		}
		if repeat&0x2000 != 0 {
			label = long(label)
		}
		// kinds: 2 bits per key choose string (0), another scalar (1),
		// absent (2) or a struct/list (3).
		value := func(shift uint, s string) *structpb.Value {
			switch (kinds >> shift) & 3 {
			case 1:
				if len(s)%2 == 0 {
					return structpb.NewNumberValue(float64(len(s)))
				}
				return structpb.NewBoolValue(true)
			case 2:
				return nil
			case 3:
				if len(s)%2 == 0 {
					return structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue(s)}})
				}
				return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{s: structpb.NewStringValue(s)}})
			}
			return structpb.NewStringValue(s)
		}
		fields := map[string]*structpb.Value{}
		for key, v := range map[string]*structpb.Value{
			MetaNetwork: value(0, network), MetaClusterID: value(2, cluster), MetaInstanceIPs: value(4, ips),
			MetaNamespace: structpb.NewStringValue(ns), MetaServiceAccount: structpb.NewStringValue(sa),
		} {
			if v != nil {
				fields[key] = v
			}
		}
		if label != "" {
			k, v, _ := strings.Cut(label, "=")
			lv := structpb.NewStringValue(v)
			if (kinds>>6)&1 == 1 {
				lv = structpb.NewNumberValue(1)
			}
			if (kinds>>7)&1 == 1 {
				fields[MetaLabels] = structpb.NewStringValue(label)
			} else {
				fields[MetaLabels] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{k: lv}})
			}
		}
		// Metadata Horizon does not read, as Istio's agents send plenty.
		fields["ISTIO_JUNK"] = structpb.NewStringValue(long(label))
		node := &corev3.Node{Id: id, Cluster: long(cluster), Metadata: &structpb.Struct{Fields: fields}}

		p, err := ProxyFromNode(node)
		p2, err2 := ProxyFromNode(node)
		if !reflect.DeepEqual(p, p2) || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("not deterministic: %+v, %v then %+v, %v", p, err, p2, err2)
		}
		if err != nil {
			msg := err.Error()
			if !reflect.DeepEqual(p, Proxy{}) {
				t.Fatalf("error %v with a proxy %+v", err, p)
			}
			// %q may turn one byte into four (\x00).
			if len(msg) > 4*2*maxEchoedInput+256 {
				t.Fatalf("error of %d bytes", len(msg))
			}
			for _, in := range []string{id, network, cluster, ips, ns, sa, label} {
				if len(in) > maxEchoedInput && longestCommon(msg, in) > maxEchoedInput {
					t.Fatalf("error repeats more than %d bytes of a %d-byte input: %.200s…", maxEchoedInput, len(in), msg)
				}
			}
			return
		}
		if p.ID != id || id == "" {
			t.Fatalf("ID %q for node %q", p.ID, id)
		}
		if len(p.Network) > 63 || !networkRE.MatchString(p.Network) {
			t.Fatalf("accepted network %q", p.Network)
		}
		if fields[MetaNetwork] != nil && p.Network != fields[MetaNetwork].GetStringValue() {
			t.Fatalf("network %q, metadata says %v", p.Network, fields[MetaNetwork])
		}
		if p.Cluster != "" {
			if err := model.ValidateClusterID(string(p.Cluster)); err != nil {
				t.Fatalf("accepted cluster: %v", err)
			}
		}
		want := 0
		for _, s := range strings.Split(fields[MetaInstanceIPs].GetStringValue(), ",") {
			if strings.TrimSpace(s) != "" {
				want++
			}
		}
		if len(p.IPs) != want {
			t.Fatalf("%d IPs from %q", len(p.IPs), ips)
		}
		for _, ip := range p.IPs {
			if !ip.IsValid() || ip.Is4In6() {
				t.Fatalf("accepted IP %v from %q", ip, ips)
			}
		}
		if p.Router != strings.HasPrefix(id, "router~") {
			t.Fatalf("router %v for id %q", p.Router, id)
		}
		// What a stream keeps of the node says the same of the proxy and
		// holds no field Horizon does not read.
		kept := KeptNode(node)
		if pk, err := ProxyFromNode(kept); err != nil || !reflect.DeepEqual(pk, p) {
			t.Fatalf("the kept node reads as %+v, %v; the node as %+v", pk, err, p)
		}
		for k, v := range kept.GetMetadata().GetFields() {
			if k == MetaIstioVersion && len(v.GetStringValue()) <= maxVersionLen+3 {
				continue
			}
			if !slices.Contains(keptMetadata, k) {
				t.Fatalf("the kept node holds metadata %q", k)
			}
		}
		if len(kept.GetCluster()) > maxNameLen+3 {
			t.Fatalf("the kept node holds a %d-byte cluster", len(kept.GetCluster()))
		}
	})
}

// longestCommon reports whether a and b share a substring longer than
// maxEchoedInput (returning a length above it), else 0.
func longestCommon(a, b string) int {
	const w = maxEchoedInput + 1
	if len(a) < w || len(b) < w {
		return 0
	}
	windows := map[string]bool{}
	for i := 0; i+w <= len(a); i++ {
		windows[a[i:i+w]] = true
	}
	for i := 0; i+w <= len(b); i++ {
		if windows[b[i:i+w]] {
			return w
		}
	}
	return 0
}
