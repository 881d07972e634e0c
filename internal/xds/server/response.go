package server

import (
	"strconv"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The responses of a view: built from what it holds under its lock, and
// those that fit every stream of the view at a version (sharedKind)
// encoded once (sharedMsg) and sent as they are, nonce included.

// sharedKind names a response that fits every stream of a view at its
// version.
type sharedKind uint8

const (
	sotwAll   sharedKind = iota // every resource of the view
	sotwStep                    // the resources the last Update changed
	deltaStep                   // the last Update's changes and removals, as a delta response
	deltaAll                    // every resource of the view, as a delta response
)

// sharedMsg is an encoded response with the nonce it carries.
type sharedMsg struct {
	msg   *grpc.PreparedMsg
	nonce string
	err   error
}

func sharedNonce(version uint64, kind sharedKind) string {
	return strconv.FormatUint(version, 10) + [...]string{sotwAll: "a", sotwStep: "s", deltaStep: "d", deltaAll: "D"}[kind]
}

// sharedMsg returns the response of kind for the current version, encoding
// it (with st's codec: every uncompressed stream's is the same) the first
// time a stream needs it. Called with e.mu held.
func (e *viewEntry) sharedMsg(kind sharedKind, st grpc.ServerStream) *sharedMsg {
	if sm := e.shared[kind]; sm != nil {
		return sm
	}
	nonce := sharedNonce(e.version, kind)
	sm := &sharedMsg{msg: &grpc.PreparedMsg{}, nonce: nonce}
	sm.err = sm.msg.Encode(st, e.response(outgoing{shared: true, kind: kind, version: e.versionInfo()}, nonce, kind == deltaStep || kind == deltaAll))
	if e.shared == nil {
		e.shared = map[sharedKind]*sharedMsg{}
	}
	e.shared[kind] = sm
	return sm
}

// response builds the message for out. Called with e.mu held.
func (e *viewEntry) response(out outgoing, nonce string, delta bool) proto.Message {
	names, removed := out.resources, out.removed
	if out.shared {
		switch out.kind {
		case sotwAll, deltaAll:
			names = e.names
		case sotwStep, deltaStep:
			names, removed = e.last().changed, e.last().removed
		}
	}
	if delta {
		return &discovery.DeltaDiscoveryResponse{SystemVersionInfo: out.version, TypeUrl: e.view.TypeURL, Nonce: nonce,
			Resources: e.deltaResources(names), RemovedResources: removed}
	}
	return &discovery.DiscoveryResponse{VersionInfo: out.version, TypeUrl: e.view.TypeURL, Nonce: nonce, Resources: e.anys(names)}
}

// anys returns the marshalled resources of names. Called with e.mu held.
func (e *viewEntry) anys(names []string) []*anypb.Any {
	out := make([]*anypb.Any, len(names))
	for i, n := range names {
		out[i] = e.res[n].any
	}
	return out
}

// deltaResources returns names as delta resources. Called with e.mu held.
func (e *viewEntry) deltaResources(names []string) []*discovery.Resource {
	out := make([]*discovery.Resource, len(names))
	for i, n := range names {
		s := e.res[n]
		out[i] = &discovery.Resource{Name: n, Version: e.resourceVersion(s.ver), Resource: s.any}
	}
	return out
}
