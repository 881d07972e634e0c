package labnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// The kubelet API: what the API server proxies `kubectl logs`, `exec`,
// `attach`, `port-forward` (and `cp`, an exec of tar) to. The paths, query
// parameters and streaming protocols (SPDY and WebSocket) are
// virtual-kubelet's node/api handlers; this node provides what they call:
// GetContainerLogs (kubeletlogs.go), RunInContainer and AttachToContainer
// (kubeletexec.go), PortForward (kubeletportforward.go).

// streamTimeout bounds an idle exec, attach or port-forward stream (the
// kubelet's --streaming-connection-idle-timeout default). virtual-kubelet
// hands port-forward its creation timeout as the idle one and the other
// way round, so both are set to it.
const streamTimeout = 4 * time.Hour

// KubeletAPI is the handler of the kubelet API's paths (/containerLogs,
// /exec, /attach, /portForward, /pods), for the clients Config names only.
func (n *Node) KubeletAPI() http.Handler {
	h := api.PodHandler(api.PodHandlerConfig{
		GetContainerLogs:      n.GetContainerLogs,
		RunInContainer:        n.RunInContainer,
		AttachToContainer:     n.AttachToContainer,
		PortForward:           n.PortForward,
		GetPods:               n.GetPods,
		GetPodsFromKubernetes: n.GetPods,
		StreamIdleTimeout:     streamTimeout,
		StreamCreationTimeout: streamTimeout,
	}, false)
	return authorizeClients(n.cfg.KubeletClients, tailZero(h))
}

// tailZeroKey marks a request for no old lines (tailLines=0), which
// virtual-kubelet's ContainerLogOpts cannot tell from no tailLines at all:
// `kubectl logs -f --tail=0` follows only what comes next.
type tailZeroKey struct{}

func tailZero(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("tailLines") == "0" {
			r = r.WithContext(context.WithValue(r.Context(), tailZeroKey{}, true))
		}
		h.ServeHTTP(w, r)
	})
}

// authorizeClients lets through requests whose verified client certificate
// names one of users; the kubelet API runs commands in any pod, and pods
// can reach the node's address. (A real kubelet asks the API server —
// SubjectAccessReview — which here would only ever allow the API server.)
func authorizeClients(users []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			http.Error(w, "Unauthorized: a client certificate is required", http.StatusUnauthorized)
			return
		}
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if !slices.Contains(users, cn) {
			http.Error(w, fmt.Sprintf("Forbidden: user %q may not use this node's kubelet API", cn), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveKubeletAPI serves KubeletAPI on the configured listener until ctx
// ends. HTTP/1.1 only: exec, attach and port-forward upgrade the
// connection.
func (n *Node) serveKubeletAPI(ctx context.Context) {
	cfg := n.cfg.KubeletTLS.Clone()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.NextProtos = []string{"http/1.1"}
	srv := &http.Server{
		Handler: n.KubeletAPI(), TLSConfig: cfg, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: log.New(logfWriter(n.cfg.Logf), "labnode "+n.cfg.NodeName+": kubelet API: ", 0),
	}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	n.cfg.Logf("labnode %s: kubelet API on %s", n.cfg.NodeName, n.cfg.KubeletListener.Addr())
	if err := srv.ServeTLS(n.cfg.KubeletListener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		n.cfg.Logf("labnode %s: kubelet API: %v", n.cfg.NodeName, err)
	}
}

// logfWriter turns a Logf into the io.Writer a log.Logger wants.
type logfWriter func(string, ...any)

func (f logfWriter) Write(b []byte) (int, error) {
	f("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// container finds a container of a pod running here.
func (n *Node) container(namespace, pod, name string) (*podRun, *ctr, error) {
	n.mu.Lock()
	p, ok := n.pods[namespace+"/"+pod]
	n.mu.Unlock()
	if !ok {
		return nil, nil, errdefs.NotFoundf("pod %s/%s is not on node %s", namespace, pod, n.cfg.NodeName)
	}
	for _, c := range p.ctrs {
		if c.spec.Name == name {
			return p, c, nil
		}
	}
	return nil, nil, errdefs.NotFoundf("container %q is not in pod %s/%s", name, namespace, pod)
}
