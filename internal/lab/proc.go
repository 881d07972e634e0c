package lab

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/horizonmesh/horizon/internal/k8sproc"
)

// child is a process this process started, as recorded in lab.json.
type child struct {
	Process
	proc *k8sproc.Proc
}

func (c *child) exited() bool { return c.proc.Exited() }

// recordOf is what lab.json records of p (its start time tells it from a
// later process with the same PID).
func recordOf(p *k8sproc.Proc, port int) Process {
	rec := Process{Component: p.Component, PID: p.PID(), Port: port, Log: p.Log}
	if st, err := readStat(rec.PID); err == nil {
		rec.StartTime = st.start
	}
	return rec
}

// spawn starts cmd detached (its own session: no terminal signal reaches
// it and it outlives this process), stdin /dev/null, stdout and stderr
// appended to logPath, working directory dir.
func spawn(cmd command, dir, logPath string, port int) (*child, error) {
	p, err := k8sproc.Start(cmd, dir, logPath, k8sproc.Detached)
	if err != nil {
		return nil, err
	}
	return &child{Process: recordOf(p, port), proc: p}, nil
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
