//go:build bench

package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/testing/adsclient"
)

// The legitimate side of the hostile-load benchmark: sidecars of the
// mesh's real Pods, as Envoy would connect them.

// legitNode is the node of Service i's endpoint Pod's sidecar (svc-i-0):
// its IP, namespace, service account and labels as the Pod has them.
func legitNode(i int) *corev3.Node {
	pod, podIP := fmt.Sprintf("%s-0", svcName(i)), ip(i*2+1)
	n := adsclient.NodeWithIdentity(fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", podIP, pod, benchNS, benchNS),
		"network1", "cluster1", benchNS, "default")
	f := n.Metadata.Fields
	f["ISTIO_VERSION"] = structpb.NewStringValue("1.99.0")
	f["INSTANCE_IPS"] = structpb.NewStringValue(podIP)
	f["NAME"] = structpb.NewStringValue(pod)
	f["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"app": structpb.NewStringValue(svcName(i)), "security.istio.io/tlsMode": structpb.NewStringValue("istio")}})
	return n
}

// fullConfig connects a sidecar on a new connection and stream and returns
// how long it took until it had received and ACKed its whole config, in
// Envoy's order: CDS; EDS for every EDS cluster; then LDS; then RDS for
// every route configuration its listeners name.
func fullConfig(ctx context.Context, addr string, node *corev3.Node, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return 0, err
	}
	// What each type must still deliver; asked[type] is what was requested.
	missing := map[string]map[string]bool{}
	asked := map[string][]string{}
	request := func(typeURL string, names []string) error {
		asked[typeURL], missing[typeURL] = names, map[string]bool{}
		for _, n := range names {
			missing[typeURL][n] = true
		}
		req := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names}
		if len(asked) == 1 {
			req.Node = node // Envoy sends its node with the stream's first request
		}
		return s.Send(req)
	}
	const (
		waitCDS = iota
		waitEDS
		waitLDS
		waitRDS
	)
	step := waitCDS
	if err := request(resource.ClusterType, nil); err != nil {
		return 0, err
	}
	for {
		r, err := s.Recv()
		if err != nil {
			return 0, fmt.Errorf("after %s: %w", time.Since(start).Round(time.Millisecond), err)
		}
		typeURL := r.GetTypeUrl()
		names, err := resourceNames(r)
		if err != nil {
			return 0, err
		}
		for _, n := range names {
			delete(missing[typeURL], n)
		}
		if err := s.Send(&discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: asked[typeURL],
			VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
			return 0, err
		}
		switch {
		case step == waitCDS && typeURL == resource.ClusterType:
			eds, err := edsClusters(r.GetResources())
			if err != nil {
				return 0, err
			}
			if len(eds) == 0 {
				step, err = waitLDS, request(resource.ListenerType, nil)
			} else {
				step, err = waitEDS, request(resource.EndpointType, eds)
			}
			if err != nil {
				return 0, err
			}
		case step == waitEDS && typeURL == resource.EndpointType && len(missing[typeURL]) == 0:
			step = waitLDS
			if err := request(resource.ListenerType, nil); err != nil {
				return 0, err
			}
		case step == waitLDS && typeURL == resource.ListenerType:
			routes, err := routeNames(r.GetResources())
			if err != nil {
				return 0, err
			}
			if len(routes) == 0 {
				return time.Since(start), nil
			}
			step = waitRDS
			if err := request(resource.RouteType, routes); err != nil {
				return 0, err
			}
		case step == waitRDS && typeURL == resource.RouteType && len(missing[typeURL]) == 0:
			return time.Since(start), nil
		}
	}
}

// resourceNames are the names of a response's resources of the types a
// sidecar asks for.
func resourceNames(r *discovery.DiscoveryResponse) ([]string, error) {
	var out []string
	for _, a := range r.GetResources() {
		switch r.GetTypeUrl() {
		case resource.EndpointType:
			name, err := claName(a.GetValue())
			if err != nil {
				return nil, err
			}
			out = append(out, name)
		case resource.RouteType:
			rc := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(rc); err != nil {
				return nil, err
			}
			out = append(out, rc.GetName())
		}
	}
	return out, nil
}

// edsClusters are the clusters whose endpoints come from EDS.
func edsClusters(resources []*anypb.Any) ([]string, error) {
	var out []string
	for _, a := range resources {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, err
		}
		if c.GetType() == clusterv3.Cluster_EDS || c.GetEdsClusterConfig() != nil {
			out = append(out, c.GetName())
		}
	}
	return out, nil
}

// routeNames are the RDS route configurations the listeners' HTTP
// connection managers name.
func routeNames(resources []*anypb.Any) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, a := range resources {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			return nil, err
		}
		chains := append([]*listenerv3.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				if n := hcm.GetRds().GetRouteConfigName(); n != "" && !seen[n] {
					seen[n] = true
					out = append(out, n)
				}
			}
		}
	}
	return out, nil
}

// tokenStream opens a stream on the TLS port (discovery's root trusted, no
// client certificate) with token as its bearer token, as Istio's agent
// does, and returns the time from dialling until the first response.
func tokenStream(ctx context.Context, addr string, roots *x509.CertPool, token string, node *corev3.Node, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, "clusterid", "cluster1")
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return 0, err
	}
	if err := s.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		return 0, err
	}
	if _, err := s.Recv(); err != nil {
		return 0, fmt.Errorf("after %s: %w", time.Since(start).Round(time.Millisecond), err)
	}
	return time.Since(start), nil
}

// codeOf is err's gRPC code, as the table counts it.
func codeOf(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code().String()
	}
	return status.Code(err).String()
}
