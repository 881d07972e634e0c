#!/usr/bin/env bash
# Builds the Kubernetes binaries the integration tests run — kube-apiserver
# from k8s.io/kubernetes and etcd 3.6 from go.etcd.io/etcd/server/v3, both
# pinned in tools/ — into a cache directory, once. Prints that directory as
# the last line of stdout. A warm run only checks the binaries (<1 s).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
k8s_version=$(awk '/k8s.io\/kubernetes v/ {print $NF; exit}' "$root/tools/k8s/go.mod")
etcd_version=$(awk '/go.etcd.io\/etcd\/server\/v3 v/ {print $NF; exit}' "$root/tools/etcd/go.mod")
dir="${HORIZON_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/horizon/k8s-${k8s_version}-etcd-${etcd_version}}"
mkdir -p "$dir"

build() { # name module-dir package
  local name=$1 mod=$2 pkg=$3
  if [ -x "$dir/$name" ] && "$dir/$name" --version >/dev/null 2>&1; then
    echo "$name: cached in $dir" >&2
    return
  fi
  echo "$name: building $pkg (first time only; several minutes on 2 cores)..." >&2
  local start=$SECONDS
  ( cd "$root/tools/$mod" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags='-s -w' -o "$dir/$name.tmp" "$pkg" ) &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && echo "$name: still building ($((SECONDS - start))s)" >&2
  done
  wait "$pid"
  mv "$dir/$name.tmp" "$dir/$name"
  echo "$name: built in $((SECONDS - start))s" >&2
}

build etcd etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver
echo "$dir"
