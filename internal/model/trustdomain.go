package model

import (
	"fmt"
	"strings"

	"github.com/horizonmesh/horizon/internal/clip"
)

// MaxTrustDomainLength bounds a trust domain as Istio bounds a DNS name.
const MaxTrustDomainLength = 255

// ValidateTrustDomain returns why td cannot be a SPIFFE trust domain, or
// nil. The rule is Istio's (mesh config trustDomain): dot-separated DNS
// labels of letters, digits and '-' (not first or last), at most 63 bytes
// each; the last label may be empty (a trailing dot); and at most 255
// bytes in all. So no '/', quote, space, ':', '@' or '_': a trust domain
// becomes the host of every workload's spiffe:// URI, which clients parse.
func ValidateTrustDomain(td string) error {
	switch {
	case td == "":
		return fmt.Errorf("trust domain is empty")
	case len(td) > MaxTrustDomainLength:
		return fmt.Errorf("invalid trust domain %s: longer than %d bytes", clip.Quote(td), MaxTrustDomainLength)
	}
	labels := strings.Split(td, ".")
	for i, l := range labels {
		if l == "" && i == len(labels)-1 && i > 0 {
			break // "cluster.local.": a fully qualified name
		}
		if !dnsLabel(l) {
			return fmt.Errorf("invalid trust domain %s: label %s is not a DNS label (letters, digits and '-' not at either end, 1 to 63 of them, labels separated by '.')",
				clip.Quote(td), clip.Quote(l))
		}
	}
	return nil
}

func dnsLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := range len(l) {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
