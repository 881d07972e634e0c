package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spf13/cobra"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/install"
	"github.com/horizonmesh/horizon/internal/source/remote"
	"github.com/horizonmesh/horizon/internal/topology"
)

// caSecretName is the plug-in CA Secret discovery loads (Istio's cacerts).
const caSecretName = "cacerts"

// checkResult is one line of `horizon check`.
type checkResult struct {
	Name   string
	OK     bool
	Detail string
	Remedy string // for a failure
}

func pass(name, format string, a ...any) checkResult {
	return checkResult{Name: name, OK: true, Detail: fmt.Sprintf(format, a...)}
}

func fail(name, remedy, format string, a ...any) checkResult {
	return checkResult{Name: name, Detail: fmt.Sprintf(format, a...), Remedy: remedy}
}

// writeChecks prints one line per check, a remedy under each failure, and
// returns how many failed.
func writeChecks(w io.Writer, rs []checkResult) int {
	failed := 0
	for _, r := range rs {
		status := "OK  "
		if !r.OK {
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "%s %s: %s\n", status, r.Name, r.Detail)
		if !r.OK && r.Remedy != "" {
			fmt.Fprintf(w, "     remedy: %s\n", r.Remedy)
		}
	}
	return failed
}

type checkFlags struct {
	kubeconfig     string
	primary        string
	contexts       []string
	istioNamespace string
	opsPort        int
	maxSkew        time.Duration
	timeout        time.Duration
}

func newCheckCommand(stdout io.Writer) *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check [--context PRIMARY] [--contexts C1,C2,...]",
		Short: "Multi-cluster preflight: one CA root, remote Secrets, gateways, meshNetworks, webhooks, clocks",
		Long: `check verifies what a multi-cluster mesh needs, one line per check (OK or FAIL,
with a remedy under each failure), and exits 1 when any fails:

  cacerts         every cluster's cacerts Secret loads (key matches, chains to
                  its root) and all of them chain to one root
  remote-secret   every remote Secret (label istio/multiCluster=true) in the
                  primary parses, is accepted as discovery accepts it,
                  authenticates, can list and watch what discovery reads, and
                  nothing more (no Secrets, no writes)
  discovery       discovery's clusters are synced, meshNetworks is valid, and
                  every network that has endpoints has a gateway with an address
  webhook         each cluster's injection webhook answers TLS at its Service
                  and its caBundle verifies the certificate it serves
  clock           each API server's clock is within --max-clock-skew of this one

--context is the primary (discovery and the remote Secrets); --contexts lists
every cluster of the mesh (default: every context of the kubeconfig).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			rs, err := runChecks(ctx, f)
			if err != nil {
				return err
			}
			if n := writeChecks(stdout, rs); n > 0 {
				return fmt.Errorf("%d of %d checks failed", n, len(rs))
			}
			fmt.Fprintf(stdout, "all %d checks passed\n", len(rs))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.primary, "context", "", "context of the primary cluster (discovery, remote Secrets; default: the current one)")
	fl.StringSliceVar(&f.contexts, "contexts", nil, "contexts of every cluster of the mesh (default: every context of the kubeconfig)")
	fl.StringVar(&f.istioNamespace, "istio-namespace", "istio-system", "the mesh's system namespace")
	fl.IntVar(&f.opsPort, "ops-port", 15014, "discovery's ops (HTTP) port in its pod")
	fl.DurationVar(&f.maxSkew, "max-clock-skew", 5*time.Second, "largest difference allowed between an API server's clock and this machine's")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "bound on the whole command")
	return cmd
}

// checkCluster is one context's clients.
type checkCluster struct {
	name string
	cfg  *rest.Config
	cs   kubernetes.Interface
	acc  *podAccess
}

func (f checkFlags) clusters() (primary string, out []checkCluster, err error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.kubeconfig != "" {
		rules.ExplicitPath = f.kubeconfig
	}
	raw, err := rules.Load()
	if err != nil {
		return "", nil, err
	}
	primary = f.primary
	if primary == "" {
		primary = raw.CurrentContext
	}
	if _, ok := raw.Contexts[primary]; !ok {
		return "", nil, fmt.Errorf("--context %q: no such context in the kubeconfig", primary)
	}
	names := f.contexts
	if len(names) == 0 {
		for n := range raw.Contexts {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	for _, n := range names {
		acc, err := newPodAccess(clusterFlags{kubeconfig: f.kubeconfig, context: n})
		if err != nil {
			return "", nil, fmt.Errorf("context %s: %w", n, err)
		}
		acc.cfg.Timeout = 15 * time.Second
		out = append(out, checkCluster{name: n, cfg: acc.cfg, cs: acc.cs, acc: acc})
	}
	return primary, out, nil
}

func runChecks(ctx context.Context, f checkFlags) ([]checkResult, error) {
	primary, clusters, err := f.clusters()
	if err != nil {
		return nil, err
	}
	var rs []checkResult
	var p *checkCluster
	for i := range clusters {
		if clusters[i].name == primary {
			p = &clusters[i]
		}
	}
	if p == nil {
		return nil, fmt.Errorf("--contexts %v: the primary %s is not among them", f.contexts, primary)
	}
	rs = append(rs, checkCACerts(ctx, clusters, f.istioNamespace)...)
	byName := map[string]*rest.Config{}
	for _, c := range clusters {
		byName[c.name] = c.cfg
	}
	rs = append(rs, checkRemoteSecrets(ctx, p.cs, primary, f.istioNamespace, byName)...)
	rs = append(rs, checkDiscovery(ctx, p, f)...)
	for _, c := range clusters {
		rs = append(rs, checkWebhook(ctx, c)...)
	}
	for _, c := range clusters {
		rs = append(rs, checkClock(ctx, c, f.maxSkew))
	}
	return rs, nil
}

// checkCACerts: each cluster's cacerts loads as discovery loads it, and
// every root is the first cluster's.
func checkCACerts(ctx context.Context, clusters []checkCluster, ns string) []checkResult {
	var rs []checkResult
	type root struct{ cluster, fp string }
	var roots []root
	for _, c := range clusters {
		name := "cacerts " + c.name
		create := fmt.Sprintf("kubectl --context %s -n %s create secret generic %s --from-file=ca-cert.pem --from-file=ca-key.pem --from-file=root-cert.pem --from-file=cert-chain.pem (an intermediate of the mesh's one root), then restart discovery",
			c.name, ns, caSecretName)
		s, err := c.cs.CoreV1().Secrets(ns).Get(ctx, caSecretName, metav1.GetOptions{})
		if err != nil {
			rs = append(rs, fail(name, create, "Secret %s/%s: %v", ns, caSecretName, err))
			continue
		}
		if _, err := ca.Load(s.Data); err != nil {
			rs = append(rs, fail(name, "fix the files and re-create it: "+create, "Secret %s/%s: %v", ns, caSecretName, err))
			continue
		}
		fp, err := rootFingerprint(s.Data[ca.RootCertFile])
		if err != nil {
			rs = append(rs, fail(name, create, "Secret %s/%s: %s: %v", ns, caSecretName, ca.RootCertFile, err))
			continue
		}
		rs = append(rs, pass(name, "ca-cert.pem chains to root %s", fp))
		roots = append(roots, root{c.name, fp})
	}
	if len(roots) > 1 {
		var differ []string
		for _, r := range roots[1:] {
			if r.fp != roots[0].fp {
				differ = append(differ, fmt.Sprintf("%s's is %s", r.cluster, r.fp))
			}
		}
		if len(differ) > 0 {
			rs = append(rs, fail("cacerts one root", "give every cluster a cacerts whose root-cert.pem is "+roots[0].cluster+"'s (an intermediate of the same root each), then restart discovery and the proxies",
				"%s's root is %s; %s: workloads of different roots cannot authenticate each other across clusters", roots[0].cluster, roots[0].fp, strings.Join(differ, "; ")))
		} else {
			rs = append(rs, pass("cacerts one root", "%d clusters chain to %s", len(roots), roots[0].fp))
		}
	}
	return rs
}

// rootFingerprint is "SHA256:" and the first 16 hex digits of the first
// certificate of a PEM bundle.
func rootFingerprint(b []byte) (string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c.Raw)
	return "SHA256:" + hex.EncodeToString(sum[:8]) + " (" + c.Subject.String() + ")", nil
}

// discoveryNeeds is what discovery reads of a remote cluster;
// beyondNeeds what a remote Secret's credentials must not allow.
var (
	discoveryNeeds = []authzv1.ResourceAttributes{
		{Resource: "services"}, {Resource: "pods"}, {Resource: "nodes"}, {Resource: "namespaces"},
		{Group: "discovery.k8s.io", Resource: "endpointslices"},
	}
	beyondNeeds = []authzv1.ResourceAttributes{
		{Verb: "get", Resource: "secrets"}, {Verb: "list", Resource: "secrets"},
		{Verb: "create", Resource: "pods"}, {Verb: "delete", Resource: "services"}, {Verb: "update", Resource: "services"},
	}
)

// checkRemoteSecrets checks every key of every remote Secret of the
// primary as discovery would use it. The Secret's server address is the
// one discovery dials, which may not be reachable from here (a private
// network, the lab's pod network): then its credentials are tried at the
// address of the kubeconfig context named as the key, if there is one
// (that discovery reaches it shows in "discovery cluster ID").
func checkRemoteSecrets(ctx context.Context, cs kubernetes.Interface, primary, ns string, contexts map[string]*rest.Config) []checkResult {
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{remote.MultiClusterLabel: "true"}.String()})
	if err != nil {
		return []checkResult{fail("remote-secrets", "check the primary's API server and your credentials", "listing Secrets labelled %s=true in %s/%s: %v", remote.MultiClusterLabel, primary, ns, err)}
	}
	if len(secrets.Items) == 0 {
		return []checkResult{pass("remote-secrets", "none in %s/%s (a single-cluster mesh)", primary, ns)}
	}
	var rs []checkResult
	for _, s := range secrets.Items {
		for _, key := range slices.Sorted(func(yield func(string) bool) {
			for k := range s.Data {
				if !yield(k) {
					return
				}
			}
		}) {
			name := fmt.Sprintf("remote-secret %s/%s[%s]", s.Namespace, s.Name, key)
			remedy := fmt.Sprintf("make it again: horizon create-remote-secret --context <%s's context> --name %s > s.yaml; kubectl --context %s apply -f s.yaml", key, key, primary)
			rs = append(rs, checkRemoteKubeconfig(ctx, name, remedy, s.Data[key], contexts[key]))
		}
	}
	return rs
}

func checkRemoteKubeconfig(ctx context.Context, name, remedy string, data []byte, sameCluster *rest.Config) checkResult {
	cfg, err := remote.ParseKubeconfig(data, false)
	if err != nil {
		return fail(name, remedy, "refused as discovery refuses it: %v", err)
	}
	cfg.Timeout = 10 * time.Second
	rc, who, err := selfReview(ctx, cfg)
	if err != nil && !apierrors.IsUnauthorized(err) && sameCluster != nil {
		// Not reachable from here: the same credentials at the context's
		// address, verified with the context's CA.
		alt := rest.CopyConfig(cfg)
		alt.Host = sameCluster.Host
		alt.TLSClientConfig.CAData, alt.TLSClientConfig.CAFile = sameCluster.TLSClientConfig.CAData, sameCluster.TLSClientConfig.CAFile
		alt.TLSClientConfig.ServerName = sameCluster.TLSClientConfig.ServerName
		if rc2, who2, err2 := selfReview(ctx, alt); err2 == nil || apierrors.IsUnauthorized(err2) {
			rc, who, err, cfg = rc2, who2, err2, alt
		}
	}
	if err != nil {
		if apierrors.IsUnauthorized(err) {
			return fail(name, remedy, "API server %s does not authenticate its credentials (revoked token or deleted service account?): %v", cfg.Host, err)
		}
		return fail(name, "check that "+cfg.Host+" is reachable from here and from discovery (a kubeconfig context named as the key is tried too)", "API server %s: %v", cfg.Host, err)
	}
	user := who.Status.UserInfo.Username
	var missing, extra []string
	for _, need := range discoveryNeeds {
		for _, verb := range []string{"list", "watch"} {
			a := need
			a.Verb = verb
			if allowed, err := canI(ctx, rc, a); err != nil {
				return accessReviewFailed(name, remedy, cfg.Host, err)
			} else if !allowed {
				missing = append(missing, verb+" "+accessName(a))
			}
		}
	}
	for _, a := range beyondNeeds {
		if allowed, err := canI(ctx, rc, a); err != nil {
			return accessReviewFailed(name, remedy, cfg.Host, err)
		} else if allowed {
			extra = append(extra, a.Verb+" "+accessName(a))
		}
	}
	switch {
	case len(missing) > 0:
		return fail(name, remedy+" (it binds the horizon-reader ClusterRole)", "%s at %s cannot %s", user, cfg.Host, strings.Join(missing, ", "))
	case len(extra) > 0:
		return fail(name, "bind only the horizon-reader ClusterRole to its service account ("+remedy+")", "%s at %s can %s: more than discovery needs", user, cfg.Host, strings.Join(extra, ", "))
	}
	return pass(name, "%s at %s: authenticated; can list and watch what discovery reads, nothing more", user, cfg.Host)
}

func accessName(a authzv1.ResourceAttributes) string {
	if a.Group == "" {
		return a.Resource
	}
	return a.Resource + "." + a.Group
}

func canI(ctx context.Context, cs kubernetes.Interface, a authzv1.ResourceAttributes) (bool, error) {
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}

// checkDiscovery asks discovery, in its pod, how its clusters are, whether
// meshNetworks is valid, and whether every network with endpoints has a
// gateway.
func checkDiscovery(ctx context.Context, p *checkCluster, f checkFlags) []checkResult {
	pf := proxyConfigFlags{istioNamespace: f.istioNamespace, opsPort: f.opsPort}
	disc, err := pf.discovery(ctx, p.acc)
	if err != nil {
		return []checkResult{fail("discovery", fmt.Sprintf("install it: horizon install --context %s ... (docs/install.md)", p.name), "%v", err)}
	}
	b, err := disc.get(ctx, "/debug/clusters")
	if err != nil {
		return []checkResult{fail("discovery", fmt.Sprintf("kubectl --context %s -n %s logs %s", p.name, f.istioNamespace, disc.pod), "%v", err)}
	}
	var st struct {
		Clusters          []controlplane.ClusterStatus `json:"clusters"`
		MeshNetworksError string                       `json:"meshNetworksError"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return []checkResult{fail("discovery", "", "%s: /debug/clusters: %v", disc.pod, err)}
	}
	var rs []checkResult
	for _, c := range st.Clusters {
		name := "discovery cluster " + c.ID
		switch {
		case c.Error != "":
			rs = append(rs, fail(name, "see the remote-secret checks above; discovery's log names the cause", "%s: %s", c.Source, c.Error))
		case !c.Synced:
			rs = append(rs, fail(name, "wait, or see discovery's log: its API server may be unreachable from discovery", "%s: not synced", c.Source))
		default:
			rs = append(rs, pass(name, "%s: synced", c.Source))
		}
	}
	if st.MeshNetworksError != "" {
		rs = append(rs, fail("meshNetworks", "fix the meshNetworks ConfigMap (discovery keeps serving the last valid one)", "%s", st.MeshNetworksError))
	} else {
		rs = append(rs, pass("meshNetworks", "valid (or none)"))
	}
	b, err = disc.get(ctx, "/debug/topology")
	if err != nil {
		return append(rs, fail("gateways", "", "%v", err))
	}
	var top topology.Topology
	if err := json.Unmarshal(b, &top); err != nil {
		return append(rs, fail("gateways", "", "%s: /debug/topology: %v", disc.pod, err))
	}
	if ps := top.Problems(); len(ps) > 0 {
		rs = append(rs, fail("gateways", "install the network's gateway (horizon install --gateway) and wait for its LoadBalancer address, or give meshNetworks an address for it",
			"%s", strings.Join(ps, "; ")))
	} else {
		var n []string
		for _, net := range top.Networks {
			if len(net.Gateways) > 0 {
				n = append(n, fmt.Sprintf("%s: %d", net.Name, len(net.Gateways)))
			}
		}
		rs = append(rs, pass("gateways", "every network with endpoints has a gateway (%s)", join(n)))
	}
	return rs
}

func join(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// checkWebhook: the cluster's injection webhook answers TLS, as the API
// server would reach it, with a certificate its caBundle verifies for the
// Service's name.
func checkWebhook(ctx context.Context, c checkCluster) []checkResult {
	name := "webhook " + c.name
	wh, err := c.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return []checkResult{pass(name, "no %s (injection is off in this cluster)", install.WebhookName)}
	}
	if err != nil {
		return []checkResult{fail(name, "", "MutatingWebhookConfiguration %s: %v", install.WebhookName, err)}
	}
	var rs []checkResult
	for _, w := range wh.Webhooks {
		n := name + " " + w.Name
		svc := w.ClientConfig.Service
		if svc == nil {
			rs = append(rs, pass(n, "a URL webhook (%s): not checked", deref(w.ClientConfig.URL)))
			continue
		}
		rs = append(rs, checkWebhookService(ctx, c, n, svc.Namespace, svc.Name, portOr(svc.Port, 443), w.ClientConfig.CABundle))
	}
	return rs
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func portOr(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

func checkWebhookService(ctx context.Context, c checkCluster, name, ns, svcName string, port int32, caBundle []byte) checkResult {
	restart := fmt.Sprintf("kubectl --context %s -n %s rollout restart deploy -l app (the webhook's server rewrites its caBundle when it starts); see its log", c.name, ns)
	svc, err := c.cs.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		return fail(name, "install it again (horizon install)", "Service %s/%s: %v", ns, svcName, err)
	}
	target := intstr.FromInt32(port)
	for _, sp := range svc.Spec.Ports {
		if sp.Port == port {
			target = sp.TargetPort
		}
	}
	pod, err := c.acc.runningPod(ctx, ns, labels.Set(svc.Spec.Selector).String(), "Service "+ns+"/"+svcName)
	if err != nil {
		return fail(name, restart, "%v", err)
	}
	tp := target.IntValue()
	if target.Type == intstr.String {
		tp = namedPort(pod, target.StrVal)
	}
	if tp == 0 {
		tp = int(port)
	}
	if len(caBundle) == 0 {
		return fail(name, restart, "empty caBundle: the API server cannot verify the webhook")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		return fail(name, restart, "caBundle holds no PEM certificate")
	}
	local, stop, err := c.acc.forward(ctx, pod, tp)
	if err != nil {
		return fail(name, restart, "not reachable: %v", err)
	}
	defer stop()
	serverName := svcName + "." + ns + ".svc"
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", local))
	if err != nil {
		return fail(name, restart, "pod %s/%s port %d (%s): TLS with the caBundle: %v", pod.Namespace, pod.Name, tp, serverName, err)
	}
	_ = conn.Close()
	return pass(name, "pod %s/%s answers TLS for %s; the caBundle verifies it", pod.Namespace, pod.Name, serverName)
}

func namedPort(pod *corev1.Pod, name string) int {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return int(p.ContainerPort)
			}
		}
	}
	return 0
}

// checkClock compares the API server's Date header with this machine's
// clock at the middle of the request.
func checkClock(ctx context.Context, c checkCluster, maxSkew time.Duration) checkResult {
	name := "clock " + c.name
	hc, err := rest.HTTPClientFor(c.cfg)
	if err != nil {
		return fail(name, "", "%v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.cfg.Host, "/")+"/version", nil)
	if err != nil {
		return fail(name, "", "%v", err)
	}
	before := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return fail(name, "check that the API server is reachable", "%s: %v", c.cfg.Host, err)
	}
	after := time.Now()
	_ = resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return fail(name, "", "%s: no Date header: %v", c.cfg.Host, err)
	}
	mid := before.Add(after.Sub(before) / 2)
	// Date has whole seconds: half a second either way is rounding.
	skew := date.Sub(mid.Truncate(time.Second))
	if skew.Abs() > maxSkew+time.Second {
		return fail(name, "synchronise the clocks (NTP) of the API server's and this machine's hosts: certificates and tokens are checked against them",
			"%s is %s off this machine's clock (more than %s)", c.cfg.Host, skew.Round(time.Second), maxSkew)
	}
	return pass(name, "%s within %s of this machine's clock", c.cfg.Host, maxSkew)
}

// selfReview asks the API server of cfg who its credentials are.
func selfReview(ctx context.Context, cfg *rest.Config) (kubernetes.Interface, *authnv1.SelfSubjectReview, error) {
	rc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	who, err := rc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	return rc, who, err
}

func accessReviewFailed(name, remedy, host string, err error) checkResult {
	if apierrors.IsUnauthorized(err) { // revoked between the two calls
		return fail(name, remedy, "API server %s does not authenticate its credentials (revoked token or deleted service account?): %v", host, err)
	}
	return fail(name, remedy, "API server %s: access review: %v", host, err)
}
