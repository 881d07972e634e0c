// Package remote follows the Secrets through which remote clusters join the
// mesh: each Secret labelled istio/multiCluster=true in the control plane's
// namespace holds, per data key, a kubeconfig whose key is the cluster ID —
// exactly what the walkthrough's `kubectl create secret generic ...
// --from-file remote_kubecfg` makes.
package remote

import (
	"errors"
	"fmt"
	"sort"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/horizonmesh/horizon/internal/clip"
)

// ParseKubeconfig validates kubeconfig bytes from a Secret and returns the
// client config of its current context. Unless allowInsecure is set it
// refuses kubeconfigs that would run programs or read files on the control
// plane's host: exec and auth-provider plugins, tokenFile, and certificate,
// key or CA file paths (inline *-data fields are fine); and those that
// would send discovery's watches, and the credentials with them, anywhere
// but over TLS to the API server: a proxy-url, or a server that is not
// https (http://, or no scheme and no TLS settings, which client-go dials
// in the clear). A Secret is data from whoever can write Secrets in the
// namespace; it must not become a way to run code, read the control
// plane's own credentials or see its traffic.
func ParseKubeconfig(data []byte, allowInsecure bool) (*rest.Config, error) {
	if len(data) == 0 {
		return nil, errors.New("kubeconfig is empty")
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig does not parse: %w", err)
	}
	ctxName := cfg.CurrentContext
	if ctxName == "" {
		if len(cfg.Contexts) != 1 {
			return nil, fmt.Errorf("kubeconfig has no current-context and %d contexts", len(cfg.Contexts))
		}
		for name := range cfg.Contexts {
			ctxName = name
		}
	}
	kctx, ok := cfg.Contexts[ctxName]
	if !ok {
		return nil, fmt.Errorf("kubeconfig: current-context %q is not defined", ctxName)
	}
	cluster, ok := cfg.Clusters[kctx.Cluster]
	if !ok {
		return nil, fmt.Errorf("kubeconfig: context %q names cluster %q, which is not defined", ctxName, kctx.Cluster)
	}
	if cluster.Server == "" {
		return nil, fmt.Errorf("kubeconfig: cluster %q has no server", kctx.Cluster)
	}
	user := cfg.AuthInfos[kctx.AuthInfo]
	if user == nil && kctx.AuthInfo != "" {
		return nil, fmt.Errorf("kubeconfig: context %q names user %q, which is not defined", ctxName, kctx.AuthInfo)
	}
	clusterName := clip.String(kctx.Cluster) // names in messages: the Secret's data may be of any size
	tls, err := overTLS(cluster, user)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: clusters[%s].server %s: %w", clusterName, clip.Quote(cluster.Server), err)
	}
	if !allowInsecure {
		problems := insecureFields(cluster, user, clusterName, clip.String(kctx.AuthInfo))
		if !tls {
			problems = append(problems, fmt.Sprintf("clusters[%s].server (%s is not dialled over TLS: watches and credentials would go in the clear)",
				clusterName, clip.Quote(cluster.Server)))
		}
		if len(problems) > 0 {
			sort.Strings(problems)
			return nil, fmt.Errorf("kubeconfig refused (set --allow-insecure-kubeconfig to accept): %v", problems)
		}
	}
	// Only the current context: a kubeconfig with other contexts must not
	// make the client read their files either.
	minimal := clientcmdapi.NewConfig()
	minimal.Clusters[kctx.Cluster] = cluster
	if user != nil {
		minimal.AuthInfos[kctx.AuthInfo] = user
	}
	minimal.Contexts[ctxName] = kctx
	minimal.CurrentContext = ctxName
	rc, err := clientcmd.NewDefaultClientConfig(*minimal, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return rc, nil
}

// overTLS reports whether client-go will dial the cluster's server over
// TLS: an https:// server, or one without a scheme when TLS is configured
// (rest.DefaultServerUrlFor decides; no file is read to find out).
func overTLS(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) (bool, error) {
	probe := &rest.Config{Host: c.Server, TLSClientConfig: rest.TLSClientConfig{
		CAFile: c.CertificateAuthority, CAData: c.CertificateAuthorityData, Insecure: c.InsecureSkipTLSVerify}}
	if u != nil {
		probe.CertFile, probe.CertData = u.ClientCertificate, u.ClientCertificateData
	}
	server, _, err := rest.DefaultServerUrlFor(probe)
	if err != nil {
		return false, err
	}
	return server.Scheme == "https", nil
}

func insecureFields(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo, clusterName, userName string) []string {
	var out []string
	if c.CertificateAuthority != "" {
		out = append(out, fmt.Sprintf("clusters[%s].certificate-authority (a file path)", clusterName))
	}
	if c.ProxyURL != "" {
		out = append(out, fmt.Sprintf("clusters[%s].proxy-url (%s: watches and credentials would go through it)", clusterName, clip.Quote(c.ProxyURL)))
	}
	if u != nil {
		checks := map[string]bool{
			"exec":                      u.Exec != nil,
			"auth-provider":             u.AuthProvider != nil,
			"tokenFile":                 u.TokenFile != "",
			"client-certificate (file)": u.ClientCertificate != "",
			"client-key (file)":         u.ClientKey != "",
		}
		for field, bad := range checks {
			if bad {
				out = append(out, fmt.Sprintf("users[%s].%s", userName, field))
			}
		}
	}
	sort.Strings(out)
	return out
}
