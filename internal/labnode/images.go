package labnode

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Programs says which local programs stand in for images.
type Programs struct {
	// Discovery is the horizon-discovery program: horizon/discovery*.
	Discovery string
	// Agent is the horizon-agent program: horizon/proxy*.
	Agent string
	// Envoy, when set, runs a container whose command is envoy in a
	// horizon/proxy* image.
	Envoy string
	// Helloworld is the repo's cmd/helloworld binary:
	// istio/examples-helloworld-vN.
	Helloworld string
	// Sleep is the sleep program of the walkthrough's sleep images
	// ("sleep" from PATH by default); PATH must also hold curl.
	Sleep string
	// ClientDir, when set, comes first on the PATH of the sleep images'
	// containers: the lab's clients (helloworld tcp-echo-client,
	// grpc-health-probe) for `kubectl exec`, as curl is.
	ClientDir string
}

// Program is what a container runs: an executable and its arguments
// ($(VAR) references not yet expanded), extra environment the image would
// have set, and the image's default user.
type Program struct {
	Image string // the image's kind: horizon, helloworld, sleep
	Argv  []string
	Env   []corev1.EnvVar
	// UID is the image's default user (nil: root).
	UID *int64
}

// ImageError says that no program stands in for an image: the container
// waits with reason ErrImagePull.
type ImageError struct{ Image, Msg string }

func (e *ImageError) Error() string { return fmt.Sprintf("image %q: %s", e.Image, e.Msg) }

// Known lists the images the lab node runs, for messages.
const Known = "horizon/discovery* (horizon-discovery), horizon/proxy* (horizon-agent), istio/examples-helloworld-vN (helloworld), " +
	"istio/tcp-echo-server (helloworld tcp-echo), e2e-test-images/agnhost grpc-health-checking (helloworld grpc-health), " +
	"curlimages/curl, governmentpaas/curl-ssl, */sleep (sleep, with curl on PATH)"

var helloworldRe = regexp.MustCompile(`^istio/examples-helloworld-(v[0-9]+)$`)

// Repository returns an image reference's repository without registry
// host, tag or digest ("docker.io/library/x:1" → "x").
func Repository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	if i := strings.Index(ref, "/"); i >= 0 {
		host := ref[:i]
		if strings.ContainsAny(host, ".:") || host == "localhost" {
			ref = ref[i+1:]
		}
	}
	return strings.TrimPrefix(ref, "library/")
}

// MapImage returns the program that stands in for container c's image. An
// *ImageError when there is none.
func MapImage(c *corev1.Container, p Programs) (Program, error) {
	repo := Repository(c.Image)
	parts := strings.Split(repo, "/")
	last2 := repo
	if len(parts) > 2 {
		last2 = strings.Join(parts[len(parts)-2:], "/")
	}
	base := parts[len(parts)-1]
	switch {
	case strings.HasPrefix(last2, "horizon/discovery") || strings.HasPrefix(last2, "horizon/proxy"):
		return mapHorizon(c, p, strings.HasPrefix(last2, "horizon/proxy"))
	case helloworldRe.MatchString(last2):
		if p.Helloworld == "" {
			return Program{}, &ImageError{c.Image, "no helloworld program configured"}
		}
		if len(c.Command) > 0 || len(c.Args) > 0 {
			return Program{}, &ImageError{c.Image, "command/args are not supported: the lab runs its helloworld program for this image"}
		}
		v := helloworldRe.FindStringSubmatch(last2)[1]
		return Program{Image: "helloworld", Argv: []string{p.Helloworld, "-addr", ":5000", "-version", v},
			Env: []corev1.EnvVar{{Name: "SERVICE_VERSION", Value: v}}}, nil
	case last2 == "istio/tcp-echo-server":
		return mapTCPEcho(c, p)
	case last2 == "e2e-test-images/agnhost":
		return mapAgnhost(c, p)
	case last2 == "curlimages/curl" || last2 == "governmentpaas/curl-ssl" || base == "sleep":
		sleep := p.Sleep
		if sleep == "" {
			sleep = "sleep"
		}
		cmd := append(append([]string(nil), c.Command...), c.Args...)
		switch {
		case len(cmd) == 0:
			return Program{Image: "sleep", Argv: []string{sleep, "infinity"}}, nil
		case path.Base(cmd[0]) == "sleep":
			return Program{Image: "sleep", Argv: append([]string{sleep}, cmd[1:]...)}, nil
		default:
			return Program{}, &ImageError{c.Image, fmt.Sprintf("command %q is not supported: the lab runs only sleep for this image", cmd[0])}
		}
	}
	return Program{}, &ImageError{c.Image, "the lab node has no program for this image (it runs " + Known + ")"}
}

// imageUID is an image's default user (its USER), nil for root.
func imageUID(image string) *int64 {
	parts := strings.Split(Repository(image), "/")
	if len(parts) >= 2 && parts[len(parts)-2] == "horizon" &&
		(strings.HasPrefix(parts[len(parts)-1], "discovery") || strings.HasPrefix(parts[len(parts)-1], "proxy")) {
		uid := int64(1337)
		return &uid
	}
	return nil
}

// The programs in Horizon's images, as the images name them
// (images.DiscoveryProgram, images.AgentProgram).
const (
	discoveryProgram = "horizon-discovery"
	agentProgram     = "horizon-agent"
)

func mapHorizon(c *corev1.Container, p Programs, proxy bool) (Program, error) {
	name, exe := discoveryProgram, p.Discovery
	if proxy {
		name, exe = agentProgram, p.Agent
	}
	if exe == "" {
		return Program{}, &ImageError{c.Image, "no " + name + " program configured"}
	}
	prog := Program{Image: "horizon", UID: imageUID(c.Image)}
	if len(c.Command) == 0 {
		prog.Argv = withEnvoy(append([]string{exe}, c.Args...), p, proxy)
		return prog, nil
	}
	switch path.Base(c.Command[0]) {
	case name:
		prog.Argv = withEnvoy(append(append([]string{exe}, c.Command[1:]...), c.Args...), p, proxy)
	case "envoy":
		if !proxy || p.Envoy == "" {
			return Program{}, &ImageError{c.Image, "command envoy: no Envoy binary configured for this image"}
		}
		prog.Argv = append(append([]string{p.Envoy}, c.Command[1:]...), c.Args...)
	default:
		return Program{}, &ImageError{c.Image, fmt.Sprintf("command %q is not in the image (it holds %s%s)", c.Command[0], name, map[bool]string{true: ", envoy", false: ""}[proxy])}
	}
	return prog, nil
}

// withEnvoy gives `horizon-agent agent` in a proxy image the configured Envoy
// (--envoy-path), which the image has on its PATH (images.EnvoyPath) and
// this machine need not; not for its subcommands (agent iptables), nor when
// the container names one itself.
func withEnvoy(argv []string, p Programs, proxy bool) []string {
	if !proxy || p.Envoy == "" || len(argv) < 2 || argv[1] != "agent" ||
		len(argv) > 2 && !strings.HasPrefix(argv[2], "-") { // a subcommand (agent iptables)
		return argv
	}
	for _, a := range argv[2:] {
		if a == "--envoy-path" || strings.HasPrefix(a, "--envoy-path=") {
			return argv
		}
		if a == "--" {
			break
		}
	}
	return append([]string{argv[0], argv[1], "--envoy-path", p.Envoy}, argv[2:]...)
}
