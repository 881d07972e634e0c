package cli

import (
	"strings"
	"testing"
)

// A trust domain Istio would refuse ('td/x', 'evil"domain': every
// workload's spiffe:// URI, and discovery's own certificate, would be
// unparseable) stops manifest generate/install and translate before
// anything starts or is printed, naming the flag (exit 2); the error quotes
// a value of any size by its first bytes only. Discovery and the injector:
// horizondiscovery.TestTrustDomainIsValidated; discovery's Config:
// bootstrap.TestTrustDomainIsValidated.
func TestTrustDomainIsValidatedEverywhere(t *testing.T) {
	for _, td := range []string{"td/x", `evil"domain`, "a b", "", strings.Repeat("x", 100<<10)} {
		for _, args := range [][]string{
			{"manifest", "generate", "--trust-domain", td},
			{"translate", "--cluster", "cluster1=" + walkthrough + "/cluster1", "--proxy-network", "", "--trust-domain", td},
		} {
			code, out, errOut := run(t, args...)
			flag := "--trust-domain"
			if args[0] == "manifest" {
				flag = "trustDomain"
			}
			if code != 2 || out != "" || !strings.Contains(errOut, flag) || len(errOut) > 2048 {
				t.Errorf("%s %s --trust-domain %.20q: exit %d, stdout %d bytes, stderr %.300q; want exit 2, nothing printed, a short error naming %s",
					args[0], args[1], td, code, len(out), errOut, flag)
			}
		}
	}
}
