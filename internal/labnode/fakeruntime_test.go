package labnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// fakeRuntime runs pods without root or processes (virtual-kubelet's mock
// provider idea, one level down): iproute2 commands are recorded and
// answered (the namespaces added are listed until deleted), containers
// are goroutines playing their argv, and connections succeed to the
// addresses marked listening.
//
// A fake container's argv after the program is a script of words:
// out=TEXT and err=TEXT write a line to stdout or stderr at once;
// exit=N exits with N; flag=NAME exits 0 while the runtime's flag NAME
// is set, else 1; ignore-term ignores SIGTERM. Without exit= or flag= it
// runs until a signal ends it (128+N).
type fakeRuntime struct {
	mu        sync.Mutex
	ran       []string
	netns     map[string]bool
	fail      map[string]error // by command prefix
	procs     []*fakeProc
	flags     map[string]bool
	listening map[string]bool // "NETNS ADDR"
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{netns: map[string]bool{}, fail: map[string]error{}, flags: map[string]bool{},
		listening: map[string]bool{}}
}

func (f *fakeRuntime) Run(_ context.Context, args ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := strings.Join(args, " ")
	f.ran = append(f.ran, cmd)
	for prefix, err := range f.fail {
		if strings.HasPrefix(cmd, prefix) {
			return "", err
		}
	}
	switch {
	case cmd == "ip netns list":
		var names []string
		for ns := range f.netns {
			names = append(names, ns)
		}
		slices.Sort(names)
		return strings.Join(names, "\n"), nil
	case strings.HasPrefix(cmd, "ip netns add "):
		f.netns[args[3]] = true
	case strings.HasPrefix(cmd, "ip netns del "):
		delete(f.netns, args[3])
	case strings.HasPrefix(cmd, "ip netns pids "):
		var pids []string
		for _, p := range f.procs {
			if p.launch.Netns == args[3] && !p.exited() {
				pids = append(pids, strconv.Itoa(p.pid))
			}
		}
		return strings.Join(pids, "\n"), nil
	}
	return "", nil
}

// commands are the commands run so far that start with prefix.
func (f *fakeRuntime) commands(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.ran {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeRuntime) setFlag(name string, on bool) {
	f.mu.Lock()
	f.flags[name] = on
	f.mu.Unlock()
}

func (f *fakeRuntime) flag(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flags[name]
}

func (f *fakeRuntime) Start(l *Launch, env []string, stdio Stdio) (Process, error) {
	if len(l.Argv) > 0 && l.Argv[0] == "not-found" {
		return nil, errors.New("exec: not-found: executable file not found")
	}
	f.mu.Lock()
	p := &fakeProc{pid: 1000 + len(f.procs), launch: l, env: env, sigs: make(chan syscall.Signal, 10), done: make(chan struct{})}
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	write := func(w io.Writer, s string) {
		if w != nil {
			_, _ = io.WriteString(w, s+"\n")
		}
	}
	exit, ignoreTerm := -1, false
	for _, word := range l.Argv[1:] {
		k, v, _ := strings.Cut(word, "=")
		switch k {
		case "out":
			write(stdio.Stdout, v)
		case "err":
			write(stdio.Stderr, v)
		case "exit":
			exit, _ = strconv.Atoi(v)
		case "flag":
			exit = map[bool]int{true: 0, false: 1}[f.flag(v)]
		case "ignore-term":
			ignoreTerm = true
		}
	}
	go func() {
		code := exit
		for code < 0 {
			sig := <-p.sigs
			if sig == syscall.SIGTERM && ignoreTerm {
				continue
			}
			code = 128 + int(sig)
		}
		p.code = code
		close(p.done)
	}()
	return p, nil
}

func (f *fakeRuntime) Dial(_ context.Context, ns, addr string) (net.Conn, error) {
	f.mu.Lock()
	ok := f.listening[ns+" "+addr]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dial tcp %s: connect: connection refused", addr)
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

// procs are the processes started for container (name-probe: its exec
// probes), in start order.
func (f *fakeRuntime) procsOf(container string) []*fakeProc {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeProc
	for _, p := range f.procs {
		if filepath.Base(p.launch.Scratch) == container {
			out = append(out, p)
		}
	}
	return out
}

// fakeProc is a fake container process.
type fakeProc struct {
	pid    int
	launch *Launch
	env    []string
	sigs   chan syscall.Signal
	done   chan struct{}
	code   int

	mu       sync.Mutex
	received []string // "TERM" to the process, "group KILL" to its group
}

func (p *fakeProc) PID() int { return p.pid }

func (p *fakeProc) Signal(sig syscall.Signal) error { return p.deliver(sigName(sig), sig) }

func (p *fakeProc) SignalGroup(sig syscall.Signal) error {
	return p.deliver("group "+sigName(sig), sig)
}

func (p *fakeProc) deliver(note string, sig syscall.Signal) error {
	p.mu.Lock()
	p.received = append(p.received, note)
	p.mu.Unlock()
	if p.exited() {
		return syscall.ESRCH
	}
	select {
	case p.sigs <- sig:
	default:
	}
	return nil
}

func (p *fakeProc) signals() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.received)
}

func (p *fakeProc) Wait() int {
	<-p.done
	return p.code
}

func (p *fakeProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGKILL:
		return "KILL"
	}
	return sig.String()
}
