package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// instanceHeader is the response header in which the gRPC server names
// itself (NAME/VERSION), so a client can tell which instance answered.
const instanceHeader = "x-instance"

// runGRPCHealth serves the standard gRPC health service
// (grpc.health.v1.Health), SERVING for the server as a whole ("") and for
// the services named with -service.
func runGRPCHealth(args []string) int {
	fs := flag.NewFlagSet("grpc-health", flag.ContinueOnError)
	addr := fs.String("addr", ":50051", "listen address")
	services := fs.String("service", "", "further service names reported SERVING (comma-separated)")
	var id identity
	id.flags(fs)
	if _, code := parse(fs, args, 0, "[flags]"); code != 0 {
		return code
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Print(err)
		return 1
	}
	log.Printf("grpc-health %s on %s", id, l.Addr())
	if err := healthServer(id.String(), strings.Split(*services, ",")).Serve(l); err != nil {
		log.Print(err)
		return 1
	}
	return 0
}

// healthServer is a gRPC server with only the health service: SERVING for
// "" and services, each answer naming self in instanceHeader.
func healthServer(self string, services []string) *grpc.Server {
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(instanceHeader, self))
		return h(ctx, req)
	}))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, s := range services {
		if s != "" {
			hs.SetServingStatus(s, healthpb.HealthCheckResponse_SERVING)
		}
	}
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}

// runGRPCHealthProbe asks ADDR's health service (plaintext HTTP/2, as an
// app behind a sidecar speaks) and prints the status and the instance that
// answered; exit 0 only for SERVING.
func runGRPCHealthProbe(args []string) int {
	fs := flag.NewFlagSet("grpc-health-probe", flag.ContinueOnError)
	service := fs.String("service", "", "the service to ask about (\"\": the server)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	rest, code := parse(fs, args, 1, "[flags] ADDR")
	if code != 0 {
		return code
	}
	// passthrough: the name resolved as any program resolves it, when
	// dialed; gRPC's dns resolver would also look up a TXT record, which
	// where nothing answers DNS (a pod with only /etc/hosts) takes longer
	// than the whole call may.
	target := rest[0]
	if !strings.Contains(target, "://") {
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc-health-probe:", err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var md metadata.MD
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service}, grpc.Header(&md))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc-health-probe:", err)
		return 1
	}
	fmt.Printf("status: %s", resp.GetStatus())
	if v := md.Get(instanceHeader); len(v) > 0 {
		fmt.Printf(" (instance: %s)", v[0])
	}
	fmt.Println()
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return 1
	}
	return 0
}
