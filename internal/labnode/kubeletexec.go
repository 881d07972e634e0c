package labnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	utilexec "k8s.io/utils/exec"
)

// RunInContainer serves `kubectl exec` (and `kubectl cp`, which execs
// tar): cmd runs in the container as Enter says — its network, mount and
// UTS namespaces, its working directory, user and environment — with the
// client's stdin, stdout and stderr, or a terminal with -t. A non-zero
// exit is reported as such (kubectl: "command terminated with exit code
// N"). The command is killed when the client goes or the pod does.
func (n *Node) RunInContainer(ctx context.Context, namespace, pod, container string, cmd []string, a api.AttachIO) error {
	p, c, err := n.container(namespace, pod, container)
	if err != nil {
		return err
	}
	if len(cmd) == 0 {
		return errdefs.InvalidInput("no command to run")
	}
	p.mu.Lock()
	proc, plan := c.proc, c.plan
	p.mu.Unlock()
	if proc == nil || plan == nil {
		return errdefs.InvalidInputf("container %q in pod %s/%s is not running", container, namespace, pod)
	}
	e := Enter{PID: proc.PID(), UID: plan.UID, GID: plan.GID, Groups: plan.Groups, Caps: plan.Caps, Argv: cmd}
	argv := e.Command()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	x := exec.CommandContext(ctx, argv[0], argv[1:]...)
	x.Env = plan.Env
	x.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	x.Cancel = func() error { return syscall.Kill(-x.Process.Pid, syscall.SIGKILL) }
	// Output a background child keeps open does not hold the answer.
	x.WaitDelay = 2 * time.Second
	if a.TTY() {
		err = runTTY(ctx, x, a)
	} else {
		err = runPiped(x, a)
	}
	return exitError(err)
}

func runPiped(x *exec.Cmd, a api.AttachIO) error {
	if w := a.Stdout(); w != nil {
		x.Stdout = w
	}
	if w := a.Stderr(); w != nil {
		x.Stderr = w
	}
	if in := a.Stdin(); in != nil {
		// A pipe of our own rather than exec's copier, which Wait would
		// wait for: a client need not close its stdin for the command to
		// be over.
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer w.Close()
		x.Stdin = r
		go func() { _, _ = io.Copy(w, in); w.Close() }()
		defer r.Close()
	}
	if err := x.Start(); err != nil {
		return err
	}
	return x.Wait()
}

// runTTY runs x on a new terminal, its size following the client's.
func runTTY(ctx context.Context, x *exec.Cmd, a api.AttachIO) error {
	ptmx, tty, err := openPTY()
	if err != nil {
		return err
	}
	defer ptmx.Close()
	x.Stdin, x.Stdout, x.Stderr = tty, tty, tty
	x.SysProcAttr.Setctty, x.SysProcAttr.Ctty = true, 0
	err = x.Start()
	tty.Close()
	if err != nil {
		return err
	}
	go func() {
		for {
			select {
			case s, ok := <-a.Resize():
				if !ok {
					return
				}
				_ = setWinsize(ptmx, s.Width, s.Height)
			case <-ctx.Done():
				return
			}
		}
	}()
	if in := a.Stdin(); in != nil {
		go func() { _, _ = io.Copy(ptmx, in) }()
	}
	copied := make(chan struct{})
	go func() {
		if w := a.Stdout(); w != nil {
			_, _ = io.Copy(w, ptmx) // ends (EIO) once nothing holds the terminal
		}
		close(copied)
	}()
	err = x.Wait()
	select {
	case <-copied:
	case <-time.After(x.WaitDelay):
	}
	return err
}

// exitError turns a command's exit into what virtual-kubelet reports as an
// exit code (a signal as 128+N, as a shell does).
func exitError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return utilexec.CodeExitError{Err: err, Code: code}
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return err
}

// AttachToContainer serves `kubectl attach`: what the container's running
// process writes from now on, to stdout and stderr as it wrote it, until
// it exits or the client goes; with -i, the client's input goes to its
// stdin when the container has one (spec.stdin; stdinOnce closes it after
// the first client).
func (n *Node) AttachToContainer(ctx context.Context, namespace, pod, container string, a api.AttachIO) error {
	p, c, err := n.container(namespace, pod, container)
	if err != nil {
		return err
	}
	p.mu.Lock()
	lf, stdin, running := c.log, c.stdin, c.proc != nil
	if stdin != nil && c.spec.StdinOnce {
		c.stdin = nil
	}
	p.mu.Unlock()
	if !running || lf == nil {
		return errdefs.InvalidInputf("container %q in pod %s/%s is not running", container, namespace, pod)
	}
	cur, err := (&logReader{path: lf.path, live: lf, fromEnd: true, follow: true}).open()
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if in := a.Stdin(); in != nil && stdin != nil {
		go func() {
			_, _ = io.Copy(stdin, in)
			if c.spec.StdinOnce {
				stdin.Close()
			}
		}()
	}
	err = cur.run(ctx, func(e logEntry) error {
		w := a.Stdout()
		if e.stream == "stderr" && a.Stderr() != nil {
			w = a.Stderr()
		}
		if w == nil {
			return nil
		}
		b := e.text
		if !e.partial {
			b = append(b, '\n')
		}
		_, err := w.Write(b)
		return err
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return nil
}
