#!/usr/bin/env bash
# Installs everything `make test` needs beyond Go: the system packages the
# end-to-end tests use (network namespaces, iptables capture, curl, setpriv,
# sysctl, python3-venv for Envoy, chromium for the /ui/topology page) from Debian, the real Envoy
# (scripts/envoy.sh) and the Kubernetes binaries (scripts/k8s-bins.sh).
# Idempotent: a warm run only checks what is there (a second or so).
# Packages are installed only as root; otherwise it fails, naming what is
# missing. The end-to-end tests themselves need root too.
set -euo pipefail
cd "$(dirname "$0")/.."
go version >&2
declare -A pkg=([ip]=iproute2 [iptables]=iptables [curl]=curl [setpriv]=util-linux [sysctl]=procps [python3]=python3 [runc]=runc [chromium]=chromium)
missing=()
for bin in "${!pkg[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${pkg[$bin]}")
done
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
command -v go >/dev/null 2>&1 || { echo "setup: go is not on PATH (Go 1.26 is needed)" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run scripts/setup.sh as root" >&2
  fi
  echo "setup: the end-to-end tests need root (network namespaces, iptables); run make test as root" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" python3-venv >/dev/null
  for bin in "${!pkg[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || { echo "setup: $bin still missing after installing ${pkg[$bin]}" >&2; exit 1; }
  done
fi
scripts/envoy.sh >/dev/null || { echo "setup: installing Envoy failed (scripts/envoy.sh)" >&2; exit 1; }
scripts/k8s-bins.sh >/dev/null || { echo "setup: building kube-apiserver/etcd failed (scripts/k8s-bins.sh)" >&2; exit 1; }
echo "setup: ok" >&2
