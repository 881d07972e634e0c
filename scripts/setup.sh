#!/usr/bin/env bash
# Installs the system packages the end-to-end tests use (network namespaces,
# iptables capture, curl), the real Envoy, and the Kubernetes binaries.
# Idempotent: a warm run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A pkg=([ip]=iproute2 [iptables]=iptables [curl]=curl [setpriv]=util-linux [sysctl]=procps [python3]=python3)
missing=()
for bin in "${!pkg[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${pkg[$bin]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${missing[*]} (install them, or run as root)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" python3-venv >/dev/null
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || {
  echo "setup: installing python3-venv" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
}
scripts/envoy.sh >/dev/null
scripts/k8s-bins.sh >/dev/null
