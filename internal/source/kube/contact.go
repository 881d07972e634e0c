package kube

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Contact follows whether a cluster's API server answers, from every
// request its client makes (informers' lists and watches, TokenReviews):
// a transport error, a 5xx or a 401/403 makes it unreachable; any other
// answer reachable again. A synced Watcher keeps serving its last state
// while its API server is gone; Contact is how that staleness shows.
// onChange is called on every transition, never with a lock held.
type Contact struct {
	onChange func(reachable bool, msg string)

	mu        sync.Mutex
	reachable bool
	since     time.Time
	msg       string

	deliverMu sync.Mutex // onChange calls, one at a time, in order
	delivered bool       // the reachability onChange was last told
}

// NewContact returns a Contact, reachable until a request says otherwise.
func NewContact(onChange func(reachable bool, msg string)) *Contact {
	return &Contact{onChange: onChange, reachable: true, since: time.Now(), delivered: true}
}

// Wrap is a rest.Config WrapTransport observing rt's requests.
func (c *Contact) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		switch {
		case err != nil:
			if req.Context().Err() == nil { // not our own cancellation (a stopped watcher)
				c.observe(false, err.Error())
			}
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			c.observe(false, fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
		default:
			c.observe(true, "")
		}
		return resp, err
	})
}

// State reports whether the API server answered the last request, since
// when that has been so, and the failure that made it unreachable.
func (c *Contact) State() (reachable bool, since time.Time, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reachable, c.since, c.msg
}

func (c *Contact) observe(ok bool, msg string) {
	c.mu.Lock()
	if ok == c.reachable {
		c.mu.Unlock()
		return
	}
	c.reachable, c.since, c.msg = ok, time.Now(), msg
	c.mu.Unlock()
	if c.onChange == nil {
		return
	}
	// Tell the latest state, not this transition: two racing requests may
	// get here in either order.
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	reachable, since, last := c.State()
	if reachable == c.delivered {
		return
	}
	c.delivered = reachable
	if reachable {
		c.onChange(true, "")
		return
	}
	c.onChange(false, fmt.Sprintf("API server unreachable since %s: %s", since.UTC().Format(time.RFC3339), last))
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
