package bootstrap

import (
	"errors"
	"strings"
	"testing"
)

// A trust domain Istio would refuse ('td/x', 'evil"domain': every
// workload's spiffe:// URI, and discovery's own certificate, would be
// unparseable) stops discovery before anything starts, naming the flag;
// the error quotes a value of any size by its first bytes only. The other
// commands' check: cli.TestTrustDomainIsValidatedEverywhere.
func TestTrustDomainIsValidated(t *testing.T) {
	for _, td := range []string{"td/x", `evil"domain`, "a b", "", strings.Repeat("x", 100<<10)} {
		c := DefaultConfig()
		c.TrustDomain = td
		err := c.Validate()
		var ue UsageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "--trust-domain") {
			t.Errorf("discovery --trust-domain %.20q: %v, want a usage error naming --trust-domain", td, err)
		} else if len(err.Error()) > 512 {
			t.Errorf("discovery --trust-domain of %d bytes: error of %d bytes", len(td), len(err.Error()))
		}
	}
	c := DefaultConfig()
	c.TrustDomain = "example.com"
	if err := c.Validate(); err != nil {
		t.Errorf("discovery --trust-domain example.com: %v", err)
	}
}
