#!/usr/bin/env bash
# Builds the Kubernetes binaries the integration tests run into a cache
# directory, once:
#   kube-apiserver, kubectl,  from k8s.io/kubernetes        (pinned in tools/k8s/go.mod)
#   kube-controller-manager,
#   kube-scheduler
#   etcd                      from go.etcd.io/etcd/server/v3 (pinned in tools/etcd/go.mod;
#                             its own module: Kubernetes 1.37 pulls etcd 3.7 libraries)
# The directory is $HORIZON_K8S_BIN_DIR, else
#   ${XDG_CACHE_HOME:-$HOME/.cache}/horizon/k8s-<version>-etcd-<version>
# and is printed as the last line of stdout; progress goes to stderr.
# A warm run only checks that each binary reports its pinned version (<1 s).
# The first build takes several minutes on 2 cores (kube-apiserver and
# kube-controller-manager most). kube-controller-manager and kube-scheduler
# run only in `horizon lab` (and its test), not in kubeharness's clusters.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# pinned MODULE GOMOD: the version GOMOD requires MODULE at.
pinned() { awk -v m="$1" '{ for (i = 1; i < NF; i++) if ($i == m && $(i+1) ~ /^v/) { print $(i+1); exit } }' "$2"; }
k8s_version=$(pinned k8s.io/kubernetes "$root/tools/k8s/go.mod")
etcd_version=$(pinned go.etcd.io/etcd/server/v3 "$root/tools/etcd/go.mod")
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { echo "k8s-bins: cannot read the pinned versions from tools/*/go.mod" >&2; exit 1; }
dir="${HORIZON_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/horizon/k8s-${k8s_version}-etcd-${etcd_version}}"
mkdir -p "$dir"

# Kubernetes reads its version from ldflags (a plain `go build` reports
# v0.0.0-master); stamp the pinned release so /version tells the truth.
k8s_minor=${k8s_version#v1.}; k8s_minor=${k8s_minor%%.*}
kv=k8s.io/component-base/version
k8s_ldflags="-s -w -X $kv.gitVersion=$k8s_version -X $kv.gitMajor=1 -X $kv.gitMinor=$k8s_minor -X $kv.gitTreeState=clean"

# ok NAME WANT ARGS...: the binary exists and `NAME ARGS` prints WANT.
ok() {
  local name=$1 want=$2; shift 2
  [ -x "$dir/$name" ] && "$dir/$name" "$@" 2>/dev/null | grep -qF -- "$want"
}

# build NAME MODULE-DIR PACKAGE LDFLAGS: go build in the background, a
# progress line every 20 s, then an atomic rename into the cache.
build() {
  local name=$1 mod=$2 pkg=$3 ldflags=$4
  echo "k8s-bins: building $name from $pkg (tools/$mod; first time only, minutes on 2 cores)..." >&2
  local start=$SECONDS tmp="$dir/.$name.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  ( cd "$root/tools/$mod" && CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath \
      -ldflags="$ldflags" -o "$tmp" "$pkg" ) &
  local pid=$!
  while ! wait_timeout "$pid" 20; do
    echo "k8s-bins: $name still building ($((SECONDS - start))s)" >&2
  done
  wait "$pid" || { echo "k8s-bins: building $name failed" >&2; exit 1; }
  mv -f "$tmp" "$dir/$name"
  trap - EXIT
  echo "k8s-bins: $name built in $((SECONDS - start))s" >&2
}

# wait_timeout PID SECONDS: true once PID has exited, false after SECONDS.
wait_timeout() {
  local i
  for ((i = 0; i < $2 * 2; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.5
  done
  ! kill -0 "$1" 2>/dev/null
}

ok etcd "etcd Version: ${etcd_version#v}" --version ||
  build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
ok kube-apiserver "Kubernetes $k8s_version" --version ||
  build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
ok kubectl "Client Version: $k8s_version" version --client ||
  build kubectl k8s k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
ok kube-controller-manager "Kubernetes $k8s_version" --version ||
  build kube-controller-manager k8s k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
ok kube-scheduler "Kubernetes $k8s_version" --version ||
  build kube-scheduler k8s k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
echo "$dir"
