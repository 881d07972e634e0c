#!/usr/bin/env bash
# Extracts Istio's Gateway CRD from the istio.io/api module pinned in go.mod
# into internal/install/gateway-crd.yaml, which `horizon install` embeds and
# applies when a cluster lacks the CRD. A unit test checks the copy still
# matches the pinned module (rerun this after bumping istio.io/api).
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(go list -m -f '{{.Dir}}' istio.io/api)/kubernetes/customresourcedefinitions.gen.yaml"
awk 'BEGIN { RS = "\n---\n" } /\n  name: gateways\.networking\.istio\.io\n/ { print; exit }' "$src" > internal/install/gateway-crd.yaml
grep -q '^kind: CustomResourceDefinition' internal/install/gateway-crd.yaml
