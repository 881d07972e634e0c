package bootstrap

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// --stale-endpoint-ttl is 0 (never withdraw: fail static, the default) or
// at least a second; anything else stops discovery before it starts,
// naming the flag.
func TestStaleEndpointTTLIsValidated(t *testing.T) {
	if d := DefaultConfig().StaleEndpointTTL; d != 0 {
		t.Errorf("default --stale-endpoint-ttl %s, want 0 (fail static)", d)
	}
	for _, ttl := range []time.Duration{-time.Second, time.Millisecond, 999 * time.Millisecond} {
		c := DefaultConfig()
		c.StaleEndpointTTL = ttl
		err := c.Validate()
		var ue UsageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "--stale-endpoint-ttl") {
			t.Errorf("--stale-endpoint-ttl %s: %v, want a usage error naming the flag", ttl, err)
		}
	}
	for _, ttl := range []time.Duration{0, time.Second, 10 * time.Minute} {
		c := DefaultConfig()
		c.StaleEndpointTTL = ttl
		if err := c.Validate(); err != nil {
			t.Errorf("--stale-endpoint-ttl %s: %v", ttl, err)
		}
	}
}
