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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.edit(goodKubeconfig)
			_, err := ParseKubeconfig([]byte(data), false)
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.contains)
			}
			if tt.insecure && strings.Contains(err.Error(), "refused") {
				if _, err := ParseKubeconfig([]byte(data), true); err != nil && strings.Contains(err.Error(), "refused") {
					t.Errorf("--allow-insecure-kubeconfig still refuses: %v", err)
				}
			}
		})
	}
}
