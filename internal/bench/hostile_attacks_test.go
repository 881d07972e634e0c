//go:build bench

package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// The attackers of the hostile-load benchmark, one function per class of
// issue 17. Each starts its workers on wg; a worker repeats its attempt (a
// stream, usually held until the server ends it) until the class ends,
// pausing -hostile-pace between attempts, and the attack counts how each
// attempt ended.

// attack counts what the attackers of one class got.
type attack struct {
	attempts atomic.Int64 // streams opened
	answered atomic.Int64 // streams that got at least one response
	sent     atomic.Int64 // messages of note sent (NACKs, invented types, ...)

	mu    sync.Mutex
	ended map[string]int // how attempts ended: a gRPC code, or "held" (still open when the class ended)
}

func newAttack() *attack { return &attack{ended: map[string]int{}} }

// workers starts n workers repeating attempt until ctx ends.
func (a *attack) workers(ctx context.Context, wg *sync.WaitGroup, n int, attempt func(ctx context.Context, w int) error) {
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				a.attempts.Add(1)
				err := attempt(ctx, w)
				a.end(ctx, err)
				sleepCtx(ctx, *hostilePace)
			}
		}()
	}
}

func (a *attack) end(ctx context.Context, err error) {
	key := "OK"
	switch {
	case ctx.Err() != nil:
		key = "held"
	case err != nil && !errors.Is(err, io.EOF):
		key = codeOf(err)
	}
	a.mu.Lock()
	a.ended[key]++
	a.mu.Unlock()
}

// attackReport is what the attackers' process reports of a class.
type attackReport struct {
	Attackers                string // what they did, for the table
	Attempts, Answered, Sent int64
	Ended                    map[string]int
	CPU                      time.Duration // the attackers' process's
}

func (a *attack) report(attackers string) *attackReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &attackReport{Attackers: attackers, Attempts: a.attempts.Load(), Answered: a.answered.Load(), Sent: a.sent.Load(), Ended: a.ended}
}

func (r *attackReport) summary() string {
	s := fmt.Sprintf("%d streams (%s); %d answered", r.Attempts, counts(r.Ended), r.Answered)
	if r.Sent > 0 {
		s += fmt.Sprintf("; %d sent", r.Sent)
	}
	return s
}

// The attackers run in a process of their own, the test binary again
// (TestHostileAttackers): their goroutines and garbage would otherwise
// share a Go runtime with the legitimate clients and delay what those
// measure. Only the machine's CPU is shared, as it is with discovery.
var (
	attackClass  = flag.String("hostile-attack", "", "internal: run this class's attackers (TestHostileAttackers)")
	attackXDS    = flag.String("hostile-attack-xds", "", "internal: discovery's plaintext xDS address")
	attackSecure = flag.String("hostile-attack-secure", "", "internal: discovery's TLS xDS address")
)

const reportPrefix = "HOSTILE-ATTACK-REPORT "

// TestHostileAttackers is the attackers' process of TestHostile: it runs
// one class for -hostile-duration and prints its report.
func TestHostileAttackers(t *testing.T) {
	c, ok := classByKey(*attackClass)
	if !ok {
		t.Skip("run by TestHostile with -hostile-attack")
	}
	h := &hostile{t: t, cp: &cpProc{xds: *attackXDS}, secure: *attackSecure}
	for i := range *hostileServices {
		h.podIPs = append(h.podIPs, ip(i*2+1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *hostileDuration)
	defer cancel()
	a := newAttack()
	var wg sync.WaitGroup
	attackers := c.run(ctx, h, a, &wg)
	wg.Wait()
	b, err := json.Marshal(a.report(attackers))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\n%s%s\n", reportPrefix, b)
}

// attackerProc is a running attackers' process.
type attackerProc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

// startAttackers starts the attackers of class key against the current
// discovery, with this run's -hostile-* flags.
func (h *hostile) startAttackers(key string) *attackerProc {
	args := []string{"-test.run=^TestHostileAttackers$", "-hostile-attack=" + key, "-hostile-attack-xds=" + h.cp.xds, "-hostile-attack-secure=" + h.secure}
	flag.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "hostile-") && !strings.HasPrefix(f.Name, "hostile-attack") {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	p := &attackerProc{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		h.t.Fatalf("attackers: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p
}

// wait waits for the attackers' report (their class has ended); on failure
// it returns the tail of their output instead.
func (p *attackerProc) wait() (*attackReport, string) {
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	out := p.out.String()
	i := strings.LastIndex(out, reportPrefix)
	if i < 0 {
		return nil, out[max(0, len(out)-500):]
	}
	line, _, _ := strings.Cut(out[i+len(reportPrefix):], "\n")
	r := &attackReport{}
	if err := json.Unmarshal([]byte(line), r); err != nil {
		return nil, err.Error()
	}
	r.CPU = p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	return r, ""
}

// drain reads a stream's responses until it ends, counting it answered at
// the first.
func (a *attack) drain(recv func() error) error {
	first := true
	for {
		if err := recv(); err != nil {
			return err
		}
		if first {
			first = false
			a.answered.Add(1)
		}
	}
}

// attackerConn is a connection to discovery from attacker address i
// (127.0.0.2 + i mod -hostile-attacker-addrs), plaintext or TLS without a
// client certificate; it is closed when ctx ends.
func attackerConn(ctx context.Context, addr string, i int, secure bool) *grpc.ClientConn {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%max(1, min(*hostileAddrs, 250))))}
	creds := insecure.NewCredentials()
	if secure {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) // an attacker checks nothing
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: src}
			return d.DialContext(ctx, "tcp", a)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		panic(err) // only for a bad option
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn
}

// attackerConns is n connections for the streams of many workers.
func attackerConns(ctx context.Context, addr string, n int, secure bool) []*grpc.ClientConn {
	out := make([]*grpc.ClientConn, n)
	for i := range out {
		out[i] = attackerConn(ctx, addr, i, secure)
	}
	return out
}

func sotw(ctx context.Context, conn *grpc.ClientConn) (discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
	return discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
}

// hold sends reqs on a new SotW stream and reads until the stream ends.
func (a *attack) hold(ctx context.Context, conn *grpc.ClientConn, reqs ...*discovery.DiscoveryRequest) error {
	s, err := sotw(ctx, conn)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			break // the server ended the stream: Recv tells why
		}
	}
	return a.drain(func() error { _, err := s.Recv(); return err })
}

// attackerNode is a sidecar node claiming the given IPs in the bench
// namespace of the local cluster.
func attackerNode(w int, ips ...string) *corev3.Node {
	n := adsclient.NodeWithIdentity(fmt.Sprintf("sidecar~%s~attacker-%d.%s~%s.svc.cluster.local", ips[0], w, benchNS, benchNS),
		"network1", "cluster1", benchNS, "default")
	n.Metadata.Fields["INSTANCE_IPS"] = structpb.NewStringValue(strings.Join(ips, ","))
	return n
}

func nack(typeURL, nonce, detail string) *discovery.DiscoveryRequest {
	return &discovery.DiscoveryRequest{TypeUrl: typeURL, ResponseNonce: nonce, ErrorDetail: &statuspb.Status{Code: 3, Message: detail}}
}

// attackViews (issue 17, item 1): sidecar streams of the local cluster whose
// INSTANCE_IPS name real Pod IPs in ever new combinations, and router
// streams with invented LABELS, each asking for CDS and LDS and holding its
// stream.
func attackViews(ctx context.Context, h *hostile, a *attack, wg *sync.WaitGroup) string {
	conns := attackerConns(ctx, h.cp.xds, 16, false)
	a.workers(ctx, wg, *viewStreams, func(ctx context.Context, w int) error {
		ips := make([]string, 1+rand.IntN(4))
		for i := range ips {
			ips[i] = h.podIPs[rand.IntN(len(h.podIPs))]
		}
		node := attackerNode(w, ips...)
		return a.hold(ctx, conns[w%len(conns)], &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType},
			&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType})
	})
	a.workers(ctx, wg, *routerStreams, func(ctx context.Context, w int) error {
		node := adsclient.Node(fmt.Sprintf("router~10.200.%d.%d~gw-%d.istio-system~istio-system.svc.cluster.local", w/250, w%250+1, w),
			"network1", "cluster1")
		node.Metadata.Fields["LABELS"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"istio": structpb.NewStringValue("eastwestgateway"), "invented": structpb.NewStringValue(fmt.Sprintf("%d-%d", w, rand.Uint32()))}})
		return a.hold(ctx, conns[w%len(conns)], &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType},
			&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType})
	})
	return fmt.Sprintf("%d sidecar streams (real Pod IPs combined) + %d router streams (invented LABELS), plaintext", *viewStreams, *routerStreams)
}

// attackTypeURLs (item 2): requests and NACKs for invented type URLs, short
// ones (a new one per message, on as many types as the stream is allowed)
// and ~4 MB ones.
func attackTypeURLs(ctx context.Context, h *hostile, a *attack, wg *sync.WaitGroup) string {
	conns := attackerConns(ctx, h.cp.xds, 8, false)
	short, long := (*typeStreams+1)/2, *typeStreams/2
	var seq atomic.Int64
	a.workers(ctx, wg, short, func(ctx context.Context, w int) error {
		s, err := sotw(ctx, conns[w%len(conns)])
		if err != nil {
			return err
		}
		for i := 0; i < 1000; i++ {
			typeURL := fmt.Sprintf("type.googleapis.com/attacker.Invented%d", seq.Add(1))
			req := &discovery.DiscoveryRequest{TypeUrl: typeURL}
			if i%2 == 1 {
				req = nack(typeURL, "nonce", "rejected")
			}
			if i == 0 {
				req.Node = attackerNode(w, h.podIPs[w%len(h.podIPs)])
			}
			if s.Send(req) != nil {
				break
			}
			a.sent.Add(1)
		}
		return a.drain(func() error { _, err := s.Recv(); return err })
	})
	a.workers(ctx, wg, long, func(ctx context.Context, w int) error {
		// Just under gRPC's default 4 MiB message bound, unique per message.
		typeURL := fmt.Sprintf("type.googleapis.com/attacker.%d.", seq.Add(1)) + strings.Repeat("x", 4<<20-2048)
		req := &discovery.DiscoveryRequest{Node: attackerNode(w, h.podIPs[w%len(h.podIPs)]), TypeUrl: typeURL}
		if w%2 == 1 {
			req = nack(typeURL, "nonce", "rejected")
			req.Node = attackerNode(w, h.podIPs[w%len(h.podIPs)])
		}
		a.sent.Add(1)
		return a.hold(ctx, conns[w%len(conns)], req)
	})
	return fmt.Sprintf("%d streams of short invented types + %d of ~4 MB ones (requests and NACKs), plaintext", short, long)
}

// attackNames (item 3): a delta stream subscribing 100 × 30,000 new names;
// state-of-the-world streams naming 3 MB per type for 5 types; streams whose
// node carries 3.5 MB of junk metadata.
func attackNames(ctx context.Context, h *hostile, a *attack, wg *sync.WaitGroup) string {
	conns := attackerConns(ctx, h.cp.xds, 8, false)
	var seq atomic.Int64
	a.workers(ctx, wg, *deltaNameStreams, func(ctx context.Context, w int) error {
		s, err := discovery.NewAggregatedDiscoveryServiceClient(conns[w%len(conns)]).DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		for r := 0; r < 100; r++ {
			names := make([]string, 30000)
			base := seq.Add(1)
			for j := range names {
				names[j] = fmt.Sprintf("outbound|5000||junk-%d-%d.%s.svc.cluster.local", base, j, benchNS)
			}
			req := &discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names}
			if r == 0 {
				req.Node = attackerNode(w, h.podIPs[w%len(h.podIPs)])
			}
			if s.Send(req) != nil {
				break
			}
			a.sent.Add(1)
		}
		return a.drain(func() error { _, err := s.Recv(); return err })
	})
	// 3 MB of names: ~64,000 names of ~48 bytes, per type.
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, translate.NameTableType}
	a.workers(ctx, wg, *sotwNameStreams, func(ctx context.Context, w int) error {
		base := seq.Add(1)
		var reqs []*discovery.DiscoveryRequest
		for ti, typeURL := range types {
			names := make([]string, 0, 64000)
			for size := 0; size < 3<<20; {
				n := fmt.Sprintf("outbound|5000||junk-%d-%d-%d.%s.svc.cluster.local", base, ti, len(names), benchNS)
				names = append(names, n)
				size += len(n) + 2
			}
			reqs = append(reqs, &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names})
		}
		reqs[0].Node = attackerNode(w, h.podIPs[w%len(h.podIPs)])
		a.sent.Add(int64(len(reqs)))
		return a.hold(ctx, conns[w%len(conns)], reqs...)
	})
	junk := strings.Repeat("j", 3500<<10)
	a.workers(ctx, wg, *metadataStreams, func(ctx context.Context, w int) error {
		node := attackerNode(w, h.podIPs[w%len(h.podIPs)])
		node.Metadata.Fields[fmt.Sprintf("JUNK_%d", seq.Add(1))] = structpb.NewStringValue(junk)
		a.sent.Add(1)
		return a.hold(ctx, conns[w%len(conns)], &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType})
	})
	return fmt.Sprintf("%d delta stream(s) × 100 × 30,000 new names + %d SotW streams × 5 types × 3 MB of names + %d streams with 3.5 MB node metadata, plaintext",
		*deltaNameStreams, *sotwNameStreams, *metadataStreams)
}

// attackSilent (item 4): TLS connections without certificate or token, and
// plaintext ones, whose streams never send a request.
func attackSilent(ctx context.Context, h *hostile, a *attack, wg *sync.WaitGroup) string {
	tlsConns := attackerConns(ctx, h.secure, *silentTLS, true)
	plainConns := attackerConns(ctx, h.cp.xds, *silentPlain, false)
	silent := func(conns []*grpc.ClientConn) func(context.Context, int) error {
		return func(ctx context.Context, w int) error {
			s, err := sotw(ctx, conns[w])
			if err != nil {
				return err
			}
			return a.drain(func() error { _, err := s.Recv(); return err })
		}
	}
	a.workers(ctx, wg, *silentTLS, silent(tlsConns))
	a.workers(ctx, wg, *silentPlain, silent(plainConns))
	return fmt.Sprintf("%d TLS connections (no certificate, no token) + %d plaintext ones, streams that send nothing", *silentTLS, *silentPlain)
}

// attackJunkTokens (item 5): parallel stream opens on the TLS port, each
// with a new junk bearer token, continuously.
func attackJunkTokens(ctx context.Context, h *hostile, a *attack, wg *sync.WaitGroup) string {
	conns := attackerConns(ctx, h.secure, *junkTokenOpens, true)
	a.workers(ctx, wg, *junkTokenOpens, func(ctx context.Context, w int) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", fmt.Sprintf("Bearer junk.%016x%016x", rand.Uint64(), rand.Uint64()),
			"clusterid", "cluster1")
		return a.hold(ctx, conns[w], &discovery.DiscoveryRequest{Node: attackerNode(w, h.podIPs[w%len(h.podIPs)]), TypeUrl: resource.ClusterType})
	})
	return fmt.Sprintf("%d parallel opens with junk bearer tokens, TLS", *junkTokenOpens)
}

// attackNACKs (item 6): streams that take their clusters and then NACK
// them back to back, each NACK with a different 1 KB error detail.
func attackNACKs(ctx context.Context, h *hostile, a *attack, wg *sync.WaitGroup) string {
	conns := attackerConns(ctx, h.cp.xds, *nackStreams, false)
	filler := strings.Repeat("error detail ", 100)
	a.workers(ctx, wg, *nackStreams, func(ctx context.Context, w int) error {
		s, err := sotw(ctx, conns[w])
		if err != nil {
			return err
		}
		if err := s.Send(&discovery.DiscoveryRequest{Node: attackerNode(w, h.podIPs[w%len(h.podIPs)]), TypeUrl: resource.ClusterType}); err != nil {
			return err
		}
		r, err := s.Recv()
		if err != nil {
			return err
		}
		a.answered.Add(1)
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := s.Recv(); err != nil {
					done <- err
					return
				}
			}
		}()
		for i := 0; ; i++ {
			detail := fmt.Sprintf("attacker %d NACK %d: ", w, i)
			detail += filler[:1024-len(detail)]
			if err := s.Send(nack(resource.ClusterType, r.GetNonce(), detail)); err != nil {
				return <-done
			}
			a.sent.Add(1)
		}
	})
	return fmt.Sprintf("%d streams NACKing back to back (distinct 1 KB details), plaintext", *nackStreams)
}
