// Command horizon-image builds Horizon's container images without a Docker
// daemon: bin/images/discovery.tar (horizon/discovery:VERSION and :latest)
// and bin/images/proxy.tar (horizon/proxy:VERSION and :latest), loadable
// with `docker load`, `podman load`, `ctr images import` or `kind load
// image-archive`. `make images` runs it; see internal/images.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/internal/images"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "horizon-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("horizon-image", flag.ContinueOnError)
	var o images.Options
	fs.StringVar(&o.Discovery, "discovery", "", "horizon-discovery, the discovery image's program, statically linked (CGO_ENABLED=0 go build ./cmd/horizon-discovery)")
	fs.StringVar(&o.Agent, "agent", "", "horizon-agent, the proxy image's program, statically linked (CGO_ENABLED=0 go build ./cmd/horizon-agent)")
	fs.StringVar(&o.Envoy, "envoy", "", "the Envoy binary (scripts/envoy.sh prints it)")
	fs.StringVar(&o.OutDir, "out", "bin/images", "output directory")
	fs.StringVar(&o.Version, "version", "", "image tag and org.opencontainers.image.version (default: git describe --always --dirty)")
	fs.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (default: git rev-parse HEAD)")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "mtime of every file and created time of the images, in seconds since 1970 (default: $SOURCE_DATE_EPOCH, else the last commit's time)")
	fs.StringVar(&o.XtablesNFT, "xtables-nft", "", "iptables' nft multi-call binary (default: xtables-nft-multi in PATH)")
	fs.StringVar(&o.XtablesLegacy, "xtables-legacy", "", "iptables' legacy multi-call binary (default: xtables-legacy-multi in PATH, left out if absent)")
	fs.StringVar(&o.XtablesLibDir, "xtables-libdir", "", "iptables extension directory (default: the one compiled into libxtables)")
	quiet := fs.Bool("q", false, "print only the written tarballs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Version == "" {
		o.Version = git("describe", "--always", "--dirty")
		if o.Version == "" {
			o.Version = "dev"
		}
	}
	if o.Revision == "" {
		o.Revision = git("rev-parse", "HEAD")
	}
	if *epoch == "" {
		*epoch = git("log", "-1", "--format=%ct")
	}
	if *epoch == "" {
		*epoch = "0"
	}
	secs, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("source date epoch %q is not a number of seconds", *epoch)
	}
	o.Created = time.Unix(secs, 0).UTC()
	if !*quiet {
		o.Log = os.Stderr
	}
	start := time.Now()
	imgs, err := images.Build(o)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		fmt.Printf("%s\t%s\t%s\t%.1f MB\n", img.Path, strings.Join(img.Tags, ","), img.Digest, float64(img.Size)/1e6)
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "built in %s\n", time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

func git(args ...string) string {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
