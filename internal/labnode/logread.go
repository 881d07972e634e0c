package labnode

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// logEntry is one line of a log file (see logfile.go).
type logEntry struct {
	time    time.Time
	stream  string // stdout or stderr
	partial bool   // a part of a longer line: no newline after it
	text    []byte
}

// parseLogLine reads "TIME STREAM F|P TEXT" (the newline already cut).
func parseLogLine(b []byte) (logEntry, error) {
	fields := bytes.SplitN(b, []byte(" "), 4)
	if len(fields) < 3 {
		return logEntry{}, fmt.Errorf("log line %q: want TIME STREAM TAG TEXT", b)
	}
	t, err := time.Parse(time.RFC3339Nano, string(fields[0]))
	if err != nil {
		return logEntry{}, fmt.Errorf("log line %q: %w", b, err)
	}
	e := logEntry{time: t, stream: string(fields[1]), partial: string(fields[2]) == "P"}
	if len(fields) == 4 {
		e.text = fields[3]
	}
	return e, nil
}

// logReader reads the log of one container run, as the kubelet serves
// `kubectl logs` (and, from the end, `kubectl attach`). Like the kubelet's,
// it reads the current file only: rotated files are kept on disk, not
// shown.
type logReader struct {
	path string
	// live is the run's log while it is written (nil once the run ended):
	// a follower waits on it for more.
	live *logFile
	// tail keeps only the last tail lines (0: all); fromEnd starts at the
	// end (attach); since skips older entries.
	tail    int
	fromEnd bool
	since   time.Time
	// follow keeps reading as the run writes, until it ends or ctx does.
	follow bool
}

// logCursor is a logReader positioned in its file.
type logCursor struct {
	r     *logReader
	f     *os.File
	seen  int // f is the file that was current after seen rotations
	state func() (wake <-chan struct{}, ended bool, rotated int)
}

// open opens the file and finds where to start (the tail, or the end);
// nothing written after it returns is missed by a follower.
func (r *logReader) open() (*logCursor, error) {
	c := &logCursor{r: r, state: func() (<-chan struct{}, bool, int) { return nil, true, 0 }}
	var err error
	if r.live != nil {
		c.state = r.live.state
		_, _, rotated := c.state()
		c.f, c.seen, err = r.live.open(rotated)
	} else {
		c.f, err = os.Open(r.path)
	}
	if err != nil {
		return nil, err
	}
	var start int64
	switch {
	case r.fromEnd:
		start, err = c.f.Seek(0, io.SeekEnd)
	case r.tail > 0:
		start, err = tailOffset(c.f, r.tail)
	}
	if err == nil {
		_, err = c.f.Seek(start, io.SeekStart)
	}
	if err != nil {
		c.f.Close()
		return nil, err
	}
	return c, nil
}

// run opens the log and reads it (logCursor.run).
func (r *logReader) run(ctx context.Context, emit func(logEntry) error) error {
	c, err := r.open()
	if err != nil {
		return err
	}
	return c.run(ctx, emit)
}

// run calls emit for each entry; an error from emit ends it (and is
// returned). It closes the file.
func (c *logCursor) run(ctx context.Context, emit func(logEntry) error) error {
	defer func() { c.f.Close() }()
	r := c.r
	wake, ended, rotated := c.state()
	br := bufio.NewReader(c.f)
	var pending []byte // a line read before its writer finished it
	for {
		line, err := br.ReadBytes('\n')
		if err == nil {
			line = append(pending, line[:len(line)-1]...)
			pending = nil
			e, perr := parseLogLine(line)
			if perr != nil {
				continue // not ours (a file edited by hand): skip it
			}
			if !e.time.Before(r.since) {
				if err := emit(e); err != nil {
					return err
				}
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		pending = append(pending, line...)
		if !r.follow || r.live == nil {
			return nil
		}
		// At the end of the file. The state was taken before this read, so
		// if the file had been moved aside then, it is complete: go on with
		// the next one; if the run had ended then, there is nothing more.
		if rotated > c.seen {
			nf, gen, err := r.live.open(c.seen + 1)
			if err != nil {
				return err
			}
			c.f.Close()
			c.f, c.seen, pending = nf, gen, nil
			br.Reset(c.f)
			continue
		}
		if ended {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
		wake, ended, rotated = c.state()
	}
}

// tailOffset is where the last n lines of f begin.
func tailOffset(f *os.File, n int) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := fi.Size()
	buf := make([]byte, 8<<10)
	count := 0
	for pos := end; pos > 0; {
		size := min(int64(len(buf)), pos)
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := size - 1; i >= 0; i-- {
			if buf[i] != '\n' || pos+i == end-1 { // the last line's own newline starts nothing
				continue
			}
			if count++; count == n {
				return pos + i + 1, nil
			}
		}
	}
	return 0, nil
}

// errLimit ends a read at the byte limit.
var errLimit = errors.New("log byte limit reached")

// logWriter writes entries as `kubectl logs` shows them: the text (a
// newline after a full line), after its time with timestamps, cut after
// limit bytes (0: no limit).
type logWriter struct {
	w          io.Writer
	timestamps bool
	limit      int
	written    int
}

func (lw *logWriter) emit(e logEntry) error {
	var b []byte
	if lw.timestamps {
		b = e.time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, ' ')
	}
	b = append(b, e.text...)
	if !e.partial {
		b = append(b, '\n')
	}
	if lw.limit > 0 && lw.written+len(b) >= lw.limit {
		b = b[:lw.limit-lw.written]
		_, err := lw.w.Write(b)
		lw.written = lw.limit
		if err != nil {
			return err
		}
		return errLimit
	}
	n, err := lw.w.Write(b)
	lw.written += n
	return err
}
