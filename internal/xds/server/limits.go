package server

import "time"

// Limits bound what clients can make the ADS server hold or do: streams
// (the Tracker), and types, names and requests per stream.
type Limits struct {
	// MaxStreams bounds the open ADS streams of both kinds together; a
	// stream past it is refused with ResourceExhausted. 0: 10,000.
	MaxStreams int
	// MaxStreamsPerClient bounds the open streams of one client: a proved
	// workload identity (namespace and service account, whether by client
	// certificate or reviewed token) on the TLS port, a peer address on
	// the plaintext port. 0: a quarter of MaxStreams (at least
	// 16), so that no one client can take every slot.
	MaxStreamsPerClient int
	// MaxTypesPerStream bounds the resource types one stream may ask for
	// (served or not). 0: 16.
	MaxTypesPerStream int
	// MaxNamesPerStream and MaxNameBytesPerStream bound the resource
	// names one stream subscribes to, over all its types. 0: 65,536 names
	// and 2 MiB (10,000 services' load assignments are ~0.5 MiB).
	MaxNamesPerStream     int
	MaxNameBytesPerStream int
	// FirstRequestTimeout closes a stream that sends no request within it
	// of opening. 0: 5 s (Envoy sends its first request at once).
	FirstRequestTimeout time.Duration
	// MaxRequestBytes bounds one request message (gRPC refuses a larger
	// one from its length prefix, before reading it). 0: 1 MiB, a state
	// of the world request naming ~20,000 load assignments.
	MaxRequestBytes int
	// RequestsPerSecond and RequestBurst pace how fast the server reads
	// one stream's requests: past them it stops reading, and HTTP/2 flow
	// control makes the client wait. Envoy sends a request per response
	// (its ACK) and a few at start. 0: 100 per second, bursts of 200.
	RequestsPerSecond float64
	RequestBurst      int

	// Client status (CSDS, and Istio's istio.io/debug/syncz on ADS): each
	// answer costs O(proxies), so they are bounded apart from ADS.
	// MaxStatusCalls bounds the CSDS calls (streams and fetches) open at
	// once, MaxStatusCallsPerClient those of one client. 0: 16 and 4.
	MaxStatusCalls          int
	MaxStatusCallsPerClient int
	// MaxStatusResponseBytes bounds one answer: past it the call fails
	// with ResourceExhausted, naming how to ask for fewer proxies. 0: 16 MiB.
	MaxStatusResponseBytes int
	// MaxStatusConfigBytes bounds the resources (xds_config) one answer
	// carries; the proxies past it are listed without their resources.
	// 0: 3 MiB, so that an answer with config fits the 4 MiB a gRPC
	// client receives by default.
	MaxStatusConfigBytes int
}

// MaxTypeURLBytes bounds a request's type URL: Envoy's longest is under
// 100 bytes. A longer one ends the stream.
const MaxTypeURLBytes = 256

func (l Limits) withDefaults() Limits {
	if l.MaxStreams <= 0 {
		l.MaxStreams = 10000
	}
	if l.MaxStreamsPerClient <= 0 {
		l.MaxStreamsPerClient = max(l.MaxStreams/4, 16)
	}
	if l.MaxTypesPerStream <= 0 {
		l.MaxTypesPerStream = 16
	}
	if l.MaxNamesPerStream <= 0 {
		l.MaxNamesPerStream = 65536
	}
	if l.MaxNameBytesPerStream <= 0 {
		l.MaxNameBytesPerStream = 2 << 20
	}
	if l.FirstRequestTimeout <= 0 {
		l.FirstRequestTimeout = 5 * time.Second
	}
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = 1 << 20
	}
	if l.RequestsPerSecond <= 0 {
		l.RequestsPerSecond = 100
	}
	if l.RequestBurst <= 0 {
		l.RequestBurst = 200
	}
	if l.MaxStatusCalls <= 0 {
		l.MaxStatusCalls = 16
	}
	if l.MaxStatusCallsPerClient <= 0 {
		l.MaxStatusCallsPerClient = 4
	}
	if l.MaxStatusResponseBytes <= 0 {
		l.MaxStatusResponseBytes = 16 << 20
	}
	if l.MaxStatusConfigBytes <= 0 {
		l.MaxStatusConfigBytes = 3 << 20
	}
	return l
}
