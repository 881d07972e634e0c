package labnode

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ProbeKind is how a probe checks.
type ProbeKind string

// Probe kinds.
const (
	ProbeHTTP ProbeKind = "httpGet"
	ProbeTCP  ProbeKind = "tcpSocket"
	ProbeExec ProbeKind = "exec"
)

// ProbePlan is a probe with the Kubernetes defaults applied and named ports
// resolved. HTTP and TCP probes connect from inside the pod's network
// namespace to Host (the pod's IP unless the probe names a host).
type ProbePlan struct {
	Kind    ProbeKind
	Host    string
	Port    int
	Scheme  string // HTTP or HTTPS
	Path    string
	Headers http.Header
	Command []string

	InitialDelay, Period, Timeout time.Duration
	SuccessThreshold              int
	FailureThreshold              int
}

// Addr is host:port of an HTTP or TCP probe.
func (p *ProbePlan) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// URL is an HTTP probe's URL.
func (p *ProbePlan) URL() string {
	path := p.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return strings.ToLower(p.Scheme) + "://" + p.Addr() + path
}

// PlanProbe applies the defaults (period 10s, timeout 1s, thresholds 1 and
// 3, HTTP path /) and resolves a named port among c's ports.
func PlanProbe(pr *corev1.Probe, c *corev1.Container, podIP string) (*ProbePlan, error) {
	p := &ProbePlan{
		InitialDelay:     time.Duration(pr.InitialDelaySeconds) * time.Second,
		Period:           secondsOr(pr.PeriodSeconds, 10),
		Timeout:          secondsOr(pr.TimeoutSeconds, 1),
		SuccessThreshold: intOr(pr.SuccessThreshold, 1),
		FailureThreshold: intOr(pr.FailureThreshold, 3),
		Host:             podIP,
	}
	var err error
	switch {
	case pr.HTTPGet != nil:
		h := pr.HTTPGet
		p.Kind, p.Path, p.Scheme = ProbeHTTP, h.Path, string(h.Scheme)
		if p.Path == "" {
			p.Path = "/"
		}
		if p.Scheme == "" {
			p.Scheme = "HTTP"
		}
		if p.Scheme != "HTTP" && p.Scheme != "HTTPS" {
			return nil, fmt.Errorf("httpGet scheme %q is not HTTP or HTTPS", p.Scheme)
		}
		if h.Host != "" {
			p.Host = h.Host
		}
		if len(h.HTTPHeaders) > 0 {
			p.Headers = http.Header{}
			for _, hd := range h.HTTPHeaders {
				p.Headers.Add(hd.Name, hd.Value)
			}
		}
		p.Port, err = probePort(h.Port, c)
	case pr.TCPSocket != nil:
		p.Kind = ProbeTCP
		if pr.TCPSocket.Host != "" {
			p.Host = pr.TCPSocket.Host
		}
		p.Port, err = probePort(pr.TCPSocket.Port, c)
	case pr.Exec != nil:
		p.Kind, p.Command = ProbeExec, pr.Exec.Command
		if len(p.Command) == 0 {
			err = errors.New("exec probe without a command")
		}
	case pr.GRPC != nil:
		err = errors.New("grpc probes are not supported by the lab node")
	default:
		err = errors.New("probe without a handler")
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func probePort(port intstr.IntOrString, c *corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		if port.IntVal <= 0 || port.IntVal > 65535 {
			return 0, fmt.Errorf("port %d is out of range", port.IntVal)
		}
		return int(port.IntVal), nil
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q is not a port name of container %s", port.StrVal, c.Name)
}

func secondsOr(v int32, def int) time.Duration {
	if v <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(v) * time.Second
}

func intOr(v int32, def int) int {
	if v <= 0 {
		return def
	}
	return int(v)
}
