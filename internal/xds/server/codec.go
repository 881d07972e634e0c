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

// DiscoveryRequest's resource_names and type_url.
const (
	resourceNamesField protowire.Number = 3
	typeURLField       protowire.Number = 4
)

// sotwRequest is a DiscoveryRequest received with its resource names left
// encoded: req has none. names holds the fields' wire bytes in order —
// unless they are byte for byte the names of the stream's last request of
// the same type (an ACK, the common case), which the codec asks last for:
// then same is set, names is nil and kept is that request's names as the
// stream keeps them, so nothing is copied.
type sotwRequest struct {
	req   discovery.DiscoveryRequest
	names []byte
	same  bool
	kept  string
	last  func(typeURL string) string
}

// rawNames returns the request's names' wire bytes.
func (r *sotwRequest) rawNames() []byte {
	if r.same {
		return []byte(r.kept)
	}
	return r.names
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
	// Where the names are (one run of fields, as every encoder writes
	// them, or scattered), and the type URL.
	start, end, scattered := -1, -1, false
	var typeURL []byte
	for pos := 0; pos < len(b); {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[pos+n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		switch {
		case num == resourceNamesField && typ == protowire.BytesType:
			if start < 0 {
				start = pos
			} else if pos != end {
				scattered = true
			}
			end = pos + n + m
		case num == typeURLField && typ == protowire.BytesType:
			typeURL, _ = protowire.ConsumeBytes(b[pos+n:])
		}
		pos += n + m
	}
	if start < 0 {
		start, end = 0, 0
	}
	if !scattered && r.last != nil {
		if kept := r.last(string(typeURL)); kept == string(b[start:end]) {
			r.same, r.kept = true, kept
		}
	}
	if scattered {
		// Rare (no encoder writes them so): decode as usual, and keep the
		// names encoded again for the stream's comparison.
		if err := proto.Unmarshal(b, &r.req); err != nil {
			return err
		}
		r.names = r.names[:0]
		for _, n := range r.req.ResourceNames {
			r.names = protowire.AppendTag(r.names, resourceNamesField, protowire.BytesType)
			r.names = protowire.AppendString(r.names, n)
		}
		r.req.ResourceNames = nil
		return nil
	}
	if !r.same {
		r.names = append(make([]byte, 0, end-start), b[start:end]...)
	}
	// The fields before and after the names.
	if err := proto.Unmarshal(b[:start], &r.req); err != nil {
		return err
	}
	return proto.UnmarshalOptions{Merge: true}.Unmarshal(b[end:], &r.req)
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
