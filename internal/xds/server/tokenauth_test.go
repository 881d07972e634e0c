package server

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/model"
)

// A stream whose peer is throttled by the reviewer (backed off, or too many
// reviews at once) is told ResourceExhausted — retry later — rather than
// that its token is bad; a refused token is Unauthenticated.
func TestReviewTokenThrottledIsResourceExhausted(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer t"))
	for _, tt := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("%w: 10.0.0.1 is backed off", authn.ErrThrottled), codes.ResourceExhausted},
		{authn.Refused(fmt.Errorf("invalid bearer token")), codes.Unauthenticated},
		{fmt.Errorf("connection refused"), codes.Unauthenticated},
	} {
		a := &TokenAuth{LocalCluster: "c", Review: func(context.Context, model.ClusterID, string) (string, string, error) {
			return "", "", tt.err
		}}
		if _, err := a.reviewToken(ctx); status.Code(err) != tt.code {
			t.Errorf("%v: got %v, want %v", tt.err, err, tt.code)
		}
	}
}
