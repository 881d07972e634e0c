package labnode

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// mapTCPEcho runs helloworld tcp-echo for Istio's TCP echo sample image,
// whose arguments are the port and the prefix of the answers
// (samples/tcp-echo: args ["9000", "hello"]). One port only.
func mapTCPEcho(c *corev1.Container, p Programs) (Program, error) {
	if p.Helloworld == "" {
		return Program{}, &ImageError{c.Image, "no helloworld program configured (it serves tcp-echo)"}
	}
	if len(c.Command) > 0 || len(c.Args) != 2 {
		return Program{}, &ImageError{c.Image, "the lab runs it with args [PORT, PREFIX] only (helloworld tcp-echo)"}
	}
	port := c.Args[0]
	if strings.Contains(port, ",") {
		return Program{}, &ImageError{c.Image, fmt.Sprintf("ports %q: the lab's tcp-echo serves one port", port)}
	}
	return Program{Image: "helloworld", Argv: []string{p.Helloworld, "tcp-echo", "-addr", ":" + port, "-prefix", c.Args[1]}}, nil
}

// mapAgnhost runs helloworld grpc-health for Kubernetes' agnhost test
// image's grpc-health-checking command (its --port, default 5000; not its
// HTTP control port): the standard gRPC health service, SERVING.
func mapAgnhost(c *corev1.Container, p Programs) (Program, error) {
	args := append(append([]string(nil), c.Command...), c.Args...)
	if len(args) > 0 && (args[0] == "agnhost" || strings.HasSuffix(args[0], "/agnhost")) {
		args = args[1:]
	}
	if len(args) == 0 || args[0] != "grpc-health-checking" {
		return Program{}, &ImageError{c.Image, "the lab runs only its grpc-health-checking command (helloworld grpc-health)"}
	}
	if p.Helloworld == "" {
		return Program{}, &ImageError{c.Image, "no helloworld program configured (it serves grpc-health-checking)"}
	}
	port := "5000"
	for i := 1; i < len(args); i++ {
		a := strings.TrimPrefix(args[i], "-")
		switch {
		case strings.HasPrefix(a, "-port="):
			port = strings.TrimPrefix(a, "-port=")
		case a == "-port" && i+1 < len(args):
			i++
			port = args[i]
		case strings.HasPrefix(a, "-http-port"):
			if !strings.Contains(a, "=") {
				i++
			}
		default:
			return Program{}, &ImageError{c.Image, fmt.Sprintf("grpc-health-checking %s: the lab's takes only --port (and ignores --http-port)", args[i])}
		}
	}
	return Program{Image: "helloworld", Argv: []string{p.Helloworld, "grpc-health", "-addr", ":" + port}}, nil
}
