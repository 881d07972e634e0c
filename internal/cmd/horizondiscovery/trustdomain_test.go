package horizondiscovery

import (
	"bytes"
	"strings"
	"testing"
)

// A trust domain Istio would refuse ('td/x', 'evil"domain': every
// workload's spiffe:// URI, and discovery's own certificate, would be
// unparseable) stops discovery and the injector before anything starts or
// is printed, naming the flag (exit 2); the error quotes a value of any
// size by its first bytes only. Manifest generate and translate:
// cli.TestTrustDomainIsValidatedEverywhere.
func TestTrustDomainIsValidated(t *testing.T) {
	for _, td := range []string{"td/x", `evil"domain`, "a b", "", strings.Repeat("x", 100<<10)} {
		for _, args := range [][]string{
			{"discovery", "--trust-domain", td},
			{"injector", "--trust-domain", td, "--discovery-address", "203.0.113.10:15443"},
		} {
			var out, errb bytes.Buffer
			code := Run(args, &out, &errb)
			if code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "--trust-domain") || errb.Len() > 2048 {
				t.Errorf("%s --trust-domain %.20q: exit %d, stdout %d bytes, stderr %.300q; want exit 2, nothing printed, a short error naming --trust-domain",
					args[0], td, code, out.Len(), errb.String())
			}
		}
	}
}

// --default-mtls-mode takes PERMISSIVE or STRICT; anything else (DISABLE
// included: mesh-wide plaintext is a PeerAuthentication's to say) stops
// discovery before anything starts, naming the flag.
func TestDefaultMTLSModeIsValidated(t *testing.T) {
	for _, mode := range []string{"DISABLE", "strict", "", "UNSET"} {
		var out, errb bytes.Buffer
		code := Run([]string{"discovery", "--default-mtls-mode", mode}, &out, &errb)
		if code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "--default-mtls-mode") {
			t.Errorf("--default-mtls-mode %q: exit %d, stderr %.300q; want a usage error naming the flag", mode, code, errb.String())
		}
	}
}

// The program holds discovery, the injector and version, and nothing of
// the CLI.
func TestCommands(t *testing.T) {
	var got []string
	for _, c := range NewRootCommand(nil, nil).Commands() {
		got = append(got, c.Name())
	}
	if strings.Join(got, " ") != "completion discovery help injector version" && strings.Join(got, " ") != "discovery injector version" {
		t.Errorf("commands %v, want discovery, injector, version", got)
	}
}
