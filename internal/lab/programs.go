package lab

import (
	"fmt"
	"os"
	"path/filepath"
)

// The programs the lab's pods run instead of images (labnode.Programs):
// horizon-discovery, horizon-agent, helloworld and Envoy. `lab up` finds
// them where `make demo` puts them — horizon-discovery, horizon-agent and
// helloworld next to the horizon binary (`make build`), Envoy where
// scripts/envoy.sh installs it — or refuses at once naming what is missing:
// without them every pod that needs one would crash-loop and `lab demo`
// would wait minutes for nothing. The lab node, run as that horizon binary,
// finds horizon-discovery and horizon-agent next to itself the same way
// (ImagePrograms).

// EnvoyVersion is the Envoy scripts/envoy.sh installs (a test keeps the two
// in step).
const EnvoyVersion = "1.40.0"

// EnvoyEnv names an Envoy binary; EnvoyVenvEnv moves scripts/envoy.sh's
// installation.
const (
	EnvoyEnv     = "HORIZON_ENVOY"
	EnvoyVenvEnv = "HORIZON_ENVOY_VENV"
)

// DefaultEnvoy is where scripts/envoy.sh installs Envoy:
// ${HORIZON_ENVOY_VENV:-/opt/horizon/envoy-VERSION}/envoy-bin.
func DefaultEnvoy() string {
	venv := os.Getenv(EnvoyVenvEnv)
	if venv == "" {
		venv = "/opt/horizon/envoy-" + EnvoyVersion
	}
	return filepath.Join(venv, "envoy-bin")
}

// The programs of Horizon's images: horizon/discovery* runs
// DiscoveryProgram, horizon/proxy* AgentProgram.
const (
	DiscoveryProgram = "horizon-discovery"
	AgentProgram     = "horizon-agent"
)

// ImagePrograms returns the programs that stand in for Horizon's images for
// the horizon binary horizon: DiscoveryProgram and AgentProgram next to it.
func ImagePrograms(horizon string) (discovery, agent string) {
	dir := filepath.Dir(horizon)
	return filepath.Join(dir, DiscoveryProgram), filepath.Join(dir, AgentProgram)
}

// findPrograms fills in the programs not given: helloworld next to the
// horizon binary, Envoy from $HORIZON_ENVOY, else scripts/envoy.sh's.
func (o *Options) findPrograms() {
	if o.Helloworld == "" {
		if p := filepath.Join(filepath.Dir(o.Horizon), "helloworld"); fileExists(p) {
			o.Helloworld = p
		}
	}
	if o.Envoy == "" {
		o.Envoy = os.Getenv(EnvoyEnv)
	}
	if o.Envoy == "" && fileExists(DefaultEnvoy()) {
		o.Envoy = DefaultEnvoy()
	}
}

// checkPrograms refuses a --horizon, --helloworld or --envoy that is not
// an executable file, and a missing helloworld, Envoy, horizon-discovery or
// horizon-agent, naming where it was looked for and what provides it.
func (o Options) checkPrograms() error {
	for _, p := range []struct{ flag, path string }{{"--horizon", o.Horizon}, {"--helloworld", o.Helloworld}, {"--envoy", o.Envoy}} {
		if p.path == "" {
			continue
		}
		fi, err := os.Stat(p.path)
		if err != nil {
			return fmt.Errorf("%s: %w", p.flag, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s %s: not an executable file", p.flag, p.path)
		}
	}
	if o.Helloworld == "" {
		return fmt.Errorf("no helloworld program for the samples' istio/examples-helloworld images: none next to %s; "+
			"`make build` builds bin/helloworld, or give --helloworld", o.Horizon)
	}
	if o.Envoy == "" {
		return fmt.Errorf("no Envoy for the proxy pods (sidecars, gateways): $%s is not set and %s does not exist; "+
			"install it with ./scripts/envoy.sh (`make setup` does), or give --envoy", EnvoyEnv, DefaultEnvoy())
	}
	discovery, agent := ImagePrograms(o.Horizon)
	for _, p := range []struct{ path, images string }{{discovery, "horizon/discovery"}, {agent, "horizon/proxy"}} {
		if fi, err := os.Stat(p.path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("no %s for the %s images: %s is not an executable file; `make build` builds bin/%s next to bin/horizon",
				filepath.Base(p.path), p.images, p.path, filepath.Base(p.path))
		}
	}
	return nil
}
