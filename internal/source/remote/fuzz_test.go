package remote

import (
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// safeToReadFiles reports whether every tokenFile a kubeconfig names is
// absent or a small regular file: with --allow-insecure-kubeconfig the
// client reads it, and a fuzzed /dev/zero or FIFO must not hang the fuzzer.
func safeToReadFiles(data []byte) bool {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return true
	}
	for _, u := range cfg.AuthInfos {
		if u == nil || u.TokenFile == "" {
			continue
		}
		if fi, err := os.Stat(u.TokenFile); err == nil && (!fi.Mode().IsRegular() || fi.Size() > 1<<20) {
			return false
		}
	}
	return true
}

// FuzzParseKubeconfig feeds kubeconfigs from a Secret's data to
// ParseKubeconfig. Invariants: no panic; deterministic; a kubeconfig
// accepted without --allow-insecure-kubeconfig yields a client config that
// runs no program and reads no file of the control plane's host (no exec or
// auth-provider plugin, no token, certificate, key or CA file) and is
// accepted the same with the flag; one accepted only with the flag is
// refused with a message naming the flag; an accepted config has a host;
// one accepted without the flag has no proxy and dials its server over TLS.
func FuzzParseKubeconfig(f *testing.F) {
	for _, seed := range []string{
		goodKubeconfig,
		"",
		"clusters: [",
		strings.Replace(goodKubeconfig, "token: abc.def", "exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}", 1),
		strings.Replace(goodKubeconfig, "token: abc.def", "auth-provider: {name: oidc, config: {idp-issuer-url: 'https://x'}}", 1),
		strings.Replace(goodKubeconfig, "token: abc.def", "tokenFile: /etc/shadow", 1),
		strings.Replace(goodKubeconfig, "token: abc.def", "client-certificate: /root/.kube/cert\n    client-key: /root/.kube/key", 1),
		strings.Replace(goodKubeconfig, "certificate-authority-data: ", "certificate-authority: /etc/ca.crt\n    x-unused: ", 1),
		strings.Replace(goodKubeconfig, "current-context: remote", "", 1),
		strings.Replace(goodKubeconfig, "user: istio-multi}", "user: \"\"}", 1),
		// Files named by another context than the current one are never read.
		goodKubeconfig + "- name: other\n  user: {tokenFile: /etc/shadow, exec: {command: /bin/sh}}\n",
		`{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://[::1]:6443","insecure-skip-tls-verify":true,"proxy-url":"socks5://127.0.0.1:1080"}}],"contexts":[{"name":"x","context":{"cluster":"c","user":""}}],"users":[{"name":"","user":{"tokenFile":"/etc/passwd"}}]}`,
		"apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://%zz'}}]\ncontexts: [{name: x, context: {cluster: c}}]\n",
		"apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://h', certificate-authority-data: bm90IGEgY2VydA==}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: ns}}]\nusers: [{name: u, user: {username: a, password: b, as: admin, as-groups: [system:masters]}}]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		strict, errStrict := ParseKubeconfig(data, false)
		strict2, errStrict2 := ParseKubeconfig(data, false)
		if (errStrict == nil) != (errStrict2 == nil) || (errStrict != nil && errStrict.Error() != errStrict2.Error()) {
			t.Fatalf("not deterministic: %v, then %v", errStrict, errStrict2)
		}
		if (strict == nil) != (errStrict != nil) {
			t.Fatalf("config %v with error %v", strict, errStrict)
		}
		if c := strict; c != nil {
			switch {
			case c.Host != strict2.Host:
				t.Fatalf("not deterministic: host %q then %q", c.Host, strict2.Host)
			case c.ExecProvider != nil:
				t.Fatalf("accepted with an exec plugin: %+v", c.ExecProvider)
			case c.AuthProvider != nil:
				t.Fatalf("accepted with an auth-provider: %+v", c.AuthProvider)
			case c.BearerTokenFile != "":
				t.Fatalf("accepted with a token file %q", c.BearerTokenFile)
			case c.CertFile != "" || c.KeyFile != "" || c.CAFile != "":
				t.Fatalf("accepted with file paths: cert %q key %q CA %q", c.CertFile, c.KeyFile, c.CAFile)
			case c.Host == "":
				t.Fatal("accepted without a server")
			case c.Proxy != nil:
				t.Fatal("accepted with a proxy")
			}
			if u, _, err := rest.DefaultServerUrlFor(c); err != nil || u.Scheme != "https" {
				t.Fatalf("accepted a server not dialled over TLS: %q (%v)", c.Host, err)
			}
		}
		if !safeToReadFiles(data) {
			return
		}
		loose, errLoose := ParseKubeconfig(data, true)
		if (loose == nil) != (errLoose != nil) {
			t.Fatalf("config %v with error %v", loose, errLoose)
		}
		switch {
		case strict != nil && errLoose != nil:
			t.Fatalf("accepted strictly but refused with --allow-insecure-kubeconfig: %v", errLoose)
		case strict != nil && (loose.Host != strict.Host || loose.BearerToken != strict.BearerToken):
			t.Fatalf("the flag changed the config: host %q/%q", strict.Host, loose.Host)
		case strict == nil && loose != nil && !strings.Contains(errStrict.Error(), "--allow-insecure-kubeconfig"):
			t.Fatalf("refused only without the flag, but the error does not say so: %v", errStrict)
		case loose != nil && loose.Host == "":
			t.Fatal("accepted without a server")
		}
	})
}
