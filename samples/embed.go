package samples

import "embed"

// FS holds the samples (helloworld/*.yaml, sleep/*.yaml) in the binary, so
// that `horizon lab demo` applies them from any working directory.
//
//go:embed helloworld/*.yaml sleep/*.yaml
var FS embed.FS
