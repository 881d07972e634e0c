package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is a process this process started: done closes once it has exited
// (and been reaped), err is then its exit status.
type child struct {
	Process
	done chan struct{}
	err  error
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// spawn starts cmd in its own session (no terminal signal reaches it and it
// outlives this process), stdin /dev/null, stdout and stderr appended to
// logPath, working directory dir.
func spawn(cmd command, dir, logPath string, port int) (*child, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	c := exec.Command(cmd.path, cmd.args...)
	c.Dir = dir
	c.Stdout, c.Stderr = log, log
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.component, err)
	}
	p := &child{Process: Process{Component: cmd.component, PID: c.Process.Pid, Port: port, Log: logPath}, done: make(chan struct{})}
	if st, err := readStat(p.PID); err == nil {
		p.StartTime = st.start
	}
	// Reap it whenever it exits while this process lives.
	go func() { p.err = c.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM to every process of procs still running, SIGKILL to
// those still running after grace, and returns an error naming any still
// running 5 seconds later. A recorded PID now used by another process (its
// start time differs) is left alone.
func stop(procs []Process, grace time.Duration) error {
	running := func() []Process {
		var out []Process
		for _, p := range procs {
			if p.Running() {
				out = append(out, p)
			}
		}
		return out
	}
	signal := func(ps []Process, sig syscall.Signal) {
		for _, p := range ps {
			_ = syscall.Kill(p.PID, sig)
		}
	}
	waitGone := func(d time.Duration) []Process {
		deadline := time.Now().Add(d)
		for {
			left := running()
			if len(left) == 0 || time.Now().After(deadline) {
				return left
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	left := running()
	if len(left) == 0 {
		return nil
	}
	signal(left, syscall.SIGTERM)
	if left = waitGone(grace); len(left) == 0 {
		return nil
	}
	signal(left, syscall.SIGKILL)
	if left = waitGone(5 * time.Second); len(left) == 0 {
		return nil
	}
	var names []string
	for _, p := range left {
		names = append(names, fmt.Sprintf("%s (pid %d)", p.Component, p.PID))
	}
	return fmt.Errorf("still running after SIGKILL: %s", strings.Join(names, ", "))
}

// asProcess describes a live PID found by FindProcesses.
func asProcess(pid int) (Process, error) {
	st, err := readStat(pid)
	if err != nil {
		return Process{}, err
	}
	name := "process"
	if argv := cmdline(pid); len(argv) > 0 {
		name = argv[0]
	}
	return Process{Component: name, PID: pid, StartTime: st.start}, nil
}

var errPortTaken = errors.New("a port was taken")
