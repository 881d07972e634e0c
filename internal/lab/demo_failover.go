package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DemoFailover is what `lab demo --failover` saw: sleep's answers (by
// version, "failed" for the others) with helloworld's DestinationRule
// applied and v1 healthy, with v1 scaled to 0, and with v1 back.
type DemoFailover struct {
	Healthy, V1Away, V1Back map[string]int
	// ToV2 and ToV1 are how long sleep's calls took to move (from the
	// scale command, from v1's rollout), FailedMoving the calls that
	// failed meanwhile.
	ToV2, ToV1   time.Duration
	FailedMoving int
}

// failoverShown is how many requests each state of the failover step
// shows, and how many answers in a row make a state reached.
const failoverShown = 5

// failover is the demo's locality failover step: helloworld's
// DestinationRule (samples/helloworld/helloworld-failover.yaml) keeps
// sleep's calls in its zone, on v1; v1 scaled to 0, they go to v2
// through cluster2's gateway; v1 back, to v1 again. The rule is deleted
// at the end, so the lab is left as the walkthrough has it (both versions
// answer).
func (d *demo) failover(ctx context.Context, res *DemoResult) error {
	c1 := Clusters[0].Name
	f := &DemoFailover{}
	res.Failover = f
	rule := filepath.Join(d.samples, "helloworld", "helloworld-failover.yaml")
	d.cmd("cat %s", rule)
	b, err := os.ReadFile(rule)
	if err != nil {
		return err
	}
	fmt.Fprint(d.out, string(b))
	if _, err := d.kubectlShown(ctx, "--context", c1, "-n", "sample", "apply", "-f", rule); err != nil {
		return err
	}
	if _, _, err := d.until(ctx, "v1", "sleep's proxy to hold v1 in priority 0 (its zone), cluster2's gateway in priority 1"); err != nil {
		return err
	}
	f.Healthy = d.shown(ctx, "failover-healthy")

	if _, err := d.kubectlShown(ctx, "--context", c1, "-n", "sample", "scale", "deploy", "helloworld-v1", "--replicas=0"); err != nil {
		return err
	}
	var failed int
	if f.ToV2, failed, err = d.until(ctx, "v2", "v1's endpoint to go, and calls to move to the next priority: cluster2's gateway"); err != nil {
		return err
	}
	f.FailedMoving += failed
	f.V1Away = d.shown(ctx, "failover-v1-away")

	if _, err := d.kubectlShown(ctx, "--context", c1, "-n", "sample", "scale", "deploy", "helloworld-v1", "--replicas=1"); err != nil {
		return err
	}
	if _, err := d.kubectlShown(ctx, "--context", c1, "-n", "sample", "rollout", "status", "deploy/helloworld-v1", "--timeout="+d.o.Timeout.String()); err != nil {
		return d.podTrouble(ctx, c1, "sample", err)
	}
	if f.ToV1, failed, err = d.until(ctx, "v1", "v1's new endpoint to reach sleep's proxy"); err != nil {
		return err
	}
	f.FailedMoving += failed
	f.V1Back = d.shown(ctx, "failover-v1-back")

	d.say("")
	for _, s := range []struct {
		name    string
		answers map[string]int
		note    string
	}{
		{"healthy", f.Healthy, ""},
		{"v1-at-0", f.V1Away, fmt.Sprintf(" (moved %s after the scale command)", f.ToV2.Round(100*time.Millisecond))},
		{"v1-back", f.V1Back, fmt.Sprintf(" (moved %s after v1's rollout)", f.ToV1.Round(100*time.Millisecond))},
	} {
		d.say("failover %s: v1=%d v2=%d failed=%d%s", s.name, s.answers["v1"], s.answers["v2"], s.answers["failed"], s.note)
	}
	d.say("failover: %d calls failed while moving", f.FailedMoving)
	var problems []string
	for _, s := range []struct {
		answers map[string]int
		want    string
	}{{f.Healthy, "v1"}, {f.V1Away, "v2"}, {f.V1Back, "v1"}} {
		if s.answers[s.want] != failoverShown {
			problems = append(problems, fmt.Sprintf("want %d answers from %s, got %v", failoverShown, s.want, s.answers))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("failover: %s", strings.Join(problems, "; "))
	}
	d.say("As a DestinationRule with localityLbSetting promises: sleep calls v1 in its own zone alone while it is there, v2 through cluster2's gateway %s when it is not.", res.Gateway2)

	// Back to the walkthrough: both versions answer.
	if _, err := d.kubectlShown(ctx, "--context", c1, "-n", "sample", "delete", "-f", rule); err != nil {
		return err
	}
	d.cmd("%s", shellLine(append([]string{"kubectl"}, curlArgs("horizon-demo-wait")...)))
	d.say("(again and again until both versions have answered: without the rule sleep's proxy holds both in one priority)")
	seen := map[string]bool{}
	last := "horizon-demo-failover-end-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := d.poll(ctx, "answers from v1 and v2 without the rule", func() (bool, error) {
		v, _ := d.curl(ctx, "horizon-demo-wait", false)
		seen[v] = true
		return seen["v1"] && seen["v2"], nil
	}); err != nil {
		return err
	}
	d.curl(ctx, last, false)
	// Leave sleep's proxy's access log written out (Envoy flushes it every
	// few seconds), as the other steps do: a `kubectl logs -f` started
	// after the demo shows only what comes after it.
	logArgs := []string{"--context", c1, "-n", "sample", "logs", "deploy/sleep", "-c", "istio-proxy"}
	return d.poll(ctx, "sleep's proxy to log the last request", func() (bool, error) {
		out, err := d.runKubectl(ctx, false, logArgs...)
		return strings.Contains(out, `"`+last+`"`), err
	})
}

// until curls helloworld from sleep until version answers
// failoverShown times in a row (printing the command once and why it
// waits); it returns how long that took to begin and how many calls
// failed meanwhile.
func (d *demo) until(ctx context.Context, version, why string) (time.Duration, int, error) {
	d.cmd("%s", shellLine(append([]string{"kubectl"}, curlArgs("horizon-demo-wait")...)))
	d.say("(again and again until %s answers %d times in a row: %s)", version, failoverShown, why)
	begin := time.Now()
	var run []time.Time
	failed := 0
	var last string
	err := d.poll(ctx, version+" to answer alone", func() (bool, error) {
		at := time.Now()
		v, out := d.curl(ctx, "horizon-demo-wait", false)
		last = out
		switch v {
		case version:
			run = append(run, at)
		case "":
			failed++
			run = nil
		default:
			run = nil
		}
		return len(run) >= failoverShown, nil
	})
	if err != nil {
		return 0, failed, fmt.Errorf("%w (last answer %q)", err, last)
	}
	took := run[0].Sub(begin)
	d.say("(%s answers alone from %s on; %d calls failed before)", version, took.Round(100*time.Millisecond), failed)
	return took, failed, nil
}

// shown runs failoverShown requests from sleep, each printed with its
// answer, and counts the answers by version.
func (d *demo) shown(ctx context.Context, tag string) map[string]int {
	got := map[string]int{}
	for i := range failoverShown {
		v, out := d.curl(ctx, fmt.Sprintf("horizon-demo-%s-%d", tag, i+1), true)
		d.say("%s", out)
		if v == "" {
			v = "failed"
		}
		got[v]++
	}
	return got
}
