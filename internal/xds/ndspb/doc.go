// Package ndspb is the wire type of Istio's name discovery service (NDS):
// the NameTable an Istio agent with DNS capture asks for on its ADS stream.
// Horizon declares it itself (nds.proto) rather than importing istio.io/istio;
// only the protobuf names and field numbers are shared with the agent.
package ndspb

//go:generate protoc -I ../../.. --go_out=../../.. --go_opt=paths=source_relative internal/xds/ndspb/nds.proto

// TypeURL is the NDS resource type.
const TypeURL = "type.googleapis.com/istio.networking.nds.v1.NameTable"
