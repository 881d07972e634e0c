package meshnetworks

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/horizonmesh/horizon/internal/model"
)

// labelValueRE is the Kubernetes label value syntax (without the length
// limit).
var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

// checkNetworkName returns why name cannot be a network name, or "". Network
// names are the values of label topology.istio.io/network.
func checkNetworkName(name string) string {
	const why = "(it is used as the value of label topology.istio.io/network)"
	switch {
	case name == "":
		return "network name must not be empty"
	case len(name) > 63:
		return fmt.Sprintf("invalid network name %q: longer than 63 characters %s", name, why)
	case !labelValueRE.MatchString(name):
		return fmt.Sprintf("invalid network name %q: must be a Kubernetes label value (letters, digits, '-', '_' and '.', starting and ending with a letter or digit) %s", name, why)
	}
	return ""
}

// checkClusterID returns why id cannot be a cluster ID, or "".
func checkClusterID(id string) string {
	if id == "" {
		return "fromRegistry must not be empty"
	}
	if err := model.ValidateClusterID(id); err != nil {
		return err.Error()
	}
	return ""
}

// parseCIDR parses an address prefix (a bare IP is not accepted) and masks
// it.
func parseCIDR(s string) (netip.Prefix, string) {
	if !strings.Contains(s, "/") {
		return netip.Prefix{}, fmt.Sprintf("invalid CIDR %q: missing /prefix-length (e.g. 10.0.0.0/16, or %s/32 for one address)", s, s)
	}
	prefix, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("invalid CIDR %q: %v", s, err)
	}
	return prefix.Masked(), ""
}

// checkAddress validates a gateway address: an IP or a DNS name. It returns
// the address to use (IPs in canonical form), whether it is the unspecified
// address (0.0.0.0 or ::, the "no gateway yet" placeholder), and an error
// message or "".
func checkAddress(s string) (addr string, placeholder bool, msg string) {
	if s == "" {
		return s, false, "address must not be empty"
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		if ip.Zone() != "" {
			return s, false, fmt.Sprintf("invalid address %q: an IPv6 zone is not allowed", s)
		}
		return ip.String(), ip.Unmap().IsUnspecified(), ""
	} else if strings.Trim(s, "0123456789.") == "" || strings.Contains(s, ":") {
		return s, false, fmt.Sprintf("invalid IP address %q: %v", s, err)
	}
	if why := dnsNameError(s); why != "" {
		return s, false, fmt.Sprintf("invalid address %q: neither an IP address nor a DNS name: %s", s, why)
	}
	return s, false, ""
}

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// dnsNameError returns why s is not an RFC 1123 DNS subdomain (lower case),
// or "". It also rejects an all-digit last label, so that a mistyped IPv4
// address is not taken for a name.
func dnsNameError(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > 253:
		return "longer than 253 characters"
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return "has an empty label (leading, trailing or double dot)"
		case len(l) > 63:
			return fmt.Sprintf("label %q is longer than 63 characters", l)
		case !dnsLabelRE.MatchString(l):
			return fmt.Sprintf("label %q must consist of lower-case letters, digits and '-', and start and end with a letter or digit", l)
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return fmt.Sprintf("last label %q must not be all digits", last)
	}
	return ""
}

// dropSharedRegistries enforces that a cluster belongs to one network: the
// first network by name (nets is sorted) keeps it, the others lose it with a
// warning.
func (p *parser) dropSharedRegistries(nets []*network) {
	owner := map[model.ClusterID]string{}
	for _, n := range nets {
		var kept []model.ClusterID
		var keptField []string
		for i, id := range n.cfg.Registries {
			if first, taken := owner[id]; taken {
				p.warnf(n.object, n.regField[i], "cluster %q is also in network %q; a cluster belongs to one network, so network %q (first by name) keeps it and network %q does not", id, first, first, n.cfg.Name)
				continue
			}
			owner[id] = n.cfg.Name
			kept = append(kept, id)
			keptField = append(keptField, n.regField[i])
		}
		n.cfg.Registries, n.regField = kept, keptField
	}
}
