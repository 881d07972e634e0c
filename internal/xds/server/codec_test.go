package server

import (
	"fmt"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// decodeSplit decodes b as the server does: the request without its names,
// and the names from the bytes the codec kept.
func decodeSplit(b []byte) (*discovery.DiscoveryRequest, error) {
	return decodeSplitAfter(b, nil)
}

// decodeSplitAfter is decodeSplit on a stream whose last request's names
// are what last says.
func decodeSplitAfter(b []byte, last func(string) string) (*discovery.DiscoveryRequest, error) {
	r := sotwRequest{last: last}
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &r); err != nil {
		return nil, err
	}
	names, err := decodeNames(r.rawNames())
	if err != nil {
		return nil, err
	}
	if len(r.req.GetResourceNames()) != 0 {
		return nil, fmt.Errorf("names left in the request: %v", r.req.GetResourceNames())
	}
	out := proto.Clone(&r.req).(*discovery.DiscoveryRequest)
	out.ResourceNames = names
	return out, nil
}

// The split decoding gives exactly the request proto.Unmarshal gives, for
// any bytes proto.Unmarshal accepts, names in their order, whatever fields
// come between them.
func TestCodecKeepsNamesEncoded(t *testing.T) {
	req := &discovery.DiscoveryRequest{VersionInfo: "v1", TypeUrl: resource.EndpointType, ResponseNonce: "7",
		Node:          &corev3.Node{Id: "sidecar~10.0.0.1~a.b~b.svc.cluster.local"},
		ResourceNames: []string{"outbound|80||a", "outbound|80||b", "", "*", "ünïcode"},
		ErrorDetail:   &statuspb.Status{Code: 3, Message: "bad"}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSplit(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, req) {
		t.Fatalf("decoded %v, want %v", got, req)
	}
	// The same request again (an ACK): the names are found unchanged,
	// not copied, and decode the same.
	var r sotwRequest
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &r); err != nil {
		t.Fatal(err)
	}
	ack := sotwRequest{last: func(typeURL string) string {
		if typeURL != resource.EndpointType {
			return ""
		}
		return string(r.names)
	}}
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &ack); err != nil || !ack.same || ack.names != nil {
		t.Fatalf("an unchanged request: same %v, %d bytes copied, %v", ack.same, len(ack.names), err)
	}
	if again, err := decodeSplitAfter(b, ack.last); err != nil || !proto.Equal(again, req) {
		t.Fatalf("an unchanged request decoded %v, %v", again, err)
	}
	// Names interleaved with other fields (any order is valid wire format).
	var mixed []byte
	mixed = protowire.AppendTag(mixed, resourceNamesField, protowire.BytesType)
	mixed = protowire.AppendString(mixed, "x")
	mixed = protowire.AppendTag(mixed, 4, protowire.BytesType) // type_url
	mixed = protowire.AppendString(mixed, resource.ClusterType)
	mixed = protowire.AppendTag(mixed, resourceNamesField, protowire.BytesType)
	mixed = protowire.AppendString(mixed, "y")
	got, err = decodeSplit(mixed)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.GetResourceNames(), []string{"x", "y"}) || got.GetTypeUrl() != resource.ClusterType {
		t.Fatalf("interleaved: %v", got)
	}
	// Other messages are decoded as gRPC's proto codec does.
	d := &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"a"}}
	db, _ := proto.Marshal(d)
	var back discovery.DeltaDiscoveryRequest
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(db)}, &back); err != nil || !proto.Equal(&back, d) {
		t.Fatalf("delta request: %v, %v", &back, err)
	}
}

// A name that is not UTF-8 is refused, as proto.Unmarshal refuses it.
func TestCodecRefusesInvalidNames(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, resourceNamesField, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte{0xff, 0xfe})
	if err := proto.Unmarshal(b, &discovery.DiscoveryRequest{}); err == nil {
		t.Fatal("proto.Unmarshal accepted invalid UTF-8: the test's premise is wrong")
	}
	if _, err := decodeSplit(b); err == nil {
		t.Fatal("invalid UTF-8 in resource_names was accepted")
	}
}

// For any input, the split decoding accepts what proto.Unmarshal accepts,
// with the same result, and never panics.
func FuzzCodec(f *testing.F) {
	for _, r := range []*discovery.DiscoveryRequest{
		{TypeUrl: resource.EndpointType, ResourceNames: []string{"a", "b"}, VersionInfo: "1"},
		{Node: &corev3.Node{Id: "x"}, ResourceNames: []string{"*"}},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want discovery.DiscoveryRequest
		werr := proto.Unmarshal(b, &want)
		got, gerr := decodeSplit(b)
		if werr != nil {
			return // the split decoding may accept more (it is not asked to refuse more)
		}
		if gerr != nil {
			t.Fatalf("proto.Unmarshal accepts %x, the codec refuses it: %v", b, gerr)
		}
		if !proto.Equal(got, &want) {
			t.Fatalf("codec %v, proto.Unmarshal %v", got, &want)
		}
		// And again as an ACK of itself: the names unchanged.
		var first sotwRequest
		if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &first); err != nil {
			t.Fatal(err)
		}
		kept := string(first.rawNames())
		again, err := decodeSplitAfter(b, func(string) string { return kept })
		if err != nil || !proto.Equal(again, &want) {
			t.Fatalf("as an ACK: codec %v (%v), proto.Unmarshal %v", again, err, &want)
		}
	})
}
