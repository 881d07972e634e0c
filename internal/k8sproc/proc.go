package k8sproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Command is one process to start.
type Command struct {
	// Component names it (etcd, kube-apiserver, ...): its log is
	// COMPONENT.log.
	Component string
	Path      string
	Args      []string
}

// Lifetime says whether a process outlives the one that starts it.
type Lifetime int

const (
	// WithParent processes are killed when the process that started them
	// dies, even by SIGKILL (tests).
	WithParent Lifetime = iota
	// Detached processes run in their own session: no terminal signal
	// reaches them and they outlive the process that started them (the
	// lab, which records them to stop them later).
	Detached
)

// Proc is a started process. Done closes once it has exited and been
// reaped; Err is then its exit status.
type Proc struct {
	Component string
	// Log receives its stdout and stderr.
	Log string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts c in working directory dir, stdin /dev/null, stdout and
// stderr appended to logPath (a restarted process keeps the earlier
// lines), and reaps it whenever it exits.
func Start(c Command, dir, logPath string, life Lifetime) (*Proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	switch life {
	case Detached:
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	default:
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Component, err)
	}
	p := &Proc{Component: c.Component, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit status once Done is closed (nil for exit 0).
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Stop signals the process and waits for it to exit, killing it after
// grace.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// ErrPortTaken says a process exited because a port it was given was
// taken meanwhile (its log says "address already in use"): start again on
// other ports.
var ErrPortTaken = errors.New("a port was taken")

// WaitFor polls check, each try bounded by 5 seconds, every 200 ms until it
// succeeds. It fails early when one of procs exits, naming it with its
// log's last lines (wrapping ErrPortTaken when they say a port was taken),
// and when ctx ends, with check's last error and every log's last lines.
// note, when not nil, hears of a wait every 15 seconds.
func WaitFor(ctx context.Context, what string, procs []*Proc, check func(context.Context) error, note func(waited time.Duration, err error)) error {
	begin := time.Now()
	nextNote := begin.Add(15 * time.Second)
	for {
		for _, p := range procs {
			if p.Exited() {
				t := Tail(p.Log, 40)
				err := fmt.Errorf("%s exited (%v) while waiting for %s; last lines of %s:\n%s", p.Component, p.err, what, p.Log, t) //nolint:errorlint // p.err may be nil (exit 0)
				if strings.Contains(t, "address already in use") {
					err = fmt.Errorf("%w: %w", ErrPortTaken, err)
				}
				return err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			var b strings.Builder
			fmt.Fprintf(&b, "%s not ready after %s: %v", what, time.Since(begin).Round(time.Second), err)
			for _, p := range procs {
				fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", p.Log, Tail(p.Log, 20))
			}
			return errors.New(b.String())
		}
		if note != nil && time.Now().After(nextNote) {
			note(time.Since(begin).Round(time.Second), err)
			nextNote = time.Now().Add(15 * time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// FreePorts picks n distinct free loopback ports (all held open until
// every one is chosen, so none is picked twice).
func FreePorts(n int) ([]int, error) {
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Tail is the last n lines of the file at path (or why it cannot be read),
// for error messages about a process that failed.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
