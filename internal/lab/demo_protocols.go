package lab

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// The demo's TCP and gRPC calls: sleep runs helloworld's clients (the lab
// puts helloworld first on the sleep images' PATH, labnode.Programs.ClientDir).
var (
	tcpEchoCall    = []string{"helloworld", "tcp-echo-client", "tcp-echo.sample:9000", "hello from sleep"}
	grpcHealthCall = []string{"helloworld", "grpc-health-probe", "grpc-health.sample:50051"}
)

// The access log lines of sleep's proxy for each, with an upstream host:
// TCP (no request line) and the health check (HTTP/2, status 200).
var (
	tcpEchoLogRE    = regexp.MustCompile(`"- - -" .* upstream_host=([^-\s]\S*) upstream_cluster=(outbound\|9000\|\|tcp-echo\.sample\.svc\.cluster\.local) `)
	grpcHealthLogRE = regexp.MustCompile(`"POST /grpc\.health\.v1\.Health/Check HTTP/2" 200 .* upstream_host=([^-\s]\S*) upstream_cluster=(outbound\|50051\|\|grpc-health\.sample\.svc\.cluster\.local) `)
)

// sleepExec is the kubectl exec that runs argv in sleep's container in
// cluster1.
func sleepExec(argv ...string) []string {
	return append([]string{"--context", Clusters[0].Name, "-n", "sample", "exec", "deploy/sleep", "-c", "sleep", "--"}, argv...)
}

// otherProtocols calls tcp-echo (TCP) and grpc-health (gRPC) from sleep,
// each until it answers (cluster2's endpoints may still be on their way to
// sleep's proxy), then finds each call in sleep's proxy's access log: both
// must have gone through cluster2's gateway.
func (d *demo) otherProtocols(ctx context.Context, res *DemoResult) error {
	var problems []string
	for _, c := range []struct {
		name string
		argv []string
		ok   func(string) bool
		into *DemoCall
	}{
		{"tcp-echo", tcpEchoCall, func(s string) bool { return strings.HasSuffix(s, " hello from sleep") }, &res.TCP},
		{"grpc-health", grpcHealthCall, func(s string) bool { return strings.HasPrefix(s, "status: SERVING") }, &res.GRPC},
	} {
		args := sleepExec(c.argv...)
		d.cmd("%s", shellLine(append([]string{"kubectl"}, args...)))
		var last string
		err := d.poll(ctx, c.name+"'s answer", func() (bool, error) {
			out, err := d.runKubectl(ctx, false, args...)
			last = strings.TrimSpace(out)
			if err != nil {
				last = strings.TrimSpace(last + " (" + err.Error() + ")")
			}
			return err == nil && c.ok(last), nil
		})
		d.say("%s", last)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v (last answer %q)", c.name, err, last))
			continue
		}
		c.into.Answer = last
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}

	// Envoy writes its access log out every few seconds.
	logArgs := []string{"--context", Clusters[0].Name, "-n", "sample", "logs", "deploy/sleep", "-c", "istio-proxy"}
	d.cmd("%s | grep -E 'tcp-echo|grpc-health'", shellLine(append([]string{"kubectl"}, logArgs...)))
	err := d.poll(ctx, "sleep's proxy to log the TCP and gRPC calls", func() (bool, error) {
		out, err := d.runKubectl(ctx, false, logArgs...)
		if err != nil {
			return false, err
		}
		for _, l := range strings.Split(out, "\n") {
			for _, c := range []struct {
				re   *regexp.Regexp
				into *DemoCall
			}{{tcpEchoLogRE, &res.TCP}, {grpcHealthLogRE, &res.GRPC}} {
				if m := c.re.FindStringSubmatch(l); m != nil {
					c.into.Upstream, c.into.Cluster = m[1], m[2]
				}
			}
		}
		return res.TCP.Upstream != "" && res.GRPC.Upstream != "", nil
	})
	if err != nil {
		return err
	}
	gw := res.Gateway2 + ":15443"
	for _, c := range []struct {
		kind, addr string
		call       DemoCall
	}{{"TCP", "tcp-echo.sample:9000", res.TCP}, {"gRPC", "grpc-health.sample:50051", res.GRPC}} {
		d.say("%-4s %s upstream_host=%s upstream_cluster=%s answered: %s", c.kind, c.addr, c.call.Upstream, c.call.Cluster, c.call.Answer)
		if c.call.Upstream != gw {
			problems = append(problems, fmt.Sprintf("%s to %s went through %s, not cluster2's gateway %s", c.kind, c.addr, c.call.Upstream, gw))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	d.say("TCP and gRPC (HTTP/2) reach cluster2 only through its gateway %s, mutual TLS end to end.", gw)
	return nil
}
