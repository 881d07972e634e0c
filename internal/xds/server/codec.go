package server

import (
	"errors"
	"unicode/utf8"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A state-of-the-world proxy repeats every resource name it wants in every
// request, ACKs included: 1,000 proxies watching 1,000 services send a
// million names per change, and decoding them into strings was the largest
// cost of a change in such a mesh (docs/performance.md). The codec below
// leaves the names of a DiscoveryRequest as their wire bytes; the stream
// compares them with the previous request's and decodes them only when
// they differ.

// resourceNamesField is DiscoveryRequest.resource_names.
const resourceNamesField protowire.Number = 3

// sotwRequest is a DiscoveryRequest received with its resource names left
// encoded: req has none, names holds the fields' wire bytes in order.
type sotwRequest struct {
	req   discovery.DiscoveryRequest
	names []byte
}

// codec is gRPC's proto codec, except that it decodes into a *sotwRequest.
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

func (c codec) Name() string { return c.proto.Name() }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*sotwRequest)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	// The other fields, copied out of the names' way: a request is small
	// but for the names.
	var rest []byte
	r.names = r.names[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if num == resourceNamesField && typ == protowire.BytesType {
			r.names = append(r.names, b[:n+m]...)
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return proto.Unmarshal(rest, &r.req)
}

// decodeNames decodes resource_names fields as the codec kept them.
func decodeNames(b []byte) ([]string, error) {
	var out []string
	for len(b) > 0 {
		_, _, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		if !utf8.Valid(v) {
			return nil, errors.New("resource_names: invalid UTF-8")
		}
		out = append(out, string(v))
		b = b[n+m:]
	}
	return out, nil
}
