//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImagesRunWithRunc builds both images as `make images` does (a static
// horizon-discovery and horizon-agent, then cmd/horizon-image), twice, and
// checks that they are
// reproducible, tagged VERSION and latest, configured (user 1337, the
// entrypoint, labels) and hold exactly what they should (Envoy's layer: Envoy
// plus what `ldd` lists for it). Then it unpacks each image into an OCI
// runtime bundle and runs it with runc — no Docker daemon, no network:
// `horizon-discovery version` in discovery; `horizon-agent version`,
// `envoy --version` and the capture init container (`horizon-agent agent
// iptables`, as root with
// NET_ADMIN in a fresh network namespace, then the image's own `iptables -t
// nat -S`) in the proxy image.
func TestImagesRunWithRunc(t *testing.T) {
	requireRunc(t)
	envoy := envoyBinary(t)
	dir := t.TempDir()
	const (
		version = "v0.0.0-imagetest"
		epoch   = 1700000000
	)

	start := time.Now()
	discoveryBin, agentBin := filepath.Join(dir, "horizon-discovery"), filepath.Join(dir, "horizon-agent")
	for _, bin := range []string{discoveryBin, agentBin} {
		imageGoBuild(t, []string{"CGO_ENABLED=0"}, "-trimpath", "-ldflags", "-s -w -X github.com/horizonmesh/horizon/internal/cmdutil.Version="+version,
			"-o", bin, "../../cmd/"+filepath.Base(bin))
		if out, _ := exec.Command("ldd", bin).CombinedOutput(); !strings.Contains(string(out), "not a dynamic executable") {
			t.Fatalf("ldd %s: %s (want: not a dynamic executable)", bin, out)
		}
		st, err := os.Stat(bin)
		must(t, err)
		t.Logf("%s: %.1f MB", filepath.Base(bin), float64(st.Size())/1e6)
	}
	tool := filepath.Join(dir, "horizon-image")
	imageGoBuild(t, nil, "-o", tool, "../../cmd/horizon-image")
	t.Logf("go build (static horizon-discovery and horizon-agent, horizon-image): %s", time.Since(start).Round(100*time.Millisecond))

	build := func(out string) time.Duration {
		start := time.Now()
		cmd := exec.Command(tool, "-q", "--discovery", discoveryBin, "--agent", agentBin, "--envoy", envoy, "--version", version,
			"--revision", "0123456789abcdef", "--source-date-epoch", fmt.Sprint(epoch), "--out", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("horizon-image: %v\n%s", err, b)
		}
		return time.Since(start)
	}
	d1 := build(filepath.Join(dir, "images"))
	d2 := build(filepath.Join(dir, "images2"))
	t.Logf("horizon-image: %s, again %s", d1.Round(100*time.Millisecond), d2.Round(100*time.Millisecond))

	discovery := loadImage(t, filepath.Join(dir, "images", "discovery.tar"), "horizon/discovery", version)
	proxy := loadImage(t, filepath.Join(dir, "images", "proxy.tar"), "horizon/proxy", version)
	for _, f := range []string{"discovery.tar", "proxy.tar"} {
		a, b := fileSHA256(t, filepath.Join(dir, "images", f)), fileSHA256(t, filepath.Join(dir, "images2", f))
		if a != b {
			t.Errorf("%s is not reproducible: sha256 %s, then %s", f, a, b)
		}
		st, err := os.Stat(filepath.Join(dir, "images", f))
		must(t, err)
		t.Logf("%s: %.1f MB", f, float64(st.Size())/1e6)
	}

	// Configuration.
	for _, c := range []struct {
		img               v1.Image
		title, entrypoint string
	}{{discovery, "horizon-discovery", "/usr/local/bin/horizon-discovery"}, {proxy, "horizon-proxy", "/usr/local/bin/horizon-agent"}} {
		cf, err := c.img.ConfigFile()
		must(t, err)
		cfg := cf.Config
		if cfg.User != "1337" || strings.Join(cfg.Entrypoint, " ") != c.entrypoint || cf.OS != "linux" ||
			!cf.Created.Time.Equal(time.Unix(epoch, 0)) {
			t.Errorf("%s: user %q, entrypoint %q, os %q, created %s", c.title, cfg.User, cfg.Entrypoint, cf.OS, cf.Created)
		}
		if l := cfg.Labels; l["org.opencontainers.image.version"] != version || l["org.opencontainers.image.title"] != c.title ||
			l["org.opencontainers.image.revision"] != "0123456789abcdef" {
			t.Errorf("%s: labels %v", c.title, l)
		}
	}
	if cf, _ := proxy.ConfigFile(); cf.Config.Labels["io.horizonmesh.envoy.version"] != "1.40.0" {
		t.Errorf("proxy: envoy version label %q, want 1.40.0", cf.Config.Labels["io.horizonmesh.envoy.version"])
	}

	// Layers: discovery's only layer holds horizon-discovery and /tmp, the
	// proxy's first horizon-agent, /tmp and its work directory; every entry
	// sorted, with the fixed mtime.
	dl, err := discovery.Layers()
	must(t, err)
	pl, err := proxy.Layers()
	must(t, err)
	if len(dl) != 1 || len(pl) != 3 {
		t.Fatalf("discovery has %d layers (want 1), proxy %d (want 3)", len(dl), len(pl))
	}
	discoveryFiles := layerEntries(t, dl[0], time.Unix(epoch, 0))
	if got, want := sortedKeys(discoveryFiles), "[tmp/ usr/ usr/local/ usr/local/bin/ usr/local/bin/horizon-discovery]"; fmt.Sprint(got) != want {
		t.Errorf("discovery layer files %v, want %s", got, want)
	}
	if h := discoveryFiles["usr/local/bin/horizon-discovery"]; h == nil || h.Mode != 0o755 {
		t.Errorf("discovery layer: /usr/local/bin/horizon-discovery missing or not 0755: %+v", h)
	}
	if h := discoveryFiles["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("discovery layer: /tmp missing or not 1777: %+v", h)
	}
	layerFiles := make([]map[string]*tar.Header, len(pl))
	for i, l := range pl {
		layerFiles[i] = layerEntries(t, l, time.Unix(epoch, 0))
	}
	if h := layerFiles[0]["usr/local/bin/horizon-agent"]; h == nil || h.Mode != 0o755 {
		t.Errorf("agent layer: /usr/local/bin/horizon-agent missing or not 0755: %+v", h)
	}
	if h := layerFiles[0]["var/run/horizon/"]; h == nil || h.Uid != 1337 || h.Gid != 1337 {
		t.Errorf("agent layer: /var/run/horizon missing or not owned by 1337: %+v", h)
	}
	if h := layerFiles[0]["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("agent layer: /tmp missing or not 1777: %+v", h)
	}
	if layerFiles[0]["usr/local/bin/horizon-discovery"] != nil {
		t.Errorf("agent layer holds horizon-discovery")
	}
	// The Envoy layer: Envoy and exactly what ldd says it loads.
	want := map[string]bool{"usr/local/bin/envoy": true}
	for p := range lddPaths(t, envoy) {
		want[strings.TrimPrefix(p, "/")] = true
	}
	got := map[string]bool{}
	for p, h := range layerFiles[1] {
		if h.Typeflag != tar.TypeDir {
			got[p] = true
		}
	}
	if fmt.Sprint(sortedKeys(got)) != fmt.Sprint(sortedKeys(want)) {
		t.Errorf("envoy layer files %v, want envoy and ldd's %v", sortedKeys(got), sortedKeys(want))
	}
	t.Logf("envoy layer: %v", sortedKeys(got))
	for _, p := range []string{"usr/sbin/iptables", "usr/sbin/xtables-nft-multi", "usr/lib/x86_64-linux-gnu/xtables/libxt_owner.so", "run/"} {
		if layerFiles[2][p] == nil {
			t.Errorf("iptables layer: %s missing", p)
		}
	}

	// Run them.
	dBundle := imageBundle(t, discovery, filepath.Join(dir, "discovery"))
	pBundle := imageBundle(t, proxy, filepath.Join(dir, "proxy"))
	state := filepath.Join(dir, "runc")
	if out := runcRun(t, state, dBundle, runcProcess{args: []string{"/usr/local/bin/horizon-discovery", "version"}}); strings.TrimSpace(out) != version {
		t.Errorf("discovery: horizon-discovery version printed %q, want %q", out, version)
	}
	if out := runcRun(t, state, pBundle, runcProcess{args: []string{"horizon-agent", "version"}}); strings.TrimSpace(out) != version {
		t.Errorf("proxy: horizon-agent version printed %q, want %q", out, version)
	}
	if out := runcRun(t, state, pBundle, runcProcess{args: []string{"envoy", "--version"}}); !strings.Contains(out, "/1.40.0/") {
		t.Errorf("proxy: envoy --version printed %q, want release 1.40.0", out)
	}

	// The init container: root with NET_ADMIN and NET_RAW in the pod's
	// network namespace (here a fresh one), then the image's iptables shows
	// the rules.
	netns := fmt.Sprintf("hzimg%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", netns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", netns).Run() })
	initc := runcProcess{root: true, caps: []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}, netns: "/var/run/netns/" + netns, writable: true}
	initc.args = []string{"horizon-agent", "agent", "iptables", "--proxy-uid", "1337"}
	runcRun(t, state, pBundle, initc)
	initc.args = []string{"iptables", "-t", "nat", "-S"}
	rules := runcRun(t, state, pBundle, initc)
	for _, r := range []string{
		"-A HORIZON_OUTPUT -m owner --uid-owner 1337 -j RETURN",
		"-A HORIZON_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
		"-A HORIZON_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
	} {
		if !strings.Contains(rules, r) {
			t.Errorf("iptables -t nat -S in the proxy image lacks %q:\n%s", r, rules)
		}
	}
	initc.args = []string{"iptables", "--version"}
	if out := runcRun(t, state, pBundle, initc); !strings.Contains(out, "nf_tables") {
		t.Errorf("iptables --version: %q, want the nf_tables backend", out)
	}
	t.Logf("total %s", time.Since(start).Round(100*time.Millisecond))
}

// requireRunc skips the test unless it runs as root with runc and ip;
// under CI=true or HORIZON_REQUIRE_E2E=1 it fails instead.
func requireRunc(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, b := range []string{"runc", "ip", "ldd"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %s (scripts/setup.sh installs runc)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" || os.Getenv("HORIZON_REQUIRE_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func imageGoBuild(t *testing.T, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// loadImage reads the image tagged repo:version from a tarball and checks
// that repo:latest is the same image.
func loadImage(t *testing.T, file, repo, version string) v1.Image {
	t.Helper()
	var digests []v1.Hash
	var img v1.Image
	for _, tag := range []string{version, "latest"} {
		ref, err := name.NewTag(repo + ":" + tag)
		must(t, err)
		i, err := tarball.ImageFromPath(file, &ref)
		if err != nil {
			t.Fatalf("%s: %s: %v", file, ref, err)
		}
		d, err := i.Digest()
		must(t, err)
		digests = append(digests, d)
		if img == nil {
			img = i
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("%s: %s:%s is %s but :latest is %s", file, repo, version, digests[0], digests[1])
	}
	return img
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	must(t, err)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// layerEntries lists a layer's tar headers by name, checking that they come
// sorted and all carry mtime.
func layerEntries(t *testing.T, l v1.Layer, mtime time.Time) map[string]*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	must(t, err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]*tar.Header{}
	prev := ""
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		if h.Name <= prev {
			t.Errorf("layer entries not sorted: %q after %q", h.Name, prev)
		}
		prev = h.Name
		if !h.ModTime.Equal(mtime) {
			t.Errorf("layer entry %s: mtime %s, want %s", h.Name, h.ModTime, mtime)
		}
		out[h.Name] = h
	}
	return out
}

// lddPaths are the files ldd says bin loads (libraries and the loader).
func lddPaths(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	paths := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			paths[f[2]] = true
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			paths[f[0]] = true
		}
	}
	if len(paths) == 0 {
		t.Fatalf("ldd %s lists nothing:\n%s", bin, out)
	}
	return paths
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// imageBundle unpacks img's flattened filesystem (mutate.Extract) into
// dir/rootfs and writes dir/config.json with `runc spec`; it returns dir.
func imageBundle(t *testing.T, img v1.Image, dir string) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	must(t, os.MkdirAll(rootfs, 0o755))
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	type dirMode struct {
		path string
		mode os.FileMode
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		rel := path.Clean("/" + h.Name)
		if rel == "/" {
			continue
		}
		p := filepath.Join(rootfs, filepath.FromSlash(rel))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			must(t, os.MkdirAll(p, 0o755))
			dirs = append(dirs, dirMode{p, mode})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			must(t, err)
			_, err = io.Copy(f, tr)
			must(t, err)
			must(t, f.Close())
			must(t, os.Chmod(p, mode))
		case tar.TypeSymlink:
			must(t, os.Symlink(h.Linkname, p))
		case tar.TypeLink:
			must(t, os.Link(filepath.Join(rootfs, filepath.FromSlash(path.Clean("/"+h.Linkname))), p))
		default:
			t.Fatalf("unexpected entry %s (type %c)", h.Name, h.Typeflag)
		}
		must(t, os.Lchown(p, h.Uid, h.Gid))
	}
	for _, d := range dirs {
		must(t, os.Chmod(d.path, d.mode))
	}
	cmd := exec.Command("runc", "spec", "--bundle", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	cf, err := img.ConfigFile()
	must(t, err)
	b, err := json.Marshal(cf.Config.Env)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "env.json"), b, 0o644))
	return dir
}

type runcProcess struct {
	args     []string
	root     bool // run as uid 0, else as the images' user 1337
	caps     []string
	netns    string // join this network namespace instead of a new one
	writable bool   // a writable root filesystem (the init container's)
}

var runcRuns int

// runcRun runs p in the bundle with a unique container id, deletes the
// container, and returns what it printed; a non-zero exit fails the test.
func runcRun(t *testing.T, state, bundle string, p runcProcess) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	must(t, err)
	var spec map[string]any
	must(t, json.Unmarshal(raw, &spec))
	var env []string
	envRaw, err := os.ReadFile(filepath.Join(bundle, "env.json"))
	must(t, err)
	must(t, json.Unmarshal(envRaw, &env))
	uid := 1337
	if p.root {
		uid = 0
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = p.args
	proc["env"] = env
	proc["cwd"] = "/"
	proc["user"] = map[string]any{"uid": uid, "gid": uid}
	if len(p.caps) > 0 {
		caps := proc["capabilities"].(map[string]any)
		for _, set := range []string{"bounding", "effective", "permitted"} {
			l, _ := caps[set].([]any)
			for _, c := range p.caps {
				l = append(l, c)
			}
			caps[set] = l
		}
	}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": !p.writable}
	spec["hostname"] = "horizon-image-test"
	if p.netns != "" {
		linux := spec["linux"].(map[string]any)
		nss := linux["namespaces"].([]any)
		for i, ns := range nss {
			if m := ns.(map[string]any); m["type"] == "network" {
				nss[i] = map[string]any{"type": "network", "path": p.netns}
			}
		}
	}
	out, err := json.MarshalIndent(spec, "", "  ")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(bundle, "config.json"), out, 0o644))

	runcRuns++
	id := fmt.Sprintf("hz-image-test-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), runcRuns)
	defer func() { _ = exec.Command("runc", "--root", state, "delete", "--force", id).Run() }()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("runc", "--root", state, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("runc run %s (uid %d): %s: %q", strings.Join(p.args, " "), uid, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()+stderr.String()))
	if err != nil {
		t.Fatalf("runc run %s: %v\nstdout: %s\nstderr: %s", strings.Join(p.args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
