package labnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustWrite(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

// fakeClock returns times one second apart from 12:00:00.
func fakeClock() func() time.Time {
	t := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

// newTestLog is a log of one stream, written through the returned pipe.
func newTestLog(t *testing.T, maxSize int64, maxFiles int) (*logFile, *io.PipeWriter) {
	t.Helper()
	lf, err := createLogFile(filepath.Join(t.TempDir(), "1.log"), maxSize, maxFiles)
	if err != nil {
		t.Fatal(err)
	}
	lf.now = fakeClock()
	pr, pw := io.Pipe()
	lf.addStreams(1)
	go lf.copyStream("stdout", pr)
	return lf, pw
}

// waitLines waits until the log's current file holds n lines.
func waitLines(t *testing.T, lf *logFile, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		wake, _, _ := lf.state()
		b, _ := os.ReadFile(lf.path)
		if bytes.Count(b, []byte("\n")) >= n {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("the log holds %q, want %d lines", b, n)
		}
	}
}

// Lines are written in the CRI format, a line longer than 16 KiB in P
// parts, the last line without a newline as a full one.
func TestLogFileFormat(t *testing.T) {
	lf, w := newTestLog(t, 0, 0)
	long := strings.Repeat("x", maxLogLine+10)
	mustWrite(t, w, "one\ntwo\n"+long+"\nlast")
	_ = w.Close()
	<-lf.done
	b, err := os.ReadFile(lf.path)
	if err != nil {
		t.Fatal(err)
	}
	want := "2026-01-02T12:00:01Z stdout F one\n" +
		"2026-01-02T12:00:02Z stdout F two\n" +
		"2026-01-02T12:00:03Z stdout P " + long[:maxLogLine] + "\n" +
		"2026-01-02T12:00:04Z stdout F " + long[maxLogLine:] + "\n" +
		"2026-01-02T12:00:05Z stdout F last\n"
	if string(b) != want {
		t.Errorf("log file:\n%.300q\nwant\n%.300q", b, want)
	}
	if _, ended, _ := lf.state(); !ended || lf.Err() != nil {
		t.Errorf("ended %v, err %v", ended, lf.Err())
	}
}

// Past the size cap the file is rotated; only maxFiles files are kept, the
// newest, and nothing is lost between the kept ones.
func TestLogFileRotation(t *testing.T) {
	const line = 35 // "2026-01-02T12:00:01Z stdout F 0001\n"
	lf, w := newTestLog(t, 3*line, 3)
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(w, "%04d\n", i)
	}
	_ = w.Close()
	<-lf.done
	files, _ := filepath.Glob(lf.path + "*")
	if len(files) != 3 {
		t.Fatalf("files %v, want 3", files)
	}
	var all []string
	for _, f := range []string{rotatedPath(lf.path, lf.rotated-1), rotatedPath(lf.path, lf.rotated), lf.path} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 3*line {
			t.Errorf("%s: %d bytes, over the cap", f, len(b))
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			all = append(all, l[len(l)-4:])
		}
	}
	if got := strings.Join(all, " "); got != "0013 0014 0015 0016 0017 0018 0019 0020" {
		t.Errorf("kept lines %s", got)
	}
}

// readAll runs r and returns what kubectl logs would print.
func readAll(t *testing.T, r *logReader, timestamps bool, limit int) string {
	t.Helper()
	var b bytes.Buffer
	lw := &logWriter{w: &b, timestamps: timestamps, limit: limit}
	if err := r.run(context.Background(), lw.emit); err != nil && !errors.Is(err, errLimit) {
		t.Fatal(err)
	}
	return b.String()
}

func TestLogReaderOptions(t *testing.T) {
	lf, w := newTestLog(t, 0, 0)
	mustWrite(t, w, "a\nb\nc\nd\n"+strings.Repeat("y", maxLogLine+1)+"\n")
	_ = w.Close()
	<-lf.done
	long := strings.Repeat("y", maxLogLine+1)
	for _, c := range []struct {
		name       string
		r          logReader
		timestamps bool
		limit      int
		want       string
	}{
		{"all", logReader{}, false, 0, "a\nb\nc\nd\n" + long + "\n"},
		{"tail 3 (a long line is two)", logReader{tail: 3}, false, 0, "d\n" + long + "\n"},
		{"tail more than there is", logReader{tail: 50}, false, 0, "a\nb\nc\nd\n" + long + "\n"},
		{"since", logReader{since: time.Date(2026, 1, 2, 12, 0, 3, 0, time.UTC)}, false, 0, "c\nd\n" + long + "\n"},
		{"since and tail", logReader{tail: 4, since: time.Date(2026, 1, 2, 12, 0, 4, 0, time.UTC)}, false, 0, "d\n" + long + "\n"},
		{"timestamps", logReader{tail: 4}, true, 0, "2026-01-02T12:00:03Z c\n2026-01-02T12:00:04Z d\n2026-01-02T12:00:05Z " + long[:maxLogLine] + "2026-01-02T12:00:06Z y\n"},
		{"limit", logReader{}, false, 5, "a\nb\nc"},
		{"from the end", logReader{fromEnd: true}, false, 0, ""},
	} {
		c.r.path = lf.path
		if got := readAll(t, &c.r, c.timestamps, c.limit); got != c.want {
			t.Errorf("%s: %.80q, want %.80q", c.name, got, c.want)
		}
	}
	// A finished run followed: what there is, then the end.
	r := &logReader{path: lf.path, live: lf, follow: true, tail: 2}
	if got := readAll(t, r, false, 0); got != long+"\n" {
		t.Errorf("follow of an ended run: %.40q", got)
	}
}

// A follower sees every line as it is written, across a rotation, and
// ends when the run does; one from the end (attach) sees only new lines.
func TestLogReaderFollow(t *testing.T) {
	lf, w := newTestLog(t, 80, 5)
	mustWrite(t, w, "before\n")
	waitLines(t, lf, 1)
	follow, err := (&logReader{path: lf.path, live: lf, follow: true}).open()
	if err != nil {
		t.Fatal(err)
	}
	attach, err := (&logReader{path: lf.path, live: lf, follow: true, fromEnd: true}).open()
	if err != nil {
		t.Fatal(err)
	}
	got := []chan string{make(chan string, 1), make(chan string, 1)}
	for i, r := range []*logCursor{follow, attach} {
		go func() {
			var b bytes.Buffer
			err := r.run(context.Background(), (&logWriter{w: &b}).emit)
			if err != nil {
				b.WriteString("error: " + err.Error())
			}
			got[i] <- b.String()
		}()
	}
	// Each line is 34 bytes or more: the cap rotates every second line.
	for _, l := range []string{"one", "two", "three", "four"} {
		mustWrite(t, w, l+"\n")
	}
	_ = w.Close()
	var out [2]string
	for i := range got {
		select {
		case out[i] = <-got[i]:
		case <-time.After(5 * time.Second):
			t.Fatal("a follower did not end with the run")
		}
	}
	if out[0] != "before\none\ntwo\nthree\nfour\n" {
		t.Errorf("follower: %q", out[0])
	}
	if out[1] != "one\ntwo\nthree\nfour\n" {
		t.Errorf("attach: %q", out[1])
	}
	if lf.rotated == 0 {
		t.Error("the log was not rotated")
	}
}

// A follower of a live run stops when its context ends.
func TestLogReaderFollowCancel(t *testing.T) {
	lf, w := newTestLog(t, 0, 0)
	defer func() { _ = w.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&logReader{path: lf.path, live: lf, follow: true}).run(ctx, func(logEntry) error { return nil })
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follower ignored its context")
	}
}
