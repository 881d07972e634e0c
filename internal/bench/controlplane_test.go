//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// cpProc is a control plane running as a subprocess, so that its CPU time
// and peak RSS are its own (/proc/PID), not the benchmark's clients'.
type cpProc struct {
	name string
	cmd  *exec.Cmd
	xds  string
	done chan struct{}
	log  string
}

func freeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)) }

// startCP starts the control plane named cp against kubeconfig, waits until
// its readiness URL answers 200 and returns it.
func startCP(t *testing.T, cp, dir, kubeconfig string) *cpProc {
	t.Helper()
	p := &cpProc{name: cp, xds: freeAddr(t), done: make(chan struct{}), log: filepath.Join(dir, cp+".log")}
	httpAddr := freeAddr(t)
	var ready string
	switch cp {
	case "horizon":
		p.cmd = exec.Command(*horizonBin, "discovery", "--kubeconfig", kubeconfig, "--cluster-id", "cluster1",
			"--xds-addr", p.xds, "--http-addr", httpAddr, "--secure-addr", "")
		p.cmd.Args = append(p.cmd.Args, strings.Fields(*cpArgs)...)
		ready = "http://" + httpAddr + "/ready"
	case "istiod":
		// Plaintext xDS only (no TLS port, no CA serving); the mesh config
		// and meshNetworks come from the istio ConfigMap as for Horizon.
		p.cmd = exec.Command(*istiodBin, "discovery", "--kubeconfig", kubeconfig, "--clusterID", "cluster1",
			"--grpcAddr", p.xds, "--httpAddr", httpAddr, "--monitoringAddr", freeAddr(t),
			"--secureGRPCAddr", "", "--httpsAddr", "", "--domain", "cluster.local",
			"--keepaliveMaxServerConnectionAge", "10000h", "--log_output_level", "default:warn")
		p.cmd.Args = append(p.cmd.Args, strings.Fields(*cpArgs)...)
		p.cmd.Env = append(os.Environ(), "POD_NAMESPACE=istio-system", "POD_NAME=istiod-bench", "REVISION=default",
			"PILOT_ENABLE_ANALYSIS=false", "ENABLE_CA_SERVER=false", "PILOT_ENABLE_STATUS=false",
			"PILOT_ENABLE_CROSS_CLUSTER_WORKLOAD_ENTRY=false", "EXTERNAL_ISTIOD=false",
			"PILOT_ENABLE_GATEWAY_API=false", "PILOT_ENABLE_GATEWAY_API_STATUS=false",
			"PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER=false", "PILOT_ENABLE_GATEWAY_API_GATEWAYCLASS_CONTROLLER=false",
			"VALIDATION_WEBHOOK_CONFIG_NAME=", "INJECTION_WEBHOOK_CONFIG_NAME=", "PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING=false",
			"JWT_POLICY=first-party-jwt", "KUBECONFIG="+kubeconfig)
		ready = "http://" + httpAddr + "/ready"
	default:
		t.Fatalf("-cp %q: horizon or istiod", cp)
	}
	p.run(t, func() error {
		resp, err := http.Get(ready)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", ready, resp.Status)
		}
		return nil
	})
	return p
}

// run starts p.cmd with -cp-env added to its environment, its stdout and
// stderr in p.log, killed with the benchmark and stopped when t ends, and
// waits until ready reports nil; it fails t when the process exits first
// or is not ready within -ready-timeout.
func (p *cpProc) run(t *testing.T, ready func() error) {
	t.Helper()
	if *cpEnv != "" {
		if p.cmd.Env == nil {
			p.cmd.Env = os.Environ()
		}
		p.cmd.Env = append(p.cmd.Env, strings.Fields(*cpEnv)...)
	}
	log, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(*readyTimeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before ready: %s", p.name, tail(p.log))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v; log: %s", p.name, *readyTimeout, err, tail(p.log))
		}
	}
}

func (p *cpProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// usage is the process's CPU time (utime+stime from /proc/PID/stat) and
// peak RSS (VmHWM from /proc/PID/status).
type usage struct {
	cpu time.Duration
	hwm int64 // bytes
}

func (p *cpProc) usage() (usage, error) {
	pid := p.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return usage{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	u := usage{cpu: time.Duration(ut+st) * time.Second / clkTck}
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			u.hwm = kb << 10
		}
	}
	return u, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// applyCRDs creates every CustomResourceDefinition in a multi-document
// YAML file (Istio's crd-all.gen.yaml) and waits until they are served.
func applyCRDs(ctx context.Context, cfg *rest.Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var names []string
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		if obj == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if _, err := dc.Resource(gvr).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("CRD %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	for _, n := range names {
		for {
			u, err := dc.Resource(gvr).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			established := false
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					established = true
				}
			}
			if established {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
