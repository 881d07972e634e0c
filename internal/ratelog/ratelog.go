// Package ratelog bounds the log lines clients can trigger: a handler that
// lets at most one record per key through per interval and counts the rest.
//
// A key is the record's message plus the values of chosen attributes (the
// peer's address, say), so a flood from one peer is one line per interval
// while another peer's first line still gets through. The keys remembered
// are bounded too: past MaxKeys, every new key shares one overflow key, so
// a client inventing keys gets at most one more line per interval.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Options configure a Handler.
type Options struct {
	// Every is how often a key may log (0: 10 s).
	Every time.Duration
	// MaxKeys bounds the keys remembered (0: 1024).
	MaxKeys int
	// KeyAttrs name the record attributes whose values are part of the
	// key besides the message (e.g. "peer").
	KeyAttrs []string
	// Now is the clock (nil: time.Now); tests set it.
	Now func() time.Time
}

// overflowKey is the key shared by every record once MaxKeys are held.
const overflowKey = "\x00overflow"

type state struct {
	last       time.Time
	suppressed int
}

// limiter is shared by a Handler and every handler derived from it
// (WithAttrs, WithGroup), so that they count against the same keys.
type limiter struct {
	opts Options
	mu   sync.Mutex
	keys map[string]*state
}

// Handler is a rate-limiting slog.Handler.
type Handler struct {
	next slog.Handler
	l    *limiter
}

// NewHandler returns a handler passing at most one record per key per
// opts.Every to next. A record that passes after others were dropped
// carries their number as the attribute "suppressed".
func NewHandler(next slog.Handler, opts Options) *Handler {
	if opts.Every <= 0 {
		opts.Every = 10 * time.Second
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{next: next, l: &limiter{opts: opts, keys: map[string]*state{}}}
}

// New returns a logger writing through a rate-limiting handler on log's.
func New(log *slog.Logger, opts Options) *slog.Logger {
	return slog.New(NewHandler(log.Handler(), opts))
}

// Enabled reports whether the next handler takes records of level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle passes r on unless its key logged less than Every ago.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	key := h.key(r)
	pass, suppressed := h.l.allow(key)
	if !pass {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *Handler) key(r slog.Record) string {
	key := r.Message
	if len(h.l.opts.KeyAttrs) == 0 {
		return key
	}
	r.Attrs(func(a slog.Attr) bool {
		for _, k := range h.l.opts.KeyAttrs {
			if a.Key == k {
				key += "\x00" + a.Value.String()
			}
		}
		return true
	})
	return key
}

// allow reports whether key may log now and how many of its records were
// dropped since it last did.
func (l *limiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	s, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= l.opts.MaxKeys {
			l.sweep(now)
		}
		if len(l.keys) >= l.opts.MaxKeys {
			key = overflowKey
			s = l.keys[key]
		}
		if s == nil {
			s = &state{}
			l.keys[key] = s
			s.last = now
			return true, 0
		}
	}
	if now.Sub(s.last) < l.opts.Every {
		s.suppressed++
		return false, 0
	}
	n := s.suppressed
	s.last, s.suppressed = now, 0
	return true, n
}

// sweep forgets keys that have been quiet for an interval and dropped
// nothing: they would pass anyway. Called with l.mu held.
func (l *limiter) sweep(now time.Time) {
	for k, s := range l.keys {
		if k != overflowKey && s.suppressed == 0 && now.Sub(s.last) >= l.opts.Every {
			delete(l.keys, k)
		}
	}
}

// WithAttrs returns a handler adding attrs, limited by the same keys.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(attrs), l: h.l}
}

// WithGroup returns a handler in group name, limited by the same keys.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), l: h.l}
}
