package labnode

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// logDir holds container name's logs: RUN.log for each kept run.
func (p *podRun) logDir(name string) string { return filepath.Join(p.dir, "logs", name) }

func runLogPath(dir string, run int) string { return filepath.Join(dir, strconv.Itoa(run)+".log") }

// removeRunLogs removes the logs (and their rotated files) of the runs
// before keep.
func removeRunLogs(dir string, keep int) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		run, _, _ := strings.Cut(e.Name(), ".")
		if n, err := strconv.Atoi(run); err == nil && n < keep {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// logRun is the run `kubectl logs` means, as the kubelet picks the
// container: the current one (running, else the last that ran); with
// previous the last terminated one before it — the run before the running
// one, or, while the container waits to restart, the one that just ended
// (the kubelet's lastState). live is that run's log when it is the last
// (it may still be written). The caller holds the pod's lock.
func (c *ctr) logRun(podName string, previous bool) (run int, live *logFile, err error) {
	if !previous {
		if c.runs == 0 {
			reason := ""
			if w := c.status.State.Waiting; w != nil {
				reason = ": " + w.Reason
			}
			return 0, nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start%s", c.spec.Name, podName, reason)
		}
		return c.runs, c.log, nil
	}
	run = c.runs - 1
	if c.status.State.Waiting != nil {
		run = c.runs
	}
	if run < 1 {
		return 0, nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", c.spec.Name, podName)
	}
	if run == c.runs {
		live = c.log
	}
	return run, live, nil
}

// GetContainerLogs serves `kubectl logs` (virtual-kubelet's
// ContainerLogsHandlerFunc): --previous, --tail, --since/--since-time,
// --timestamps, --limit-bytes and -f, which follows the run until it ends
// (with --tail=0, only what comes next: see tailZero).
func (n *Node) GetContainerLogs(ctx context.Context, namespace, pod, container string, o api.ContainerLogOpts) (io.ReadCloser, error) {
	p, c, err := n.container(namespace, pod, container)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	run, live, err := c.logRun(pod, o.Previous)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	r := &logReader{path: runLogPath(p.logDir(container), run), live: live, tail: o.Tail, follow: o.Follow}
	if ctx.Value(tailZeroKey{}) != nil {
		r.fromEnd = true
	}
	switch {
	case o.SinceSeconds > 0:
		r.since = time.Now().Add(-time.Duration(o.SinceSeconds) * time.Second)
	case !o.SinceTime.IsZero():
		r.since = o.SinceTime
	}
	cur, err := r.open()
	if err != nil {
		return nil, errdefs.NotFoundf("the log of container %q in pod %s/%s: %v", container, namespace, pod, err)
	}
	return streamLog(ctx, cur, o.Timestamps, o.LimitBytes), nil
}

// streamLog runs c into a pipe whose reading end it returns; closing it
// (or ctx ending) stops c.
func streamLog(ctx context.Context, c *logCursor, timestamps bool, limit int) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		lw := &logWriter{w: pw, timestamps: timestamps, limit: limit}
		err := c.run(ctx, lw.emit)
		if errors.Is(err, errLimit) || errors.Is(err, context.Canceled) {
			err = nil
		}
		pw.CloseWithError(err)
	}()
	return &cancelReader{PipeReader: pr, cancel: cancel}
}

type cancelReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (c *cancelReader) Close() error {
	c.cancel()
	return c.PipeReader.Close()
}
