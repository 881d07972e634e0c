#!/usr/bin/env bash
# Extracts Istio's Gateway and DestinationRule CRDs from the istio.io/api
# module pinned in go.mod into internal/install/{gateway,destinationrule}-crd.yaml,
# which `horizon install` embeds and applies when a cluster lacks them. A
# unit test checks the copies still match the pinned module (rerun this
# after bumping istio.io/api).
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(go list -m -f '{{.Dir}}' istio.io/api)/kubernetes/customresourcedefinitions.gen.yaml"
for kind in gateway destinationrule; do
	out="internal/install/$kind-crd.yaml"
	awk -v name="  name: ${kind}s.networking.istio.io" 'BEGIN { RS = "\n---\n" } index($0, "\n" name "\n") { print; exit }' "$src" > "$out"
	grep -q '^kind: CustomResourceDefinition' "$out"
done
