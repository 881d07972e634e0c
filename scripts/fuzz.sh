#!/usr/bin/env bash
# Runs every `func FuzzXxx(f *testing.F)` in a *_test.go under cmd/ and
# internal/, one at a time (-fuzz takes one target per package), for
# FUZZTIME each (default 10s). All run; it fails if any of them did.
# Crashers land in the package's testdata/fuzz/FuzzXxx/: commit them as
# regression inputs once fixed.
#
# Go's fuzzing engine sometimes ends a run that found nothing with
# "context deadline exceeded" when -fuzztime runs out while a worker is
# busy (golang/go#48127 and its kin). A real failure always writes a crasher
# file; such a run that wrote none is run once more, and fails only if it
# fails again.
set -euo pipefail
cd "$(dirname "$0")/.."
go=${GO:-go}
fuzztime=${FUZZTIME:-10s}
read -r -a flags <<<"${FUZZFLAGS:-}"
targets=$(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' cmd internal | sort)
[ -n "$targets" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }

crashers() { { find "$1/testdata/fuzz/$2" -type f 2>/dev/null || true; } | sort; }

failed=; n=0
for file in $targets; do
  pkg=./$(dirname "$file")
  for name in $(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\).*/\1/p' "$file"); do
    n=$((n+1))
    for try in 1 2; do
      echo "fuzz: $pkg $name ($fuzztime)"
      before=$(crashers "$pkg" "$name")
      log=$(mktemp)
      if "$go" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "${flags[@]}" "$pkg" 2>&1 | tee "$log"; then
        rm -f "$log"; break
      fi
      engine=$(grep -c 'context deadline exceeded' "$log" || true)
      rm -f "$log"
      if [ "$try" = 1 ] && [ "$engine" -gt 0 ] && [ "$(crashers "$pkg" "$name")" = "$before" ]; then
        echo "fuzz: $pkg $name: the fuzzing engine's deadline error, no crasher written; running it once more"
        continue
      fi
      failed="$failed $pkg:$name"; break
    done
  done
done
if [ -n "$failed" ]; then echo "fuzz: FAILED:$failed" >&2; exit 1; fi
echo "fuzz: $n targets passed"
