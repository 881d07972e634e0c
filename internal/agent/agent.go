package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// Config is everything `horizon-agent agent` is configured with.
type Config struct {
	NodeID         string
	ClusterID      string
	Network        string
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	IPs            []netip.Addr
	Discovery      string // host:port of discovery's TLS port
	DiscoverySNI   string // the name in its certificate
	RootCertFile   string // the mesh root, to trust discovery
	TokenFile      string // service-account token with audience istio-ca
	EnvoyPath      string
	WorkDir        string // bootstrap, SDS socket, Envoy log
	AdminPort      uint32
	// StatusPort serves ReadyPath for the kubelet's readiness probe (0:
	// off).
	StatusPort uint32
	CertTTL    time.Duration
	Drain      time.Duration
	LogLevel   string
	// EnvoyLog is where Envoy's output (its access log included) goes:
	// a file, "-" for the agent's own stdout (a container's log), or ""
	// for envoy.log in WorkDir.
	EnvoyLog string
}

// Run gets the workload's certificate, serves it over SDS, writes the
// bootstrap and supervises Envoy until ctx ends, rotating the certificate at
// half its life.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	envoyBin, err := ResolveEnvoy(c.EnvoyPath)
	if err != nil {
		return err
	}
	root, err := os.ReadFile(c.RootCertFile)
	if err != nil {
		return fmt.Errorf("--root-cert: %w", err)
	}
	if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return err
	}
	if c.StatusPort != 0 {
		stop, err := serveStatus(c.StatusPort, StatusHandler(readyCheck(ctx, c.AdminPort)), log)
		if err != nil {
			return err
		}
		defer stop()
	}
	certs := &CertClient{Addr: c.Discovery, ServerName: c.DiscoverySNI, RootPEM: root, TokenFile: c.TokenFile,
		ClusterID: c.ClusterID, TTL: c.CertTTL}
	sds := NewSDS()
	renewer := &Renewer{Certs: certs, SDS: sds, Log: log}
	id, err := renewer.First(ctx)
	if err != nil {
		return err
	}
	sock := filepath.Join(c.WorkDir, "sds.sock")
	go func() {
		if err := sds.Serve(ctx, sock); err != nil && ctx.Err() == nil {
			log.Error("SDS server", "error", err)
		}
	}()
	b, err := Bootstrap(BootstrapConfig{NodeID: c.NodeID, Cluster: c.ClusterID, Network: c.Network, Namespace: c.Namespace,
		ServiceAccount: c.ServiceAccount, Labels: c.Labels, IPs: c.IPs, Discovery: c.Discovery, DiscoverySNI: c.DiscoverySNI,
		SDSSocket: sock, AdminPort: c.AdminPort})
	if err != nil {
		return err
	}
	if err := b.ValidateAll(); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	js, err := protojson.Marshal(b)
	if err != nil {
		return err
	}
	bootstrap := filepath.Join(c.WorkDir, "envoy.json")
	if err := os.WriteFile(bootstrap, js, 0o644); err != nil {
		return err
	}
	go renewer.Run(ctx, id)
	out, closeOut, err := envoyOutput(c)
	if err != nil {
		return err
	}
	defer closeOut()
	e := &Envoy{Binary: envoyBin, Bootstrap: bootstrap, AdminPort: c.AdminPort, LogLevel: c.LogLevel, Drain: c.Drain, Stdout: out, Log: log}
	return e.Run(ctx)
}

// readyCheck is the status port's check: Envoy's readiness until the agent
// stops (ctx ends), then not ready while Envoy drains, so that no new
// caller is sent here.
func readyCheck(agentCtx context.Context, adminPort uint32) func(context.Context) error {
	r := &Readiness{Admin: fmt.Sprintf("127.0.0.1:%d", adminPort),
		Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	return func(ctx context.Context) error {
		if agentCtx.Err() != nil {
			return errors.New("the agent is stopping; Envoy drains")
		}
		return r.Check(ctx)
	}
}

// envoyOutput opens where Envoy's output goes (Config.EnvoyLog).
func envoyOutput(c Config) (*os.File, func(), error) {
	switch c.EnvoyLog {
	case "-":
		return os.Stdout, func() {}, nil
	case "":
		c.EnvoyLog = filepath.Join(c.WorkDir, "envoy.log")
	}
	f, err := os.Create(c.EnvoyLog)
	if err != nil {
		return nil, nil, fmt.Errorf("--envoy-log: %w", err)
	}
	return f, func() { f.Close() }, nil
}
