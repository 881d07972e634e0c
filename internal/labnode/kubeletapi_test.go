package labnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// testNode is a Node with one pod, ns/p, of one container c, and no
// network, API server or processes: what the kubelet API's methods read.
func testNode(t *testing.T) (*Node, *podRun, *ctr) {
	t.Helper()
	n := &Node{net: &Network{Prefix: "hzln"}, cfg: Config{NodeName: "node1", StateDir: t.TempDir(), Logf: t.Logf},
		pods: map[string]*podRun{}, dying: map[*podRun]struct{}{}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "curlimages/curl"}}}}
	p := n.newPodRun(pod)
	t.Cleanup(p.cancel)
	n.pods[p.key] = p
	return n, p, p.ctrs[0]
}

// addRun writes a finished run of c whose output is lines.
func addRun(t *testing.T, p *podRun, c *ctr, lines ...string) *logFile {
	t.Helper()
	dir := p.logDir(c.spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.runs++
	lf, err := createLogFile(runLogPath(dir, c.runs), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	lf.addStreams(1)
	lf.copyStream("stdout", strings.NewReader(strings.Join(lines, "\n")))
	c.log = lf
	return lf
}

func logs(t *testing.T, n *Node, o api.ContainerLogOpts) (string, error) {
	t.Helper()
	rc, err := n.GetContainerLogs(context.Background(), "ns", "p", "c", o)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// Which run `kubectl logs` and `--previous` read, as the kubelet picks
// them, and the errors it gives.
func TestGetContainerLogsRuns(t *testing.T) {
	n, p, c := testNode(t)
	if _, err := logs(t, n, api.ContainerLogOpts{}); !errdefs.IsInvalidInput(err) || !strings.Contains(err.Error(), `container "c" in pod "p" is waiting to start: ContainerCreating`) {
		t.Errorf("before any run: %v", err)
	}
	if _, err := n.GetContainerLogs(context.Background(), "ns", "nope", "c", api.ContainerLogOpts{}); !errdefs.IsNotFound(err) {
		t.Errorf("another pod: %v", err)
	}
	if _, err := n.GetContainerLogs(context.Background(), "ns", "p", "nope", api.ContainerLogOpts{}); !errdefs.IsNotFound(err) {
		t.Errorf("another container: %v", err)
	}
	addRun(t, p, c, "run 1")
	c.status.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	if got, err := logs(t, n, api.ContainerLogOpts{}); err != nil || got != "run 1\n" {
		t.Errorf("run 1 running: %q %v", got, err)
	}
	if _, err := logs(t, n, api.ContainerLogOpts{Previous: true}); !errdefs.IsInvalidInput(err) || !strings.Contains(err.Error(), `previous terminated container "c" in pod "p" not found`) {
		t.Errorf("--previous of a first run: %v", err)
	}
	// Run 1 ended; the container waits to restart: both name run 1.
	c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reasonCrashLoop}}
	for _, prev := range []bool{false, true} {
		if got, err := logs(t, n, api.ContainerLogOpts{Previous: prev}); err != nil || got != "run 1\n" {
			t.Errorf("waiting after run 1, previous %v: %q %v", prev, got, err)
		}
	}
	addRun(t, p, c, "run 2")
	c.status.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	for prev, want := range map[bool]string{false: "run 2\n", true: "run 1\n"} {
		if got, err := logs(t, n, api.ContainerLogOpts{Previous: prev, Follow: true}); err != nil || got != want {
			t.Errorf("run 2, previous %v: %q %v, want %q", prev, got, err, want)
		}
	}
	// A new run keeps only the one before it.
	addRun(t, p, c, "run 3")
	removeRunLogs(p.logDir("c"), c.runs-1)
	ents, _ := os.ReadDir(p.logDir("c"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"2.log", "3.log"}) {
		t.Errorf("kept logs %v", names)
	}
	// --tail, --since-time, --timestamps, --limit-bytes reach the reader.
	addRun(t, p, c, "a", "b", "c")
	if got, _ := logs(t, n, api.ContainerLogOpts{Tail: 2, LimitBytes: 3}); got != "b\nc" {
		t.Errorf("--tail=2 --limit-bytes=3: %q", got)
	}
	if got, _ := logs(t, n, api.ContainerLogOpts{SinceTime: time.Now().Add(time.Hour)}); got != "" {
		t.Errorf("--since-time in the future: %q", got)
	}
	// --tail=0 (which ContainerLogOpts holds as no tail): nothing old.
	var got string
	tailZero(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		rc, err := n.GetContainerLogs(r.Context(), "ns", "p", "c", api.ContainerLogOpts{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		got = string(b)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/containerLogs/ns/p/c?tailLines=0", nil))
	if got != "" {
		t.Errorf("--tail=0: %q", got)
	}
	if got, _ := logs(t, n, api.ContainerLogOpts{SinceSeconds: 60, Timestamps: true, Tail: 1}); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT[0-9:.]+Z c\n$`).MatchString(got) {
		t.Errorf("--since=60s --timestamps --tail=1: %q", got)
	}
}

// `kubectl logs -f` of the running run follows it until it ends.
func TestGetContainerLogsFollow(t *testing.T) {
	n, p, c := testNode(t)
	dir := p.logDir("c")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lf, err := createLogFile(runLogPath(dir, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.runs, c.log = 1, lf
	pr, pw := io.Pipe()
	lf.addStreams(1)
	go lf.copyStream("stderr", pr)
	rc, err := n.GetContainerLogs(context.Background(), "ns", "p", "c", api.ContainerLogOpts{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	mustWrite(t, pw, "first\n")
	buf := make([]byte, 64)
	if k, err := io.ReadAtLeast(rc, buf, len("first\n")); err != nil || string(buf[:k]) != "first\n" {
		t.Fatalf("followed %q %v", buf[:k], err)
	}
	mustWrite(t, pw, "second\n")
	_ = pw.Close()
	rest, err := io.ReadAll(rc)
	if err != nil || string(rest) != "second\n" {
		t.Errorf("the rest: %q %v", rest, err)
	}
}

// fakeIO is the streams of one exec or attach.
type fakeIO struct {
	in       io.Reader
	out, err *testkit.SyncBuffer
	tty      bool
	resize   chan api.TermSize
}

func newFakeIO(in io.Reader, tty bool) *fakeIO {
	return &fakeIO{in: in, out: &testkit.SyncBuffer{}, err: &testkit.SyncBuffer{}, tty: tty, resize: make(chan api.TermSize, 1)}
}
func (f *fakeIO) Stdin() io.Reader { return f.in }
func (f *fakeIO) Stdout() io.WriteCloser {
	return f.out
}
func (f *fakeIO) Stderr() io.WriteCloser {
	if f.tty {
		return nil
	}
	return f.err
}
func (f *fakeIO) TTY() bool                   { return f.tty }
func (f *fakeIO) Resize() <-chan api.TermSize { return f.resize }

// `kubectl attach` gets what the running process writes from then on,
// each stream to its own, until the run ends.
func TestAttachToContainer(t *testing.T) {
	n, p, c := testNode(t)
	if err := n.AttachToContainer(context.Background(), "ns", "p", "c", newFakeIO(nil, false)); !errdefs.IsInvalidInput(err) {
		t.Errorf("attach to a container not running: %v", err)
	}
	dir := p.logDir("c")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lf, err := createLogFile(runLogPath(dir, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.runs, c.log, c.proc = 1, lf, &execProcess{cmd: &exec.Cmd{}}
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	lf.addStreams(2)
	go lf.copyStream("stdout", outR)
	go lf.copyStream("stderr", errR)
	mustWrite(t, outW, "before attach\n")
	waitLines(t, lf, 1)
	a := newFakeIO(nil, false)
	done := make(chan error, 1)
	go func() { done <- n.AttachToContainer(context.Background(), "ns", "p", "c", a) }()
	// Attached once a line written now reaches it.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.out.String(), "ping\n") {
		if time.Now().After(deadline) {
			t.Fatalf("attach saw %q", a.out.String())
		}
		mustWrite(t, outW, "ping\n")
		wake, _, _ := lf.state()
		select {
		case <-wake:
		case <-time.After(100 * time.Millisecond):
		}
	}
	mustWrite(t, errW, "to stderr\n")
	_ = outW.Close()
	_ = errW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("attach did not end with the run")
	}
	if strings.Contains(a.out.String(), "before") || a.err.String() != "to stderr\n" {
		t.Errorf("stdout %q, stderr %q", a.out.String(), a.err.String())
	}
}

func TestEnterCommand(t *testing.T) {
	e := Enter{PID: 42, Argv: []string{"curl", "-sS", "x"}}
	if got, want := e.Command(), []string{"nsenter", "--target", "42", "--net", "--mount", "--uts", "--wd", "--", "curl", "-sS", "x"}; !slices.Equal(got, want) {
		t.Errorf("root: %q", got)
	}
	e = Enter{PID: 42, UID: 1337, GID: 1337, Groups: []int64{7}, Caps: []string{"NET_ADMIN"}, Argv: []string{"id"}}
	want := []string{"nsenter", "--target", "42", "--net", "--mount", "--uts", "--wd", "--",
		"setpriv", "--reuid", "1337", "--regid", "1337", "--groups", "7", "--inh-caps", "+net_admin", "--ambient-caps", "+net_admin", "--", "id"}
	if got := e.Command(); !slices.Equal(got, want) {
		t.Errorf("user 1337: %q", got)
	}
}

// Only clients with a verified certificate naming an allowed user reach
// the kubelet API.
func TestAuthorizeClients(t *testing.T) {
	h := authorizeClients([]string{"kube-apiserver-kubelet-client"}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mustWrite(t, w, "ok")
	}))
	chain := func(cn string) *tls.ConnectionState {
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}}}}}
	}
	for _, c := range []struct {
		state *tls.ConnectionState
		code  int
	}{
		{nil, http.StatusUnauthorized},
		{&tls.ConnectionState{}, http.StatusUnauthorized},
		{chain("admin"), http.StatusForbidden},
		{chain("kube-apiserver-kubelet-client"), http.StatusOK},
	} {
		r := httptest.NewRequest("GET", "/containerLogs/ns/p/c", nil)
		r.TLS = c.state
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.code {
			t.Errorf("%+v: %d %s, want %d", c.state, w.Code, w.Body, c.code)
		}
	}
}

func TestExitError(t *testing.T) {
	err := exec.Command("sh", "-c", "exit 3").Run()
	var ce utilexec.CodeExitError
	if !errors.As(exitError(err), &ce) || ce.ExitStatus() != 3 || !ce.Exited() {
		t.Errorf("exit 3: %v", exitError(err))
	}
	err = exec.Command("sh", "-c", "kill -9 $$").Run()
	if !errors.As(exitError(err), &ce) || ce.ExitStatus() != 137 {
		t.Errorf("SIGKILL: %v", exitError(err))
	}
	if exitError(exec.ErrWaitDelay) != nil || exitError(nil) != nil {
		t.Error("success")
	}
}

// exec enters a running process's namespaces (nsenter needs root): the
// command gets the container's environment, stdin, stdout and stderr, its
// exit code, and a terminal with -t.
func TestRunInContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("nsenter needs root")
	}
	n, _, c := testNode(t)
	if err := n.RunInContainer(context.Background(), "ns", "p", "c", []string{"true"}, newFakeIO(nil, false)); !errdefs.IsInvalidInput(err) {
		t.Errorf("exec in a container not running: %v", err)
	}
	proc := exec.Command("sleep", "60")
	proc.Dir = t.TempDir()
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	c.proc, c.plan = &execProcess{cmd: proc}, &ContainerPlan{Env: []string{"PATH=" + DefaultPath, "HZ_TEST=from-the-container"}}
	a := newFakeIO(strings.NewReader("to stdin"), false)
	err := n.RunInContainer(context.Background(), "ns", "p", "c", []string{"sh", "-c", `cat; echo " $HZ_TEST $(pwd)"; echo oops >&2; exit 3`}, a)
	var ce utilexec.CodeExitError
	if !errors.As(err, &ce) || ce.ExitStatus() != 3 {
		t.Errorf("exit: %v", err)
	}
	if want := "to stdin from-the-container " + proc.Dir + "\n"; a.out.String() != want || a.err.String() != "oops\n" {
		t.Errorf("stdout %q (want %q), stderr %q", a.out.String(), want, a.err.String())
	}
	// The terminal takes the client's size (the command waits for it).
	a = newFakeIO(nil, true)
	a.resize <- api.TermSize{Width: 91, Height: 17}
	if err := n.RunInContainer(context.Background(), "ns", "p", "c", []string{"sh", "-c", `while [ "$(stty size)" = "0 0" ]; do sleep 0.01; done; tty; stty size`}, a); err != nil {
		t.Fatal(err)
	}
	if out := a.out.String(); !regexp.MustCompile(`^/dev/pts/\d+\r\n17 91\r\n$`).MatchString(out) {
		t.Errorf("with a terminal: %q", out)
	}
}
