#!/usr/bin/env bash
# Builds the pinned golangci-lint from the Go module proxy, once, into a
# cache directory, and prints its path as the last line (`make lint` runs
# it with the checked-in .golangci.yml).
set -euo pipefail
version=v2.15.0
dir="${HORIZON_TOOLS_DIR:-$HOME/.cache/horizon/tools}/golangci-lint-$version"
bin="$dir/golangci-lint"
if [ -x "$bin" ]; then
  echo "golangci-lint $version: cached in $dir" >&2
  echo "$bin"
  exit 0
fi
echo "golangci-lint $version: building from the module proxy into $dir (once; a few minutes) ..." >&2
mkdir -p "$dir"
GOBIN="$dir" GOFLAGS= go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version"
"$bin" version >&2
echo "$bin"
