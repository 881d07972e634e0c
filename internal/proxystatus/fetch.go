package proxystatus

import (
	"context"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// MaxAnswerBytes is the largest answer Fetch accepts: discovery bounds an
// answer at 16 MiB (server.Limits.MaxStatusResponseBytes).
const MaxAnswerBytes = 16 << 20

// Target is one discovery replica to ask.
type Target struct {
	Name string // shown in the REPLICA column: the pod, or the address
	Addr string // host:port
	// TLS is nil for the plaintext port; Token then must be empty.
	TLS   credentials.TransportCredentials
	Token string // a bearer token for the TLS port (a client certificate is in TLS)
}

// Fetch asks one replica for the status of its proxies (CSDS
// FetchClientStatus, without their resources).
func Fetch(ctx context.Context, t Target) ([]Row, error) {
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxAnswerBytes))}
	if t.TLS == nil {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(t.TLS))
	}
	if t.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(t.Token)))
	}
	cc, err := grpc.NewClient("passthrough:///"+t.Addr, opts...)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	resp, err := statusv3.NewClientStatusDiscoveryServiceClient(cc).FetchClientStatus(ctx,
		&statusv3.ClientStatusRequest{ExcludeResourceContents: true})
	if err != nil {
		return nil, err
	}
	return Rows(t.Name, resp), nil
}

// bearer sends a service-account token as Istio's agents do.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
