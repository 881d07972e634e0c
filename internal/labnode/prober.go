package labnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// probe runs c's startup probe, then its liveness and readiness probes,
// until ctx ends (the container exited or the pod is going).
func (p *podRun) probe(ctx context.Context, c *ctr, plan *ContainerPlan) {
	if plan.Startup != nil {
		ok := false
		p.probeLoop(ctx, plan, c.spec.Name, plan.Startup, func(res bool) bool {
			if !res {
				p.logf("container %s: startup probe failed %d times: restarting it", c.spec.Name, plan.Startup.FailureThreshold)
				p.kill(c)
			}
			ok = res
			return true
		})
		if !ok || ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		c.started = true
		t := true
		c.status.Started = &t
		c.ready = plan.Readiness == nil
		p.mu.Unlock()
		p.touch()
	}
	var wg sync.WaitGroup
	if plan.Liveness != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.probeLoop(ctx, plan, c.spec.Name, plan.Liveness, func(res bool) bool {
				if res {
					return false
				}
				p.logf("container %s: liveness probe failed %d times: restarting it", c.spec.Name, plan.Liveness.FailureThreshold)
				p.kill(c)
				return true
			})
		}()
	}
	if plan.Readiness != nil {
		p.probeLoop(ctx, plan, c.spec.Name, plan.Readiness, func(res bool) bool {
			p.mu.Lock()
			changed := c.ready != res
			c.ready = res
			p.mu.Unlock()
			if changed {
				p.touch()
			}
			return false
		})
	}
	wg.Wait()
}

// kill ends a container's process group (SIGTERM, SIGKILL 2s later) so that
// it restarts.
func (p *podRun) kill(c *ctr) {
	p.mu.Lock()
	proc := c.proc
	p.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.SignalGroup(syscall.SIGTERM)
	time.AfterFunc(2*time.Second, func() {
		p.mu.Lock()
		same := c.proc == proc
		p.mu.Unlock()
		if same {
			_ = proc.SignalGroup(syscall.SIGKILL)
		}
	})
}

// probeLoop checks every period after the initial delay; once the success
// or failure threshold is reached it calls result, and stops when that
// returns true.
func (p *podRun) probeLoop(ctx context.Context, plan *ContainerPlan, name string, pr *ProbePlan, result func(bool) bool) {
	if !sleepCtx(ctx, pr.InitialDelay) {
		return
	}
	succ, fail := 0, 0
	for {
		err := p.check(ctx, plan, name, pr)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			succ, fail = succ+1, 0
		} else {
			succ, fail = 0, fail+1
		}
		if succ >= pr.SuccessThreshold && result(true) {
			return
		}
		if fail >= pr.FailureThreshold && result(false) {
			return
		}
		if !sleepCtx(ctx, pr.Period) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// check runs one probe: HTTP and TCP connect from inside the pod's network
// namespace, exec runs the command in the container's namespaces as its
// user.
func (p *podRun) check(ctx context.Context, plan *ContainerPlan, name string, pr *ProbePlan) error {
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout)
	defer cancel()
	switch pr.Kind {
	case ProbeTCP:
		conn, err := p.n.rt.Dial(ctx, p.netns, pr.Addr())
		if err != nil {
			return err
		}
		return conn.Close()
	case ProbeHTTP:
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return p.n.rt.Dial(ctx, p.netns, addr)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet's probes
			DisableKeepAlives: true,
		}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.URL(), nil)
		if err != nil {
			return err
		}
		for k, vs := range pr.Headers {
			req.Header[k] = vs
		}
		if h := pr.Headers.Get("Host"); h != "" {
			req.Host = h
		}
		req.Header.Set("User-Agent", "kube-probe/1.37")
		resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe: status %d", resp.StatusCode)
		}
		return nil
	case ProbeExec:
		proc, err := p.startProcess(name+"-probe", plan, pr.Command, Stdio{})
		if err != nil {
			return err
		}
		done := make(chan int, 1)
		go func() { done <- proc.Wait() }()
		select {
		case code := <-done:
			if code != 0 {
				return fmt.Errorf("exec probe: exit code %d", code)
			}
			return nil
		case <-ctx.Done():
			_ = proc.SignalGroup(syscall.SIGKILL)
			<-done
			return ctx.Err()
		}
	}
	return fmt.Errorf("unknown probe kind %q", pr.Kind)
}
