package authn

import (
	"errors"

	"google.golang.org/grpc/codes"
)

// ErrThrottled: the peer is backed off after failed authentications, or
// already has as many reviews running and waiting as it may. Nothing was
// reviewed; the caller may retry later (ResourceExhausted).
var ErrThrottled = errors.New("token authentication throttled")

// refusal marks an error as the token's own fault.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// Refused marks err as a refusal of the token itself (not authenticated,
// wrong audience, not a service account, unknown cluster): it is cached for
// RefuseTTL and counts against the peer's back-off. A Backend's other
// errors (the API server did not answer) are neither: they are not the
// peer's fault, and a retry may succeed.
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return refusal{err}
}

// IsRefused reports whether err is (or wraps) a refusal.
func IsRefused(err error) bool {
	var r refusal
	return errors.As(err, &r)
}

// Code is the gRPC status code for an authentication error:
// ResourceExhausted when throttled (retry later), else Unauthenticated.
func Code(err error) codes.Code {
	if errors.Is(err, ErrThrottled) {
		return codes.ResourceExhausted
	}
	return codes.Unauthenticated
}
