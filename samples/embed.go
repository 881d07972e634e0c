package samples

import "embed"

// FS holds the samples (helloworld/, sleep/, tcp-echo/, grpc-health/) in
// the binary, so that `horizon lab demo` applies them from any working
// directory.
//
//go:embed helloworld/*.yaml sleep/*.yaml tcp-echo/*.yaml grpc-health/*.yaml
var FS embed.FS
