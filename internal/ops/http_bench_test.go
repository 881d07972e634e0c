package ops

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingWriter discards the body, counting it.
type countingWriter struct {
	h    http.Header
	code int
	n    int64
}

func (w *countingWriter) Header() http.Header         { return w.h }
func (w *countingWriter) WriteHeader(code int)        { w.code = code }
func (w *countingWriter) Write(b []byte) (int, error) { w.n += int64(len(b)); return len(b), nil }

// heapPeak samples the heap's object bytes (live and not yet collected)
// until stopped, returning the largest value seen above the starting one.
func heapPeak() (stop func() float64) {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(done)
		<-finished
		return float64(peak.Load()-min(base, peak.Load())) / 1e6
	}
}

// BenchmarkDebugEDS100kEndpoints measures one /debug/eds request for a
// network whose only service has 100,000 endpoints (the body is counted and
// discarded). B/op is what one request allocates, peak-heap-MB how far the
// heap rose above its level before the requests.
func BenchmarkDebugEDS100kEndpoints(b *testing.B) {
	m := startMesh(b, 1, 100_000)
	b.ReportAllocs()
	stop := heapPeak()
	b.ResetTimer()
	var n int64
	for b.Loop() {
		w := &countingWriter{h: http.Header{}}
		m.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/debug/eds?network=n1", nil))
		n = w.n
	}
	b.StopTimer()
	b.ReportMetric(stop(), "peak-heap-MB")
	b.ReportMetric(float64(n)/1e6, "MB-body")
}

// BenchmarkDebugEDS100kEndpoints8Concurrent is 8 such requests at once (the
// report's 8 curl loops): ns/op is the time until all 8 have an answer
// (200 or 429); ok/op how many were served.
func BenchmarkDebugEDS100kEndpoints8Concurrent(b *testing.B) {
	m := startMesh(b, 1, 100_000)
	b.ReportAllocs()
	stop := heapPeak()
	b.ResetTimer()
	var served atomic.Int64
	for b.Loop() {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				w := &countingWriter{h: http.Header{}, code: http.StatusOK}
				m.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/debug/eds?network=n1", nil))
				if w.code == http.StatusOK {
					served.Add(1)
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(stop(), "peak-heap-MB")
	b.ReportMetric(float64(served.Load())/float64(b.N), "ok/op")
}
