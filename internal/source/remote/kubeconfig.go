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
)

// ParseKubeconfig validates kubeconfig bytes from a Secret and returns the
// client config of its current context. Unless allowInsecure is set it
// refuses kubeconfigs that would run programs or read files on the control
// plane's host: exec and auth-provider plugins, tokenFile, and certificate,
// key or CA file paths (inline *-data fields are fine). A Secret is data
// from whoever can write Secrets in the namespace; it must not become a way
// to run code or read the control plane's own credentials.
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
	if !allowInsecure {
		if problems := insecureFields(cluster, user, kctx.Cluster, kctx.AuthInfo); len(problems) > 0 {
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

func insecureFields(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo, clusterName, userName string) []string {
	var out []string
	if c.CertificateAuthority != "" {
		out = append(out, fmt.Sprintf("clusters[%s].certificate-authority (a file path)", clusterName))
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
