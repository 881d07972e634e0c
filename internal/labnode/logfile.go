package labnode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Container logs are kept as the kubelet keeps them with a CRI runtime, so
// that `kubectl logs` can offer what it offers on a real node: one file per
// container instance (logs/CONTAINER/N.log, N counting the container's runs
// from 1, so --previous is the run before), each line
//
//	2026-01-02T15:04:05.123456789Z stdout F the line
//
// (RFC 3339 time, the stream, F for a full line or P for the part of a line
// longer than 16 KiB, the text without its newline) — the time is what
// --since and --timestamps need. A file over its size cap is rotated
// (N.log → N.log.1, N.log.2, …, higher is newer) and only the newest
// maxFiles files of a run are kept: the kubelet's containerLogMaxSize and
// containerLogMaxFiles, 10 MiB and 5 by default.

// Log rotation defaults, as the kubelet's.
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 5
	// maxLogLine is where a line is cut into P parts (the CRI runtimes'
	// buffer).
	maxLogLine = 16 << 10
)

// logFile is the log of one container run, written by the copiers of its
// stdout and stderr pipes; readers follow it through wake and done.
type logFile struct {
	path     string
	maxSize  int64
	maxFiles int
	now      func() time.Time

	mu      sync.Mutex
	f       *os.File
	size    int64
	rotated int // rotated files are path.1 … path.rotated (the oldest deleted)
	writers int // streams still open
	err     error
	wake    chan struct{} // closed and replaced at every write or rotation
	done    chan struct{} // closed once every stream has ended
}

// createLogFile starts a run's log at path (truncated if it exists).
func createLogFile(path string, maxSize int64, maxFiles int) (*logFile, error) {
	if maxSize <= 0 {
		maxSize = DefaultLogMaxSize
	}
	if maxFiles < 1 {
		maxFiles = DefaultLogMaxFiles
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, maxSize: maxSize, maxFiles: maxFiles, now: time.Now, f: f,
		wake: make(chan struct{}), done: make(chan struct{})}, nil
}

// rotatedPath is the i-th rotated file of path (1 the oldest ever made).
func rotatedPath(path string, i int) string { return path + "." + strconv.Itoa(i) }

// copyStream copies r (a container's stdout or stderr) into the log, line
// by line, until r ends; the log is done once every stream started with
// addStreams has been copied.
func (l *logFile) copyStream(stream string, r io.Reader) {
	defer l.endStream()
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			l.writeLine(stream, true, line)
			continue
		case len(line) > 0:
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			l.writeLine(stream, false, line)
		}
		if err != nil {
			return
		}
	}
}

// addStreams announces n streams that copyStream will copy.
func (l *logFile) addStreams(n int) {
	l.mu.Lock()
	l.writers += n
	l.mu.Unlock()
}

func (l *logFile) endStream() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writers--
	if l.writers > 0 {
		return
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	close(l.done)
	l.wakeLocked()
}

func (l *logFile) wakeLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// writeLine appends one entry, rotating first when it would pass the cap.
// A write error is kept (Err) and the output dropped: a container never
// blocks on its log.
func (l *logFile) writeLine(stream string, partial bool, text []byte) {
	tag := "F"
	if partial {
		tag = "P"
	}
	b := make([]byte, 0, len(text)+50)
	b = l.now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, ' ')
	b = append(b, tag...)
	b = append(b, ' ')
	b = append(append(b, text...), '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if l.size > 0 && l.size+int64(len(b)) > l.maxSize {
		if err := l.rotateLocked(); err != nil {
			l.err = err
			return
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	if err != nil {
		l.err = err
	}
	l.wakeLocked()
}

// rotateLocked moves the current file aside and starts a new one, then
// removes the rotated files beyond maxFiles-1.
func (l *logFile) rotateLocked() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	if err := os.Rename(l.path, rotatedPath(l.path, l.rotated+1)); err != nil {
		return fmt.Errorf("rotating %s: %w", l.path, err)
	}
	l.rotated++
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	l.f, l.size = f, 0
	if old := l.rotated - (l.maxFiles - 1); old >= 1 {
		if err := os.Remove(rotatedPath(l.path, old)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// state is what a follower needs before it reads: a channel closed at the
// next change, whether the run has ended (nothing more will come), and the
// rotation count (a higher one than the follower's means its file was
// moved aside and is complete).
func (l *logFile) state() (wake <-chan struct{}, ended bool, rotated int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		ended = true
	default:
	}
	return l.wake, ended, l.rotated
}

// open opens the file that was current after gen rotations (the current
// one when gen is the latest), or, when that one is gone (more than
// maxFiles rotations since), the oldest one kept; it returns which it
// opened. Under the lock: no rotation renames it meanwhile.
func (l *logFile) open(gen int) (*os.File, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	gen = min(max(gen, l.rotated-l.maxFiles+1), l.rotated)
	name := l.path
	if gen < l.rotated {
		name = rotatedPath(l.path, gen+1)
	}
	f, err := os.Open(name)
	return f, gen, err
}

// Err is the first write or rotation error, if any.
func (l *logFile) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
