package bootstrap

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// With no webhook configuration (installed with injectionWebhook: false,
// or left out of the applied manifest) discovery never creates one: it
// only looks for it, says so once at info level, and warns of nothing.
func TestKeepCABundleNeverCreatesTheWebhookConfiguration(t *testing.T) {
	client := fake.NewClientset()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	keepCABundle(ctx, client, []byte("-----BEGIN CERTIFICATE-----\n"), log)
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("discovery did %s %s; want only get", a.GetVerb(), a.GetResource().Resource)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n > 1 || strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("logs for an absent webhook configuration:\n%s", logs.String())
	}
}
