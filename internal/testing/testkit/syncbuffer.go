package testkit

import (
	"bytes"
	"strings"
	"sync"
)

// SyncBuffer is a bytes.Buffer that goroutines may write while the test
// reads it: the destination of a logger (slog.NewTextHandler(&buf, nil))
// or a stream that the code under test writes from its own goroutine. The
// zero value is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Close does nothing, so that a SyncBuffer can stand for a stream the code
// under test closes (an io.WriteCloser); later writes still land.
func (s *SyncBuffer) Close() error { return nil }

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Count returns how many times substr occurs in what was written so far
// (strings.Count's rules).
func (s *SyncBuffer) Count(substr string) int {
	return strings.Count(s.String(), substr)
}
