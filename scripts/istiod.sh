#!/usr/bin/env bash
# Builds Istio binaries from the module pinned in tools/istiod/go.mod into a
# cache directory, each once:
#   scripts/istiod.sh               pilot-discovery (istiod), which
#                                   `make bench-convergence CP=istiod` compares
#                                   with Horizon (docs/performance.md)
#   scripts/istiod.sh pilot-agent   Istio's sidecar agent, which the
#                                   integration tests run unmodified against
#                                   Horizon's CA
#   scripts/istiod.sh istioctl      Istio's CLI, whose offline kube-inject
#                                   gives the integration tests the pod spec
#                                   Istio's injector makes
#   scripts/istiod.sh pilot-discovery pilot-agent   several
# The directory is $HORIZON_ISTIOD_DIR, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/horizon/istiod-<version>, printed as the last
# line of stdout; it also holds Istio's CRDs (crd-all.gen.yaml, copied from the
# module) that the benchmark applies. Progress goes to stderr. A first build
# takes many minutes on 2 cores; later calls only print the directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/istiod"
version=$(awk '$1 == "require" && $2 == "istio.io/istio" { print $3; exit } $1 == "istio.io/istio" { print $2; exit }' "$mod/go.mod")
[ -n "$version" ] || { echo "istiod: cannot read the pinned istio.io/istio from tools/istiod/go.mod" >&2; exit 1; }
dir="${HORIZON_ISTIOD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/horizon/istiod-${version}}"
mkdir -p "$dir"

[ $# -gt 0 ] || set -- pilot-discovery
tmp=
trap '[ -z "$tmp" ] || rm -f "$tmp"' EXIT
for bin in "$@"; do
  case "$bin" in
    pilot-discovery | pilot-agent) pkg="istio.io/istio/pilot/cmd/$bin" ;;
    istioctl) pkg="istio.io/istio/istioctl/cmd/istioctl" ;;
    *) echo "istiod: unknown binary $bin (pilot-discovery, pilot-agent, istioctl)" >&2; exit 2 ;;
  esac
  [ -x "$dir/$bin" ] && continue
  echo "istiod: building $bin from istio.io/istio@$version (tools/istiod; first time only, many minutes on 2 cores)..." >&2
  start=$SECONDS tmp="$dir/.$bin.tmp.$$"
  ( cd "$mod" && CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath -ldflags="-s -w" \
      -o "$tmp" "$pkg" ) &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && echo "istiod: $bin still building ($((SECONDS - start))s)" >&2
  done
  wait "$pid" || { echo "istiod: building $bin failed" >&2; exit 1; }
  mv -f "$tmp" "$dir/$bin"
  tmp=
  echo "istiod: $bin built in $((SECONDS - start))s" >&2
done
if [ ! -s "$dir/crd-all.gen.yaml" ]; then
  src=$(cd "$mod" && go list -mod=readonly -m -f '{{.Dir}}' istio.io/istio)/manifests/charts/base/files/crd-all.gen.yaml
  cp "$src" "$dir/crd-all.gen.yaml" && chmod 0644 "$dir/crd-all.gen.yaml"
fi
echo "$dir"
