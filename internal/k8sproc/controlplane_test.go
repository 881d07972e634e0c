package k8sproc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	t.Errorf("no %s in %q", name, args)
	return ""
}

func TestControlPlaneCommands(t *testing.T) {
	c := &ControlPlane{Name: "c1", BinDir: "/bin", Dir: "/d", PKIDir: "/d/pki", ServiceCIDR: "10.97.0.0/16",
		EtcdPort: 1001, EtcdPeerPort: 1002, APIServerPort: 1003, APIServerArgs: []string{"--allow-privileged=true"}}
	if c.EtcdURL() != "http://127.0.0.1:1001" || c.URL() != "https://127.0.0.1:1003" || c.LogPath(Etcd) != "/d/etcd.log" {
		t.Errorf("URLs %s %s, log %s", c.EtcdURL(), c.URL(), c.LogPath(Etcd))
	}
	etcd := c.EtcdCommand()
	if etcd.Component != Etcd || etcd.Path != "/bin/etcd" {
		t.Errorf("etcd: %+v", etcd)
	}
	for name, want := range map[string]string{
		"--name": "etcd-c1", "--data-dir": "/d/etcd-data",
		"--listen-client-urls": "http://127.0.0.1:1001", "--advertise-client-urls": "http://127.0.0.1:1001",
		"--listen-peer-urls": "http://127.0.0.1:1002", "--initial-cluster": "etcd-c1=http://127.0.0.1:1002",
	} {
		if got := flagValue(t, etcd.Args, name); got != want {
			t.Errorf("etcd %s=%s, want %s", name, got, want)
		}
	}
	api := c.APIServerCommand()
	if api.Component != KubeAPIServer || api.Path != "/bin/kube-apiserver" || api.Args[len(api.Args)-1] != "--allow-privileged=true" {
		t.Errorf("kube-apiserver: %+v", api)
	}
	for name, want := range map[string]string{
		"--etcd-servers": "http://127.0.0.1:1001", "--secure-port": "1003", "--bind-address": "127.0.0.1",
		"--tls-cert-file": "/d/pki/serving.crt", "--tls-private-key-file": "/d/pki/serving.key", "--client-ca-file": "/d/pki/ca.crt",
		"--service-account-issuer": "https://kubernetes.default.svc.c1", "--service-account-key-file": "/d/pki/sa.pub",
		"--service-account-signing-key-file": "/d/pki/sa.key", "--service-cluster-ip-range": "10.97.0.0/16",
		"--authorization-mode": "RBAC", "--endpoint-reconciler-type": "none",
	} {
		if got := flagValue(t, api.Args, name); got != want {
			t.Errorf("kube-apiserver %s=%s, want %s", name, got, want)
		}
	}
}

// sh is a control-plane process played by a shell script.
func sh(component, script string) Command {
	return Command{Component: component, Path: "/bin/sh", Args: []string{"-c", script}}
}

// A process that exits is named with its log while it is awaited; one that
// says its port was taken is ErrPortTaken; a check that never passes ends
// with ctx, naming what was awaited and every log.
func TestWaitFor(t *testing.T) {
	dir := t.TempDir()
	var started []string
	c := &ControlPlane{Dir: dir, Started: func(p *Proc) error { started = append(started, p.Component); return nil }}
	ctx := context.Background()
	ok, err := c.Launch(sh("fine", "echo fine; exec sleep 60"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Launch(sh("failing", "echo cannot start >&2; exit 3")); err != nil {
		t.Fatal(err)
	}
	err = c.Wait(ctx, "something", func(context.Context) error { return errors.New("not yet") })
	for _, want := range []string{"failing exited (exit status 3) while waiting for something", "cannot start", filepath.Join(dir, "failing.log")} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if errors.Is(err, ErrPortTaken) || strings.Join(started, ",") != "fine,failing" {
		t.Errorf("%v; started %v", err, started)
	}
	c.StopComponent("failing", syscall.SIGTERM, time.Second)

	taken, _ := c.Launch(sh("taken", "echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1"))
	<-taken.Done()
	if err := c.Wait(ctx, "x", func(context.Context) error { return nil }); !errors.Is(err, ErrPortTaken) {
		t.Errorf("a taken port: %v", err)
	}
	c.StopComponent("taken", syscall.SIGTERM, time.Second)

	var notes int
	tctx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
	defer cancel()
	err = WaitFor(tctx, "the thing", c.Procs(), func(context.Context) error { return errors.New("no answer") }, func(time.Duration, error) { notes++ })
	if err == nil || !strings.Contains(err.Error(), "the thing not ready after") || !strings.Contains(err.Error(), "no answer") ||
		!strings.Contains(err.Error(), "--- last lines of "+filepath.Join(dir, "fine.log")+":\nfine") {
		t.Errorf("timeout: %v", err)
	}
	calls := 0
	if err := c.Wait(ctx, "y", func(context.Context) error { calls++; return map[bool]error{true: errors.New("once")}[calls == 1] }); err != nil || calls != 2 {
		t.Errorf("a check passing the second time: %v after %d calls", err, calls)
	}

	// Stop: the last started first; SIGKILL after the grace period.
	if _, err := c.Launch(sh("stubborn", "trap '' TERM; echo trapped; while :; do sleep 0.05; done")); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(Tail(c.LogPath("stubborn"), 1), "trapped") {
		time.Sleep(10 * time.Millisecond)
	}
	procs := c.Procs()
	begin := time.Now()
	c.Stop(300 * time.Millisecond)
	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("%s still runs", p.Component)
		}
	}
	if err := procs[1].Err(); err == nil || !strings.Contains(err.Error(), "killed") || time.Since(begin) < 300*time.Millisecond {
		t.Errorf("the process ignoring SIGTERM: %v after %s", err, time.Since(begin))
	}
	if ok.Err() == nil || len(c.Procs()) != 0 {
		t.Errorf("after Stop: %v, %d processes", ok.Err(), len(c.Procs()))
	}
	c.Stop(time.Second) // a second time: nothing
}

// A Detached process has its own session; a WithParent one dies with its
// parent (Pdeathsig), which this test cannot show without dying.
func TestStartLifetime(t *testing.T) {
	dir := t.TempDir()
	for life, wantSession := range map[Lifetime]bool{Detached: true, WithParent: false} {
		p, err := Start(Command{Component: "sleep", Path: "/bin/sleep", Args: []string{"60"}}, dir, filepath.Join(dir, "sleep.log"), life)
		if err != nil {
			t.Fatal(err)
		}
		sid, err := unix.Getsid(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		if (sid == p.PID()) != wantSession {
			t.Errorf("lifetime %d: session %d of pid %d", life, sid, p.PID())
		}
		p.Stop(syscall.SIGTERM, time.Second)
	}
	if _, err := Start(Command{Component: "none", Path: filepath.Join(dir, "none")}, dir, filepath.Join(dir, "none.log"), WithParent); err == nil ||
		!strings.Contains(err.Error(), "start none") {
		t.Errorf("a missing program: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.log")); err != nil {
		t.Error(err)
	}
}
