#!/usr/bin/env bash
# Quick start: build horizon and show split-horizon EDS for the walkthrough's
# helloworld service, first as a sidecar in the local cluster (no network, like
# the walkthrough's local cluster) sees it, then as one on network2.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/horizon ] || go build -o bin/horizon ./cmd/horizon

ex=examples/walkthrough
args=(--cluster "cluster1=$ex/cluster1" --cluster "remote_kubecfg=$ex/remote"
      --mesh-networks "$ex/meshnetworks.yaml" --name 'outbound|5000||helloworld.sample.svc.cluster.local')

echo "== helloworld as a sidecar in cluster1 sees it (no network): v1 direct, v2 through network2's gateway"
bin/horizon translate "${args[@]}" --proxy-network "" --proxy-cluster cluster1 -o yaml
echo
echo "== helloworld as a sidecar on network2 sees it: both endpoints direct"
bin/horizon translate "${args[@]}" --proxy-network network2 --proxy-cluster remote_kubecfg -o yaml
