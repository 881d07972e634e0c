package labnode

import (
	"context"
	"io"
	"net"
	"os/exec"
	"syscall"

	"github.com/horizonmesh/horizon/internal/netns"
)

// Runtime is what running pods needs of this machine: the commands that
// make and remove a pod's network namespace (iproute2, netns.Runner), its
// containers' processes, and connections from inside its namespace
// (probes, port-forward). The pod lifecycle (pod.go, prober.go) reaches the
// machine only through it, so that it is unit-tested with a fake that needs
// no root (pod_test.go), as virtual-kubelet tests its pod controller with a
// mock provider. ExecRuntime is the real one.
type Runtime interface {
	netns.Runner
	// Start starts a container's process, or an exec probe's, as l says,
	// with environment env and the given streams (nil: /dev/null), in a
	// session and UTS namespace of its own.
	Start(l *Launch, env []string, stdio Stdio) (Process, error)
	// Dial connects to TCP address addr from inside network namespace ns.
	Dial(ctx context.Context, ns, addr string) (net.Conn, error)
}

// Stdio are a process's standard streams.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Process is a started container process.
type Process interface {
	// PID is its process ID (kubectl exec enters its namespaces).
	PID() int
	// Signal sends sig to the process; SignalGroup to every process of its
	// session (its process group).
	Signal(sig syscall.Signal) error
	SignalGroup(sig syscall.Signal) error
	// Wait waits until it exits and returns its exit code as a container
	// runtime reports it: 128+N when signal N ended it, -1 when it cannot
	// be known.
	Wait() int
}

// ExecRuntime runs pods on this machine (root): iproute2 commands, each
// container under `ip netns exec` (Launch.Command), connections made on a
// thread inside the pod's namespace.
type ExecRuntime struct {
	netns.ExecRunner
}

// Start starts l.Command().
func (ExecRuntime) Start(l *Launch, env []string, stdio Stdio) (Process, error) {
	args := l.Command()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWUTS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &execProcess{cmd: cmd}, nil
}

// Dial dials from inside ns (netns.Dial).
func (ExecRuntime) Dial(ctx context.Context, ns, addr string) (net.Conn, error) {
	return netns.Dial(ctx, ns, addr)
}

// execProcess is a process ExecRuntime started.
type execProcess struct{ cmd *exec.Cmd }

func (p *execProcess) PID() int { return p.cmd.Process.Pid }

func (p *execProcess) Signal(sig syscall.Signal) error { return syscall.Kill(p.cmd.Process.Pid, sig) }

func (p *execProcess) SignalGroup(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

func (p *execProcess) Wait() int { return exitCode(p.cmd, p.cmd.Wait()) }

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return -1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if err != nil && cmd.ProcessState.ExitCode() == 0 {
		return -1
	}
	return cmd.ProcessState.ExitCode()
}
