package labnode

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Container waiting reasons, as the kubelet's.
const (
	reasonCreating     = "ContainerCreating"
	reasonPodInit      = "PodInitializing"
	reasonImagePull    = "ErrImagePull"
	reasonConfig       = "CreateContainerConfigError"
	reasonRunError     = "RunContainerError"
	reasonCrashLoop    = "CrashLoopBackOff"
	reasonUnsupported  = "UnsupportedPodSpec"
	reasonNetwork      = "NetworkSetupError"
	defaultGracePeriod = 30 * time.Second
)

// ctr is one container's state.
type ctr struct {
	spec    *corev1.Container
	init    bool
	status  corev1.ContainerStatus
	ready   bool // readiness probe (or running without one)
	started bool // startup probe passed (or running without one)
	proc    Process
	// plan is the running process's (exec enters it as its user, with its
	// environment).
	plan *ContainerPlan
	// runs counts the container's runs; log is the last one's (logs/NAME/
	// RUNS.log), stdin the write end of its stdin when spec.stdin is set.
	runs  int
	log   *logFile
	stdin *os.File
}

// podRun runs one pod.
type podRun struct {
	n     *Node
	key   string
	netns string
	dir   string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines that may start processes
	gone   chan struct{}  // closed once everything is removed

	mu          sync.Mutex
	pod         *corev1.Pod // spec as the API has it, status as we make it
	ip          netip.Addr
	ctrs        []*ctr // init containers, then containers
	initialized bool
	phase       corev1.PodPhase
	reason, msg string
	conds       map[corev1.PodConditionType]corev1.PodCondition
	terminating bool
	startTime   metav1.Time
	changed     chan struct{}
}

func (n *Node) newPodRun(pod *corev1.Pod) *podRun {
	ctx, cancel := context.WithCancel(context.Background())
	p := &podRun{
		n: n, key: pod.Namespace + "/" + pod.Name, netns: n.net.NetnsName(string(pod.UID)),
		dir: filepath.Join(n.cfg.StateDir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)),
		ctx: ctx, cancel: cancel, gone: make(chan struct{}),
		pod: pod.DeepCopy(), phase: corev1.PodPending, conds: map[corev1.PodConditionType]corev1.PodCondition{},
		startTime: metav1.Now(), changed: make(chan struct{}, 1),
	}
	for i := range p.pod.Spec.InitContainers {
		c := &p.pod.Spec.InitContainers[i]
		p.ctrs = append(p.ctrs, &ctr{spec: c, init: true, status: waitingStatus(c, reasonPodInit, "")})
	}
	for i := range p.pod.Spec.Containers {
		c := &p.pod.Spec.Containers[i]
		reason := reasonCreating
		if len(p.pod.Spec.InitContainers) > 0 {
			reason = reasonPodInit
		}
		p.ctrs = append(p.ctrs, &ctr{spec: c, status: waitingStatus(c, reason, "")})
	}
	return p
}

func waitingStatus(c *corev1.Container, reason, msg string) corev1.ContainerStatus {
	f := false
	return corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: &f,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
}

func (p *podRun) logf(format string, args ...any) {
	p.n.cfg.Logf("labnode %s: pod %s: %s", p.n.cfg.NodeName, p.key, fmt.Sprintf(format, args...))
}

// touch marks the status changed (the notifier sends the latest).
func (p *podRun) touch() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// notifier sends the pod's status to virtual-kubelet whenever it changes,
// always the latest, one at a time.
func (p *podRun) notifier() {
	for {
		select {
		case <-p.changed:
		case <-p.gone:
			return
		}
		p.n.send(p.snapshot())
	}
}

func (n *Node) send(pod *corev1.Pod) {
	n.mu.Lock()
	cb := n.notify
	n.mu.Unlock()
	if cb != nil {
		cb(pod)
	}
}

// snapshot is the pod with its current status.
func (p *podRun) snapshot() *corev1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod := p.pod.DeepCopy()
	pod.Status = p.statusLocked()
	return pod
}

func (p *podRun) setCond(t corev1.PodConditionType, ok bool, reason string) {
	s := corev1.ConditionFalse
	if ok {
		s = corev1.ConditionTrue
	}
	if c, have := p.conds[t]; have && c.Status == s {
		return
	}
	p.conds[t] = corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: metav1.Now()}
}

func (p *podRun) statusLocked() corev1.PodStatus {
	// The API server sets status.qosClass at creation and rejects any
	// status write that changes it: keep the pod's.
	qos := p.pod.Status.QOSClass
	if qos == "" {
		qos = corev1.PodQOSBestEffort
	}
	st := corev1.PodStatus{Phase: p.phase, Reason: p.reason, Message: p.msg, StartTime: &p.startTime, QOSClass: qos}
	if p.ip.IsValid() {
		st.PodIP = p.ip.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	if p.n.nodeIP != "" {
		st.HostIP = p.n.nodeIP
		st.HostIPs = []corev1.HostIP{{IP: p.n.nodeIP}}
	}
	allReady := true
	for _, c := range p.ctrs {
		cs := *c.status.DeepCopy()
		if c.init {
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		cs.Ready = c.ready && cs.State.Running != nil
		allReady = allReady && cs.Ready
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	p.setCond(corev1.PodScheduled, true, "")
	p.setCond(corev1.PodInitialized, p.initialized, map[bool]string{false: "ContainersNotInitialized"}[p.initialized])
	p.setCond(corev1.ContainersReady, allReady && p.initialized, map[bool]string{false: "ContainersNotReady"}[allReady && p.initialized])
	p.setCond(corev1.PodReady, allReady && p.initialized, map[bool]string{false: "ContainersNotReady"}[allReady && p.initialized])
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		st.Conditions = append(st.Conditions, p.conds[t])
	}
	return st
}

// setWaiting puts containers (all when names is empty) in Waiting.
func (p *podRun) setWaiting(reason, msg string, only ...*ctr) {
	p.mu.Lock()
	targets := only
	if len(targets) == 0 {
		targets = p.ctrs
	}
	for _, c := range targets {
		f := false
		c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
		c.status.Started = &f
		c.ready, c.started = false, false
	}
	p.mu.Unlock()
	p.touch()
}

// sleep waits d or until the pod ends; false when it ended.
func (p *podRun) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// run brings the pod up: checks, network, volumes, init containers in
// order, then the containers (each in its own goroutine).
func (p *podRun) run() {
	defer p.wg.Done()
	pod := p.snapshot()
	if errs := Check(pod); len(errs) > 0 {
		msg := "the lab node cannot run this pod: " + errs.ToAggregate().Error()
		p.mu.Lock()
		p.reason, p.msg = reasonUnsupported, msg
		p.mu.Unlock()
		p.setWaiting(reasonConfig, msg)
		p.logf("%s", msg)
		return
	}
	var imageErrs []error
	for _, c := range p.ctrs {
		if _, err := MapImage(c.spec, p.n.cfg.Programs); err != nil {
			imageErrs = append(imageErrs, err)
			p.setWaiting(reasonImagePull, err.Error(), c)
		}
	}
	if len(imageErrs) > 0 {
		p.logf("%v", errors.Join(imageErrs...))
		return
	}
	ip, err := p.n.net.Allocate(p.key + "/" + string(pod.UID))
	if err == nil {
		err = p.n.net.Setup(p.ctx, string(pod.UID), ip)
	}
	if err != nil {
		p.mu.Lock()
		p.reason, p.msg = reasonNetwork, err.Error()
		p.mu.Unlock()
		p.setWaiting(reasonCreating, "network: "+err.Error())
		p.logf("network: %v", err)
		return
	}
	p.mu.Lock()
	p.ip = ip
	p.pod.Status.PodIP = ip.String()
	p.pod.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	p.pod.Status.HostIP = p.n.nodeIP
	p.mu.Unlock()
	p.touch()
	if !p.writeVolumes() {
		return
	}
	p.wg.Add(1)
	go p.refreshVolumes()
	restart := p.pod.Spec.RestartPolicy
	for _, c := range p.ctrs {
		if !c.init {
			continue
		}
		for {
			code, ok := p.runOnce(c)
			if !ok {
				return
			}
			if code == 0 {
				break
			}
			if restart == corev1.RestartPolicyNever {
				p.mu.Lock()
				p.phase, p.reason, p.msg = corev1.PodFailed, "InitContainerFailed", fmt.Sprintf("init container %s exited with %d", c.spec.Name, code)
				p.mu.Unlock()
				p.touch()
				return
			}
			if !p.backoff(c) {
				return
			}
		}
	}
	p.mu.Lock()
	p.initialized = true
	p.phase = corev1.PodRunning
	for _, c := range p.ctrs {
		if !c.init {
			f := false
			c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reasonCreating}}
			c.status.Started = &f
		}
	}
	p.mu.Unlock()
	p.touch()
	for _, c := range p.ctrs {
		if !c.init {
			p.wg.Add(1)
			go p.runContainer(c)
		}
	}
}

// backoff waits before restarting c (CrashLoopBackOff); false when the pod
// ended meanwhile.
func (p *podRun) backoff(c *ctr) bool {
	p.mu.Lock()
	d := p.n.cfg.RestartBackoff
	for i := int32(1); i < c.status.RestartCount && d < p.n.cfg.MaxRestartBackoff; i++ {
		d *= 2
	}
	d = min(d, p.n.cfg.MaxRestartBackoff)
	if t := c.status.State.Terminated; t != nil {
		c.status.LastTerminationState = corev1.ContainerState{Terminated: t}
		// A container that ran ten minutes starts its back-off afresh.
		if t.FinishedAt.Sub(t.StartedAt.Time) > 10*time.Minute {
			d = p.n.cfg.RestartBackoff
		}
	}
	c.status.RestartCount++
	p.mu.Unlock()
	p.setWaiting(reasonCrashLoop, fmt.Sprintf("back-off %s restarting failed container %s", d, c.spec.Name), c)
	return p.sleep(d)
}

// runContainer runs a (non-init) container, restarting it as the restart
// policy says.
func (p *podRun) runContainer(c *ctr) {
	defer p.wg.Done()
	for {
		code, ok := p.runOnce(c)
		if !ok {
			return
		}
		switch p.pod.Spec.RestartPolicy {
		case corev1.RestartPolicyNever:
			p.maybeDone()
			return
		case corev1.RestartPolicyOnFailure:
			if code == 0 {
				p.maybeDone()
				return
			}
		}
		if !p.backoff(c) {
			return
		}
	}
}

// maybeDone ends the pod when every container terminated for good.
func (p *podRun) maybeDone() {
	p.mu.Lock()
	failed := false
	for _, c := range p.ctrs {
		if c.init {
			continue
		}
		t := c.status.State.Terminated
		if t == nil {
			p.mu.Unlock()
			return
		}
		if t.ExitCode != 0 && p.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			failed = true
		}
	}
	p.phase = corev1.PodSucceeded
	if failed {
		p.phase = corev1.PodFailed
	}
	p.mu.Unlock()
	p.touch()
}

// runOnce plans, starts and waits for one run of c, with its probes. It
// returns the exit code, and false when the pod ended before or during it.
func (p *podRun) runOnce(c *ctr) (int, bool) {
	var plan *ContainerPlan
	for {
		if p.ctx.Err() != nil {
			return 0, false
		}
		var err error
		pod := p.snapshot()
		plan, err = PlanContainer(p.ctx, pod, c.spec, p.n.cfg.Programs, p.n.lookup(), p.volumeDir, p.n.cfg.Path)
		if err == nil {
			if len(p.n.cfg.Env) > 0 {
				plan.Env = append(append([]string(nil), p.n.cfg.Env...), plan.Env...)
			}
			break
		}
		reason := reasonConfig
		var ie *ImageError
		if errors.As(err, &ie) {
			reason = reasonImagePull
		}
		p.setWaiting(reason, err.Error(), c)
		if !p.sleep(5 * time.Second) {
			return 0, false
		}
	}
	proc, err := p.start(c, plan)
	if err != nil {
		p.setWaiting(reasonRunError, err.Error(), c)
		p.logf("container %s: %v", c.spec.Name, err)
		if !p.sleep(p.n.cfg.RestartBackoff) {
			return 0, false
		}
		return -1, p.ctx.Err() == nil
	}
	startedAt := metav1.Now()
	exited := make(chan struct{})
	p.mu.Lock()
	c.status.ContainerID = fmt.Sprintf("lab://%d", proc.PID())
	c.status.ImageID = "lab://" + plan.Program.Image
	c.status.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	c.started = plan.Startup == nil
	c.ready = plan.Readiness == nil && c.started
	started := c.started
	c.status.Started = &started
	p.mu.Unlock()
	p.touch()
	probeCtx, stopProbes := context.WithCancel(p.ctx)
	var probes sync.WaitGroup
	if !c.init {
		probes.Add(1)
		go func() { defer probes.Done(); p.probe(probeCtx, c, plan) }()
	}
	code := proc.Wait()
	close(exited)
	stopProbes()
	probes.Wait()
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	p.mu.Lock()
	c.proc = nil
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
	}
	c.ready, c.started = false, false
	f := false
	c.status.Started = &f
	c.status.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason, StartedAt: startedAt, FinishedAt: metav1.Now(), ContainerID: c.status.ContainerID}}
	p.mu.Unlock()
	p.touch()
	return code, p.ctx.Err() == nil
}

func (p *podRun) volumeDir(name string) string { return filepath.Join(p.dir, "volumes", name) }

// launch is the Launch of a plan in this pod, with argv instead of the
// plan's when given (exec probes).
func (p *podRun) launch(name string, plan *ContainerPlan, argv []string) (*Launch, error) {
	var targets []string
	for _, m := range plan.Mounts {
		targets = append(targets, m.Target)
	}
	shadows, err := Shadows(targets, func(path string) bool {
		fi, err := os.Stat(path)
		return err == nil && fi.IsDir()
	})
	if err != nil {
		return nil, err
	}
	if argv == nil {
		argv = plan.Argv
	}
	p.mu.Lock()
	host := p.pod.Name
	p.mu.Unlock()
	var files []Mount
	if p.n.cfg.HostsFile != "" {
		files = append(files, Mount{Source: p.n.cfg.HostsFile, Target: "/etc/hosts", ReadOnly: true})
	}
	if p.n.cfg.ResolvConf != "" {
		files = append(files, Mount{Source: p.n.cfg.ResolvConf, Target: "/etc/resolv.conf", ReadOnly: true})
	}
	return &Launch{Netns: p.netns, Hostname: host, Shadows: shadows, Scratch: filepath.Join(p.dir, "scratch", name),
		Mounts: plan.Mounts, Files: files, WorkDir: plan.WorkDir, UID: plan.UID, GID: plan.GID, Groups: plan.Groups, Caps: plan.Caps, Argv: argv}, nil
}

// startProcess starts the process of a container (argv nil) or of an exec
// probe in it.
func (p *podRun) startProcess(name string, plan *ContainerPlan, argv []string, stdio Stdio) (Process, error) {
	l, err := p.launch(name, plan, argv)
	if err != nil {
		return nil, err
	}
	return p.n.rt.Start(l, plan.Env, stdio)
}

// start starts container c's process, its stdout and stderr through pipes
// into the run's log (logfile.go).
func (p *podRun) start(c *ctr, plan *ContainerPlan) (Process, error) {
	l, err := p.launch(c.spec.Name, plan, nil)
	if err != nil {
		return nil, err
	}
	dir := p.logDir(c.spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p.mu.Lock()
	run := c.runs + 1
	p.mu.Unlock()
	lf, err := createLogFile(runLogPath(dir, run), p.n.cfg.LogMaxSize, p.n.cfg.LogMaxFiles)
	if err != nil {
		return nil, err
	}
	// The ends this process keeps (read ends, stdin's write end) and those
	// the container gets (closed here once it has them).
	var ours, theirs []*os.File
	pipe := func() (r, w *os.File) {
		if err == nil {
			if r, w, err = os.Pipe(); err == nil {
				ours, theirs = append(ours, r), append(theirs, w)
			}
		}
		return r, w
	}
	outR, outW := pipe()
	errR, errW := pipe()
	stdio := Stdio{Stdout: outW, Stderr: errW}
	var stdinW *os.File
	if c.spec.Stdin && err == nil {
		var inR *os.File
		if inR, stdinW, err = os.Pipe(); err == nil {
			ours, theirs = append(ours, stdinW), append(theirs, inR)
			stdio.Stdin = inR
		}
	}
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
	}()
	fail := func(err error) (Process, error) {
		for _, f := range ours {
			f.Close()
		}
		lf.addStreams(1)
		lf.endStream() // no stream will come: the log is complete (empty)
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminating {
		return fail(errors.New("pod is terminating"))
	}
	proc, err := p.n.rt.Start(l, plan.Env, stdio)
	if err != nil {
		return fail(err)
	}
	lf.addStreams(2)
	go func() { defer outR.Close(); lf.copyStream("stdout", outR) }()
	go func() { defer errR.Close(); lf.copyStream("stderr", errR) }()
	c.proc, c.plan, c.runs, c.log, c.stdin = proc, plan, run, lf, stdinW
	// `kubectl logs --previous` needs the run before this one only.
	removeRunLogs(dir, run-1)
	return proc, nil
}

// writeVolumes builds and writes every volume, retrying while a ConfigMap,
// Secret or token is missing; false when the pod ended first.
func (p *podRun) writeVolumes() bool {
	for {
		if _, err := p.buildVolumes(); err == nil {
			return true
		} else {
			p.setWaiting(reasonConfig, err.Error())
			p.logf("volumes: %v", err)
		}
		if !p.sleep(3 * time.Second) {
			return false
		}
	}
}

func (p *podRun) buildVolumes() (time.Time, error) {
	pod := p.snapshot()
	var gid *int64
	if sc := pod.Spec.SecurityContext; sc != nil {
		gid = sc.FSGroup
	}
	var expires time.Time
	for i := range pod.Spec.Volumes {
		v, err := BuildVolume(p.ctx, pod, &pod.Spec.Volumes[i], p.n.lookup(), p.n.lookup())
		if err != nil {
			return time.Time{}, err
		}
		if err := v.Write(p.volumeDir(v.Name), gid); err != nil {
			return time.Time{}, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		if !v.Expires.IsZero() && (expires.IsZero() || v.Expires.Before(expires)) {
			expires = v.Expires
		}
	}
	return expires, nil
}

// refreshVolumes rewrites the volumes every minute, or at 80% of the
// earliest token's lifetime when sooner: tokens renewed, ConfigMap and
// Secret changes shown.
func (p *podRun) refreshVolumes() {
	defer p.wg.Done()
	next := time.Minute
	for p.sleep(next) {
		start := time.Now()
		exp, err := p.buildVolumes()
		next = time.Minute
		if err != nil {
			p.logf("refreshing volumes: %v", err)
			next = 10 * time.Second
		} else if !exp.IsZero() {
			next = min(next, max(time.Second, exp.Sub(start)*8/10))
		}
	}
}

func (n *Node) lookup() clusterLookup { return clusterLookup{n.client} }

// terminate stops the pod: SIGTERM to each container's main process,
// SIGKILL to all of them after grace, then the namespace, interfaces and files go; a pod being deleted
// in the API (inAPI) is then removed there at once, as the kubelet does,
// rather than when its grace period ends. Asynchronous; gone is closed at
// the end.
//
// A node shutting down (nodeDown) signals every process at once: all pods
// go together, so draining would serve nobody.
func (p *podRun) terminate(grace time.Duration, inAPI, nodeDown bool) {
	p.mu.Lock()
	if p.terminating {
		p.mu.Unlock()
		return
	}
	p.terminating = true
	p.mu.Unlock()
	p.n.mu.Lock()
	if p.n.pods[p.key] == p {
		delete(p.n.pods, p.key)
	}
	p.n.dying[p] = struct{}{}
	p.n.mu.Unlock()
	go func() {
		// Cancel before signalling: a container that exits on SIGTERM must
		// find the pod ending (runOnce reports !ok), not restart and leave
		// its status as a restarted, unknown container.
		p.cancel()
		if nodeDown {
			p.signalAll(syscall.SIGTERM)
		} else {
			p.signal(syscall.SIGTERM)
		}
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			p.logf("still running after %s: SIGKILL", grace)
			p.signal(syscall.SIGKILL)
			<-done
		}
		// What a main process left behind (children it did not stop) goes
		// with the pod, as with a container's cgroup.
		p.signal(syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.n.net.Teardown(ctx, string(p.pod.UID)); err != nil {
			p.logf("network teardown: %v", err)
		}
		p.n.net.Release(p.key + "/" + string(p.pod.UID))
		if err := os.RemoveAll(p.dir); err != nil {
			p.logf("removing %s: %v", p.dir, err)
		}
		p.mu.Lock()
		for _, c := range p.ctrs {
			if c.status.State.Terminated == nil {
				c.status.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "the pod was deleted", FinishedAt: metav1.Now()}}
			}
			c.ready = false
		}
		if p.phase != corev1.PodFailed {
			p.phase = corev1.PodSucceeded
		}
		p.mu.Unlock()
		final := p.snapshot()
		p.n.send(final)
		if inAPI {
			zero := int64(0)
			err := p.n.client.CoreV1().Pods(final.Namespace).Delete(ctx, final.Name, metav1.DeleteOptions{
				GracePeriodSeconds: &zero, Preconditions: metav1.NewUIDPreconditions(string(final.UID))})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				p.logf("deleting from the API: %v", err)
			}
		}
		p.n.mu.Lock()
		delete(p.n.dying, p)
		p.n.mu.Unlock()
		close(p.gone)
	}()
}

// signal sends sig to every running container as a container runtime
// does: SIGTERM to its main process only (which shuts its children down
// its own way: the agent drains Envoy first, so a terminating pod keeps
// answering while the mesh learns it is going), SIGKILL to all of its
// processes (its session's process group).
func (p *podRun) signal(sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		p.signalAll(sig)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.ctrs {
		if c.proc != nil {
			_ = c.proc.Signal(sig)
		}
	}
}

// signalAll sends sig to every process of every running container.
func (p *podRun) signalAll(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.ctrs {
		if c.proc != nil {
			_ = c.proc.SignalGroup(sig)
		}
	}
}

// gracePeriod is the pod's deletion grace period, else its spec's, else 30s.
func gracePeriod(pod *corev1.Pod) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return defaultGracePeriod
}

// The PodLifecycleHandler and PodNotifier of virtual-kubelet.

// CreatePod starts running a pod bound to this node.
func (n *Node) CreatePod(_ context.Context, pod *corev1.Pod) error {
	n.mu.Lock()
	if _, ok := n.pods[pod.Namespace+"/"+pod.Name]; ok {
		n.mu.Unlock()
		return nil
	}
	p := n.newPodRun(pod)
	n.pods[p.key] = p
	n.mu.Unlock()
	go p.notifier()
	p.wg.Add(1)
	go p.run()
	p.touch()
	return nil
}

// UpdatePod takes the pod's new labels and annotations (containers cannot
// change in place here).
func (n *Node) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	n.mu.Lock()
	p, ok := n.pods[pod.Namespace+"/"+pod.Name]
	n.mu.Unlock()
	if !ok || p.pod.UID != pod.UID {
		return n.CreatePod(context.Background(), pod)
	}
	p.mu.Lock()
	p.pod.Labels, p.pod.Annotations = pod.Labels, pod.Annotations
	p.pod.DeletionTimestamp, p.pod.DeletionGracePeriodSeconds = pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds
	p.mu.Unlock()
	p.touch()
	return nil
}

// DeletePod stops a pod (asynchronously; its final status is notified when
// everything is gone).
func (n *Node) DeletePod(_ context.Context, pod *corev1.Pod) error {
	n.mu.Lock()
	p, ok := n.pods[pod.Namespace+"/"+pod.Name]
	n.mu.Unlock()
	if !ok {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	p.terminate(gracePeriod(pod), pod.DeletionTimestamp != nil, false)
	return nil
}

// GetPod returns a running pod with its status.
func (n *Node) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	n.mu.Lock()
	p, ok := n.pods[namespace+"/"+name]
	n.mu.Unlock()
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	return p.snapshot(), nil
}

// GetPodStatus returns a running pod's status.
func (n *Node) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := n.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns the running pods.
func (n *Node) GetPods(context.Context) ([]*corev1.Pod, error) {
	n.mu.Lock()
	all := make([]*podRun, 0, len(n.pods))
	for _, p := range n.pods {
		all = append(all, p)
	}
	n.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(all))
	for _, p := range all {
		out = append(out, p.snapshot())
	}
	return out, nil
}

// NotifyPods registers virtual-kubelet's status callback.
func (n *Node) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	n.mu.Lock()
	n.notify = cb
	n.mu.Unlock()
}
