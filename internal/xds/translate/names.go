// Package translate turns the mesh model into Envoy xDS resources. It is a
// pure function of its inputs, so `horizon translate` runs it offline and the
// live server runs the same code once per view.
package translate

import (
	"fmt"
	"strconv"
	"strings"
)

// ClusterName is the Envoy cluster of a service port: outbound|PORT||HOST.
func ClusterName(port uint32, host string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "||" + host
}

// ParseClusterName splits outbound|PORT||HOST into its port and host.
func ParseClusterName(name string) (port uint32, host string, err error) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" || parts[2] != "" || parts[3] == "" {
		return 0, "", fmt.Errorf("cluster name %q is not of the form outbound|PORT||HOST", name)
	}
	p, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil || p == 0 {
		return 0, "", fmt.Errorf("cluster name %q: invalid port %q", name, parts[1])
	}
	return uint32(p), parts[3], nil
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
