package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/horizonmesh/horizon/internal/cmdutil"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source/remote"
)

// Names and labels of what create-remote-secret makes and prints.
const (
	// RemoteReaderClusterRole is the read-only ClusterRole every remote
	// cluster's reader ServiceAccount is bound to.
	RemoteReaderClusterRole = "horizon-reader"
	// RemoteSecretPrefix prefixes the printed Secret's name (Istio's).
	RemoteSecretPrefix = "istio-remote-secret-"
	// MultiClusterLabel marks the Secrets discovery joins remote clusters from.
	MultiClusterLabel = "istio/multiCluster"
	// ClusterAnnotation names the cluster a remote Secret is for (Istio's).
	ClusterAnnotation = "networking.istio.io/cluster"

	readerPrefix = "horizon-reader-"
	// minTokenTTL is the TokenRequest API's lower bound on expirationSeconds.
	minTokenTTL = 10 * time.Minute
	// verifyFor bounds the wait for the new token to be accepted: RBAC and
	// token authentication read from caches that take a moment to see new
	// objects.
	verifyFor = 15 * time.Second
)

// remoteSecretOptions are create-remote-secret's flags.
type remoteSecretOptions struct {
	cluster   clusterFlags
	name      string // the remote cluster's ID in the mesh
	namespace string
	server    string // API server URL as seen from the primary; "" = the kubeconfig's
	tokenTTL  time.Duration
	timeout   time.Duration
}

func newCreateRemoteSecretCommand(stdout io.Writer) *cobra.Command {
	o := remoteSecretOptions{}
	cmd := &cobra.Command{
		Use:   "create-remote-secret --name CLUSTER_ID [--kubeconfig FILE] [--context CTX]",
		Short: "Give a remote cluster a read-only identity and print the Secret that joins it to the primary's discovery",
		Long: `create-remote-secret works against the REMOTE cluster (--kubeconfig/--context, as kubectl).
It first checks, reading only, what the Secret needs (an https server, the API server's CA
from the kubeconfig or the kube-root-ca.crt ConfigMap, a kubeconfig discovery accepts): when
one is missing it fails having written nothing. Then it applies there (server-side apply, field manager "horizon", label
app.kubernetes.io/managed-by=horizon; idempotent) in --namespace, which it creates when
missing:

  ServiceAccount      horizon-reader-<name>
  ClusterRole         horizon-reader: get/list/watch Services, Endpoints, EndpointSlices,
                      Pods, Nodes, Namespaces and Istio Gateways; create TokenReviews.
                      Nothing else: no Secrets, no writes.
  ClusterRoleBinding  horizon-reader-<name>.<namespace>

then gets a token for the ServiceAccount and prints to stdout the Secret to apply in the
PRIMARY cluster (` + "`horizon create-remote-secret ... | kubectl --context primary apply -f -`" + `):
istio-remote-secret-<name> in --namespace, labelled istio/multiCluster=true, whose data key
<name> is the cluster ID and holds a kubeconfig with the token, the API server's CA inline
and --server (default: the kubeconfig's server; give the address the primary reaches).
Progress goes to stderr.

The token (--token-ttl):
  0 (default)  a long-lived token, as Istio's istioctl makes: a Secret
               horizon-reader-<name>-token of type kubernetes.io/service-account-token,
               which the cluster's token controller (kube-controller-manager) fills; the
               command waits for it (--timeout). It lasts until that Secret or the
               ServiceAccount is deleted, and re-running prints the same token.
  > 0          a token from the TokenRequest API valid that long (at least 10m; the API
               server may cap it), for clusters without the token controller or when
               tokens must expire. Rotate before expiry by running the command again and
               applying its output: discovery swaps to the new kubeconfig once it has
               synced (make before break). Older tokens stay valid until they expire.
Revoke access by deleting the ServiceAccount (or, for the long-lived token, its Secret).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			cfg, err := o.cluster.restConfig()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			out, err := createRemoteSecret(ctx, cfg, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			_, err = stdout.Write(out)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.cluster.kubeconfig, "kubeconfig", "", "kubeconfig of the REMOTE cluster (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&o.cluster.context, "context", "", "kubeconfig context of the REMOTE cluster (default: the current one)")
	fl.StringVar(&o.name, "name", "", "the remote cluster's ID in the mesh: the Secret's data key (required)")
	fl.StringVar(&o.namespace, "namespace", "istio-system", "namespace of the reader ServiceAccount in the remote cluster and of the printed Secret")
	fl.StringVar(&o.server, "server", "", "API server URL (https) as the primary's discovery reaches it (default: the kubeconfig's)")
	fl.DurationVar(&o.tokenTTL, "token-ttl", 0, "0: long-lived token from a service-account-token Secret (needs the cluster's token controller); >0: TokenRequest token valid that long (>= 10m)")
	fl.DurationVar(&o.timeout, "timeout", time.Minute, "bound on the whole command, the wait for the token controller included")
	return cmd
}

func (o remoteSecretOptions) validate() error {
	if o.name == "" {
		return cmdutil.Usagef("--name is required: the ID the primary's discovery will know this cluster by")
	}
	if err := model.ValidateClusterID(o.name); err != nil {
		return cmdutil.Usagef("--name: %v", err)
	}
	if errs := validation.IsDNS1123Label(o.namespace); len(errs) > 0 {
		return cmdutil.Usagef("--namespace %q: %s", o.namespace, strings.Join(errs, "; "))
	}
	if o.tokenTTL != 0 && o.tokenTTL < minTokenTTL {
		return cmdutil.Usagef("--token-ttl %s: must be 0 (long-lived Secret token) or at least %s (the TokenRequest API's minimum)", o.tokenTTL, minTokenTTL)
	}
	if o.timeout <= 0 {
		return cmdutil.Usagef("--timeout must be positive")
	}
	if o.server != "" {
		if err := checkServerURL(o.server); err != nil {
			return cmdutil.Usagef("--server: %v", err)
		}
	}
	return nil
}

// checkServerURL accepts only an https URL with a host: the kubeconfig
// carries a bearer token.
func checkServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an https:// URL (the kubeconfig carries a token)", s)
	}
	return nil
}

// restConfig loads the kubeconfig as clusterFlags.client does, with the same
// per-request timeout (an unreachable API server fails, not hangs).
func (c clusterFlags) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.kubeconfig != "" {
		rules.ExplicitPath = c.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.context}).ClientConfig()
	if err != nil {
		return nil, cmdutil.Usagef("kubeconfig: %v", err)
	}
	cfg.Timeout = 30 * time.Second // an unreachable API server fails, not hangs
	return cfg, nil
}

// remoteNames are the objects made for one remote cluster.
type remoteNames struct {
	serviceAccount, binding, tokenSecret, secret string
}

func namesFor(name, namespace string) remoteNames {
	sa := dnsName(readerPrefix, name)
	return remoteNames{
		serviceAccount: sa,
		binding:        sa + "." + namespace, // '.' never occurs in a namespace: no two (sa, ns) share a name
		tokenSecret:    sa + "-token",
		secret:         dnsName(RemoteSecretPrefix, name),
	}
}

// dnsName is prefix+id when that is a valid object name (DNS-1123
// subdomain, with room for a "-token" suffix); otherwise id is lowercased,
// every other character than [a-z0-9] becomes '-', and a hash of id is
// appended, so distinct IDs (cluster_2, Cluster-2, cluster-2) never share
// a name.
func dnsName(prefix, id string) string {
	const room = len("-token")
	if n := prefix + id; len(validation.IsDNS1123Subdomain(n)) == 0 && len(n)+room <= validation.DNS1123SubdomainMaxLength {
		return n
	}
	b := []byte(strings.ToLower(id))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	sum := sha256.Sum256([]byte(id))
	suffix := "-" + hex.EncodeToString(sum[:4])
	if max := validation.DNS1123SubdomainMaxLength - room - len(prefix) - len(suffix); len(b) > max {
		b = b[:max]
	}
	return prefix + string(b) + suffix
}

func managedMeta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{install.ManagedByLabel: install.ManagedBy}}
}

// remoteReaderRole is everything discovery reads from a remote cluster
// (source/kube's informers; Istio Gateways) and the TokenReviews with which
// its CA authenticates that cluster's workloads. Read-only: no Secrets, no
// write verbs.
func remoteReaderRole() *rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	return &rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: managedMeta(RemoteReaderClusterRole, ""),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "pods", "nodes", "namespaces"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			{APIGroups: []string{"networking.istio.io"}, Resources: []string{"gateways"}, Verbs: read},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		}}
}

// remoteReaderObjects are applied in the remote cluster, in order; with
// longLived the service-account-token Secret too.
func remoteReaderObjects(name, namespace string, longLived bool) []runtime.Object {
	n := namesFor(name, namespace)
	objs := []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: managedMeta(n.serviceAccount, namespace)},
		remoteReaderRole(),
		&rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: managedMeta(n.binding, ""),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: RemoteReaderClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: n.serviceAccount, Namespace: namespace}}},
	}
	if longLived {
		s := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: managedMeta(n.tokenSecret, namespace),
			Type: corev1.SecretTypeServiceAccountToken}
		s.Annotations = map[string]string{corev1.ServiceAccountNameKey: n.serviceAccount}
		objs = append(objs, s)
	}
	return objs
}

// remoteKubeconfig is the kubeconfig the primary's discovery uses: one
// context named after the cluster, the token and CA inline, no file paths
// and no plugins (what remote.ParseKubeconfig accepts without
// --allow-insecure-kubeconfig).
func remoteKubeconfig(name, server string, caPEM []byte, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

// renderRemoteSecret is the YAML of the Secret that joins cluster name to
// the primary's discovery.
func renderRemoteSecret(name, namespace string, kubeconfig []byte) ([]byte, error) {
	s := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: namesFor(name, namespace).secret, Namespace: namespace,
			Labels:      map[string]string{MultiClusterLabel: "true"},
			Annotations: map[string]string{ClusterAnnotation: name}},
		StringData: map[string]string{name: string(kubeconfig)}}
	us, err := install.Unstructured([]runtime.Object{s})
	if err != nil {
		return nil, err
	}
	return install.YAML(us)
}

// createRemoteSecret does the work against the remote cluster of cfg and
// returns the Secret's YAML; progress goes to progress.
func createRemoteSecret(ctx context.Context, cfg *rest.Config, o remoteSecretOptions, progress io.Writer) ([]byte, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, cmdutil.Usagef("kubeconfig: %v", err)
	}
	ic, err := install.NewClient(cfg)
	if err != nil {
		return nil, cmdutil.Usagef("kubeconfig: %v", err)
	}
	return createRemoteSecretWith(ctx, cfg, cs, ic, o, progress)
}

// applier applies objects in the remote cluster (install.Client).
type applier interface {
	Apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool, progress io.Writer) (install.ApplyResult, error)
}

// createRemoteSecretWith is createRemoteSecret with its clients. Everything
// that can be known to fail without writing — the server URL, the CA the
// kubeconfig needs, the objects, the kubeconfig discovery will parse — is
// checked before the first write, so that a run that fails on them leaves
// the cluster as it was (no Namespace, ServiceAccount, binding or token).
func createRemoteSecretWith(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, ic applier, o remoteSecretOptions, progress io.Writer) ([]byte, error) {
	server := o.server
	if server == "" {
		server = cfg.Host
		if err := checkServerURL(server); err != nil {
			return nil, cmdutil.Usagef("the kubeconfig's server: %v; give --server", err)
		}
	}
	api := func(err error) error { return remoteAPIError(cfg.Host, err) }
	longLived := o.tokenTTL == 0
	objs, err := install.Unstructured(remoteReaderObjects(o.name, o.namespace, longLived))
	if err != nil {
		return nil, err
	}
	ca, err := caData(ctx, cfg, cs, o.namespace)
	if err != nil {
		return nil, err
	}
	if kc, err := remoteKubeconfig(o.name, server, ca, "token-to-come"); err != nil {
		return nil, err
	} else if _, err := remote.ParseKubeconfig(kc, false); err != nil {
		return nil, fmt.Errorf("discovery would refuse the kubeconfig for %s: %w", server, err)
	}

	// Now the writes.
	if err := ensureNamespace(ctx, cs, o.namespace, progress); err != nil {
		return nil, api(err)
	}
	if _, err := ic.Apply(ctx, objs, false, progress); err != nil {
		return nil, api(err)
	}
	n := namesFor(o.name, o.namespace)
	var token string
	if longLived {
		if token, err = waitForToken(ctx, cs, o.namespace, n.tokenSecret); err != nil {
			return nil, err
		}
	} else if token, err = requestToken(ctx, cs, o.namespace, n.serviceAccount, o.tokenTTL, progress); err != nil {
		return nil, api(err)
	}
	kc, err := remoteKubeconfig(o.name, server, ca, token)
	if err != nil {
		return nil, err
	}
	if _, err := remote.ParseKubeconfig(kc, false); err != nil {
		return nil, fmt.Errorf("internal error: discovery would refuse the kubeconfig: %w", err)
	}
	if err := verifyToken(ctx, cfg, token); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "Secret %s/%s for cluster %q printed: apply it in the primary cluster\n", o.namespace, n.secret, o.name)
	return renderRemoteSecret(o.name, o.namespace, kc)
}

// ensureNamespace creates namespace unless present (an existing one is left
// as it is: no label of ours is applied to it).
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, namespace string, progress io.Writer) error {
	_, err := cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: managedMeta(namespace, "")}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	fmt.Fprintf(progress, "Namespace %s created\n", namespace)
	return nil
}

// waitForToken waits for the token controller to fill the
// service-account-token Secret, and returns its token.
func waitForToken(ctx context.Context, cs kubernetes.Interface, namespace, name string) (string, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil && len(s.Data[corev1.ServiceAccountTokenKey]) > 0:
			return string(s.Data[corev1.ServiceAccountTokenKey]), nil
		case err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err):
			return "", fmt.Errorf("Secret %s/%s: %w", namespace, name, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("Secret %s/%s has no token yet: the cluster's token controller (kube-controller-manager) fills "+
				"service-account-token Secrets, and none did before --timeout; without one, use --token-ttl (a TokenRequest token)", namespace, name)
		case <-tick.C:
		}
	}
}

// requestToken gets a token for the ServiceAccount from the TokenRequest API.
func requestToken(ctx context.Context, cs kubernetes.Interface, namespace, sa string, ttl time.Duration, progress io.Writer) (string, error) {
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for ServiceAccount %s/%s: %w", namespace, sa, err)
	}
	exp := tr.Status.ExpirationTimestamp.Time
	fmt.Fprintf(progress, "token for ServiceAccount %s/%s expires at %s: run this command again and apply its output before then\n",
		namespace, sa, exp.UTC().Format(time.RFC3339))
	if got := time.Until(exp); got < ttl-time.Minute {
		fmt.Fprintf(progress, "warning: the API server shortened the token's lifetime to %s (asked for %s; see its --service-account-max-token-expiration)\n",
			got.Round(time.Second), ttl)
	}
	return tr.Status.Token, nil
}

// remoteAPIError says whether err is the API server's answer or the lack of one.
func remoteAPIError(host string, err error) error {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return fmt.Errorf("cannot reach the API server %s: %w", host, err)
	}
	return fmt.Errorf("API server %s: %w", host, err)
}

// errNoCA: neither the kubeconfig nor the cluster has the API server's CA.
var errNoCA = errors.New("no CA for the API server")

// caData is the CA that verifies the API server: the kubeconfig's (inline
// or its file), else the kube-root-ca.crt ConfigMap (which the cluster
// publishes in every namespace) of namespace, else of kube-system — read
// only, before anything is written: namespace may not exist yet.
func caData(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, namespace string) ([]byte, error) {
	if len(cfg.TLSClientConfig.CAData) > 0 {
		return cfg.TLSClientConfig.CAData, nil
	}
	if f := cfg.TLSClientConfig.CAFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("the kubeconfig's certificate-authority: %w", err)
		}
		return b, nil
	}
	for _, ns := range []string{namespace, metav1.NamespaceSystem} {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		switch {
		case err == nil && cm.Data["ca.crt"] != "":
			return []byte(cm.Data["ca.crt"]), nil
		case err != nil && !apierrors.IsNotFound(err):
			return nil, remoteAPIError(cfg.Host, fmt.Errorf("ConfigMap %s/kube-root-ca.crt: %w", ns, err))
		}
	}
	return nil, fmt.Errorf("%w: the kubeconfig has none (insecure-skip-tls-verify?) and neither has a kube-root-ca.crt ConfigMap "+
		"(in %s or %s); use a kubeconfig with certificate-authority(-data). Nothing was created", errNoCA, namespace, metav1.NamespaceSystem)
}

// verifyToken checks, as the new ServiceAccount, that the token is accepted
// and may list Services — retrying for a moment, since token
// authentication and RBAC see new objects through caches.
func verifyToken(ctx context.Context, cfg *rest.Config, token string) error {
	as := rest.AnonymousClientConfig(cfg)
	as.BearerToken = token
	cs, err := kubernetes.NewForConfig(as)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyFor)
	defer cancel()
	for {
		_, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return nil
		}
		if !apierrors.IsUnauthorized(err) && !apierrors.IsForbidden(err) {
			return fmt.Errorf("API server %s: listing Services with the new token: %w", cfg.Host, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API server %s does not let the new token list Services: %w", cfg.Host, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
