package remote

import (
	"strings"
	"testing"
)

const goodKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: remote
  cluster:
    server: https://203.0.113.5:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkekNDQVIyZ0F3SUJBZ0lCQURBS0JnZ3Foa2pPUFFRREFqQWpNU0V3SHdZRFZRUUREQmhyTTNNdGMyVnkKZG1WeUxXTmhRREUyTURBd01EQXdNREF3SGhjTk1qQXdNVEF4TURBd01EQXdXaGNOTXpBd01UQXhNREF3TURBdwpXakFqTVNFd0h3WURWUVFEREJock0zTXRjMlZ5ZG1WeUxXTmhRREUyTURBd01EQXdNREF3V1RBVEJnY3Foa2pPClBRSUJCZ2dxaGtqT1BRTUJCd05DQUFUYlJJUnJZVzFGNVE9PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
contexts:
- name: remote
  context: {cluster: remote, user: istio-multi}
current-context: remote
users:
- name: istio-multi
  user:
    token: abc.def
`

func TestParseKubeconfig(t *testing.T) {
	cfg, err := ParseKubeconfig([]byte(goodKubeconfig), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://203.0.113.5:6443" || cfg.BearerToken != "abc.def" {
		t.Errorf("config = host %q token %q", cfg.Host, cfg.BearerToken)
	}

	tests := []struct {
		name     string
		edit     func(string) string
		insecure bool // accepted with --allow-insecure-kubeconfig
		contains string
	}{
		{"empty", func(string) string { return "" }, false, "empty"},
		{"not yaml", func(string) string { return "clusters: [" }, false, "does not parse"},
		{"no such context", func(s string) string {
			return strings.Replace(s, "current-context: remote", "current-context: other", 1)
		}, false, `"other" is not defined`},
		{"no server", func(s string) string {
			return strings.Replace(s, "server: https://203.0.113.5:6443", "server: \"\"", 1)
		}, false, "no server"},
		{"exec plugin", func(s string) string {
			return strings.Replace(s, "token: abc.def", "exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}", 1)
		}, true, "users[istio-multi].exec"},
		{"auth provider", func(s string) string {
			return strings.Replace(s, "token: abc.def", "auth-provider: {name: gcp}", 1)
		}, true, "auth-provider"},
		{"token file", func(s string) string { return strings.Replace(s, "token: abc.def", "tokenFile: /etc/shadow", 1) }, true, "tokenFile"},
		{"client cert file", func(s string) string {
			return strings.Replace(s, "token: abc.def", "client-certificate: /root/.kube/cert\n    client-key: /root/.kube/key", 1)
		}, true, "client-certificate"},
		{"CA file", func(s string) string {
			return strings.Replace(s, "certificate-authority-data: ", "certificate-authority: /etc/ca.crt\n    x-unused: ", 1)
		}, true, "certificate-authority"},
		// Discovery's watches (and the token) through a proxy of the
		// Secret's choosing, or in the clear.
		{"proxy-url", func(s string) string {
			return strings.Replace(s, "server: https://203.0.113.5:6443", "server: https://203.0.113.5:6443\n    proxy-url: http://198.51.100.1:3128", 1)
		}, true, "clusters[remote].proxy-url"},
		{"socks proxy-url", func(s string) string {
			return strings.Replace(s, "server: https://203.0.113.5:6443", "server: https://203.0.113.5:6443\n    proxy-url: socks5://198.51.100.1:1080", 1)
		}, true, "clusters[remote].proxy-url"},
		{"http server", func(s string) string {
			return strings.Replace(s, "server: https://203.0.113.5:6443", "server: http://203.0.113.5:8080", 1)
		}, true, "clusters[remote].server"},
		{"HTTP server upper case", func(s string) string {
			return strings.Replace(s, "server: https://203.0.113.5:6443", "server: HTTP://203.0.113.5:8080", 1)
		}, true, "clusters[remote].server"},
		{"no scheme, no TLS settings", func(s string) string {
			s = strings.Replace(s, "server: https://203.0.113.5:6443", "server: 203.0.113.5:8080", 1)
			return strings.Replace(s, "certificate-authority-data: ", "x-unused: ", 1)
		}, true, "clusters[remote].server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.edit(goodKubeconfig)
			_, err := ParseKubeconfig([]byte(data), false)
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.contains)
			}
			if tt.insecure && !strings.Contains(err.Error(), "--allow-insecure-kubeconfig") {
				t.Errorf("refused without naming --allow-insecure-kubeconfig: %v", err)
			}
			if tt.insecure && strings.Contains(err.Error(), "refused") {
				if _, err := ParseKubeconfig([]byte(data), true); err != nil && strings.Contains(err.Error(), "refused") {
					t.Errorf("--allow-insecure-kubeconfig still refuses: %v", err)
				}
			}
		})
	}
	// A server without a scheme is dialled over TLS when TLS is configured
	// (the CA inline): accepted.
	if _, err := ParseKubeconfig([]byte(strings.Replace(goodKubeconfig, "server: https://203.0.113.5:6443", "server: 203.0.113.5:6443", 1)), false); err != nil {
		t.Errorf("server without a scheme, CA inline: %v", err)
	}
}
