package proxystatus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"

	"google.golang.org/grpc/credentials"

	"github.com/horizonmesh/horizon/internal/install"
)

// Cluster finds discovery's replicas through a cluster's API server and
// reaches them as a member of the control plane's namespace: a token of
// its TokenServiceAccount (audience TokenAudience, which discovery
// accepts), over TLS trusting the mesh root that discovery publishes in
// istio-ca-root-cert.
type Cluster struct {
	Config    *rest.Config
	Client    kubernetes.Interface
	Namespace string // the control plane's
}

// TokenServiceAccount is the service account of the control plane's
// namespace whose token proxy-status presents: its namespace is what lets
// it read every proxy's status; the account itself has no rights.
const (
	TokenServiceAccount = "default"
	TokenAudience       = "istio-ca"
	tokenSeconds        = 10 * 60
)

// ServerName is the name discovery's serving certificate holds for its
// Service (install's --secure-san), checked when dialing a replica.
func ServerName(namespace string) string { return install.DiscoveryName + "." + namespace + ".svc" }

// Replicas lists discovery's running pods (label app=horizon).
func (c Cluster) Replicas(ctx context.Context) ([]corev1.Pod, error) {
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + install.DiscoveryName,
		FieldSelector: "status.phase=Running"})
	if err != nil {
		return nil, fmt.Errorf("listing discovery's pods in namespace %s: %w", c.Namespace, err)
	}
	if len(pods.Items) == 0 {
		return nil, fmt.Errorf("no running discovery pod (app=%s) in namespace %s; is Horizon installed there (--namespace)?",
			install.DiscoveryName, c.Namespace)
	}
	return pods.Items, nil
}

// Credentials returns the TLS config trusting the mesh root (checking the
// server name serverName) and a fresh token.
func (c Cluster) Credentials(ctx context.Context, serverName string) (credentials.TransportCredentials, string, error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, install.RootCertMap, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("the mesh root (ConfigMap %s/%s): %w", c.Namespace, install.RootCertMap, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(cm.Data["root-cert.pem"])) {
		return nil, "", fmt.Errorf("ConfigMap %s/%s: root-cert.pem holds no PEM certificate", c.Namespace, install.RootCertMap)
	}
	exp := int64(tokenSeconds)
	tok, err := c.Client.CoreV1().ServiceAccounts(c.Namespace).CreateToken(ctx, TokenServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{TokenAudience}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("a token of ServiceAccount %s/%s: %w", c.Namespace, TokenServiceAccount, err)
	}
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: serverName}), tok.Status.Token, nil
}

// Forward forwards a local port to port of pod, as `kubectl port-forward`
// does (WebSocket, falling back to SPDY); it returns the local address and
// stops when ctx ends.
func (c Cluster) Forward(ctx context.Context, pod string, port int) (string, error) {
	url := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(c.Namespace).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(c.Config)
	if err != nil {
		return "", err
	}
	dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	if ws, err := portforward.NewSPDYOverWebsocketDialerForStreaming(url, c.Config); err == nil {
		dialer = portforward.NewFallbackDialerForStreaming(ws, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesForStreamingWithContext(ctx, dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, ready, io.Discard, io.Discard)
	if err != nil {
		return "", err
	}
	failed := make(chan error, 1)
	go func() { failed <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-failed:
		if err == nil {
			err = errors.New("stopped")
		}
		return "", fmt.Errorf("port-forward to pod %s/%s: %w", c.Namespace, pod, err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil {
		return "", fmt.Errorf("port-forward to pod %s/%s: %w", c.Namespace, pod, err)
	}
	if len(ports) == 0 {
		return "", fmt.Errorf("port-forward to pod %s/%s: no local port", c.Namespace, pod)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), nil
}
