package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestLayerIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0)
	build := func() []byte {
		l := newLayer(mtime)
		for _, err := range []error{
			l.File("/usr/local/bin/horizon", bin),
			l.Dir("/var/run/horizon", 0o755, 1337, 1337),
			l.Dir("/tmp", 0o1777, 0, 0),
			l.Symlink("/usr/sbin/iptables", "xtables-nft-multi"),
			l.Dir("/usr", 0o755, 0, 0), // an implicit parent made explicit: fine
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		var b bytes.Buffer
		if err := l.WriteTar(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a := build()
	if !bytes.Equal(a, build()) {
		t.Fatal("the same entries gave different tars")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(mtime) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %s, owner names %q %q", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		switch h.Name {
		case "usr/local/bin/horizon":
			if h.Mode != 0o755 || h.Uid != 0 {
				t.Errorf("horizon: mode %o uid %d", h.Mode, h.Uid)
			}
		case "var/run/horizon/":
			if h.Uid != 1337 || h.Gid != 1337 {
				t.Errorf("work dir owned by %d:%d", h.Uid, h.Gid)
			}
		case "tmp/":
			if h.Mode != 0o1777 {
				t.Errorf("tmp mode %o", h.Mode)
			}
		}
	}
	want := []string{"tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/horizon", "usr/sbin/", "usr/sbin/iptables", "var/", "var/run/", "var/run/horizon/"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("entries %v, want %v", names, want)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("entries not sorted: %v", names)
	}
}

func TestLayerRefusesConflicts(t *testing.T) {
	l := newLayer(time.Unix(0, 0))
	if err := l.Symlink("/usr/sbin/iptables", "a"); err != nil {
		t.Fatal(err)
	}
	if err := l.Symlink("/usr/sbin/iptables", "b"); err == nil {
		t.Error("the same path with another target was accepted")
	}
	if err := l.Dir("/usr/sbin/iptables/x", 0o755, 0, 0); err == nil {
		t.Error("a path under a symlink was accepted")
	}
	if err := l.Dir("relative", 0o755, 0, 0); err == nil {
		t.Error("a relative path was accepted")
	}
}

// The resolver finds what the build machine's loader finds: compare with
// ldd on a dynamically linked system binary.
func TestResolverMatchesLdd(t *testing.T) {
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		t.Skip("no ldd")
	}
	var bin string
	for _, b := range []string{"/usr/bin/ls", "/bin/ls", "/usr/bin/env"} {
		if p, err := filepath.EvalSymlinks(b); err == nil {
			bin = p
			break
		}
	}
	if bin == "" || CheckStatic(bin) == nil {
		t.Skip("no dynamically linked system binary")
	}
	out, err := exec.Command(ldd, bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	var want []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			want = append(want, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			want = append(want, f[0])
		}
	}
	d, err := NewResolver().Resolve(bin)
	if err != nil {
		t.Fatal(err)
	}
	got := append([]string{d.Interpreter}, d.Libs...)
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("resolved %v, ldd says %v", got, want)
	}
	if err := CheckStatic(bin); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("CheckStatic(%s) = %v, want dynamically linked", bin, err)
	}
}

func TestWriteArchiveIsReproducibleAndLoadable(t *testing.T) {
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tags := []string{"horizon/proxy:v1", "horizon/proxy:latest"}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	for _, p := range []string{a, b} {
		if err := WriteArchive(p, img, tags); err != nil {
			t.Fatal(err)
		}
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("the same image and tags gave different archives")
	}
	want, _ := img.Digest()
	for _, tag := range tags {
		ref, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tarball.ImageFromPath(a, &ref)
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if d, _ := got.Digest(); d != want {
			t.Errorf("%s: digest %s, want %s", tag, d, want)
		}
	}
}
