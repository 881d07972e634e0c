package labnode

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
)

// PortForward serves one `kubectl port-forward` connection as a container
// runtime does: it connects to port on the pod's loopback (127.0.0.1, else
// ::1) from inside the pod's network namespace and copies both ways until
// the pod's side is done or the client goes.
func (n *Node) PortForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	n.mu.Lock()
	p, ok := n.pods[namespace+"/"+pod]
	n.mu.Unlock()
	if !ok {
		return errdefs.NotFoundf("pod %s/%s is not on node %s", namespace, pod, n.cfg.NodeName)
	}
	p.mu.Lock()
	up := p.ip.IsValid()
	p.mu.Unlock()
	if !up {
		return errdefs.InvalidInputf("pod %s/%s has no network yet", namespace, pod)
	}
	ps := strconv.Itoa(int(port))
	conn, err := n.rt.Dial(ctx, p.netns, net.JoinHostPort("127.0.0.1", ps))
	if err != nil {
		var err6 error
		if conn, err6 = n.rt.Dial(ctx, p.netns, net.JoinHostPort("::1", ps)); err6 != nil {
			return fmt.Errorf("pod %s/%s: port %d: %w", namespace, pod, port, err)
		}
	}
	defer conn.Close()
	fromPod := make(chan struct{})
	go func() {
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // the client is done sending: the pod may still answer
		}
	}()
	go func() { _, _ = io.Copy(stream, conn); close(fromPod) }()
	select {
	case <-fromPod:
	case <-ctx.Done():
	}
	return nil
}
