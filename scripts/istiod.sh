#!/usr/bin/env bash
# Builds Istio's pilot-discovery (istiod) from the module pinned in
# tools/istiod/go.mod into a cache directory, once; `make bench-convergence
# CP=istiod` compares it with Horizon (docs/performance.md). The directory is
# $HORIZON_ISTIOD_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/horizon/istiod-<version>,
# printed as the last line of stdout together with Istio's CRDs
# (crd-all.gen.yaml, copied from the module) that the benchmark applies.
# Progress goes to stderr. The first build takes many minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/istiod"
version=$(awk '$1 == "require" && $2 == "istio.io/istio" { print $3; exit } $1 == "istio.io/istio" { print $2; exit }' "$mod/go.mod")
[ -n "$version" ] || { echo "istiod: cannot read the pinned istio.io/istio from tools/istiod/go.mod" >&2; exit 1; }
dir="${HORIZON_ISTIOD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/horizon/istiod-${version}}"
mkdir -p "$dir"

if [ ! -x "$dir/pilot-discovery" ]; then
  echo "istiod: building pilot-discovery from istio.io/istio@$version (tools/istiod; first time only, many minutes on 2 cores)..." >&2
  start=$SECONDS tmp="$dir/.pilot-discovery.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  ( cd "$mod" && CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath -ldflags="-s -w" \
      -o "$tmp" istio.io/istio/pilot/cmd/pilot-discovery ) &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && echo "istiod: pilot-discovery still building ($((SECONDS - start))s)" >&2
  done
  wait "$pid" || { echo "istiod: building pilot-discovery failed" >&2; exit 1; }
  mv -f "$tmp" "$dir/pilot-discovery"
  trap - EXIT
  echo "istiod: pilot-discovery built in $((SECONDS - start))s" >&2
fi
if [ ! -s "$dir/crd-all.gen.yaml" ]; then
  src=$(cd "$mod" && go list -mod=readonly -m -f '{{.Dir}}' istio.io/istio)/manifests/charts/base/files/crd-all.gen.yaml
  cp "$src" "$dir/crd-all.gen.yaml" && chmod 0644 "$dir/crd-all.gen.yaml"
fi
echo "$dir"
