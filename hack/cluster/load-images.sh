#!/usr/bin/env bash
# Imports images from podman's store into the cluster's containerd (no registry):
#   load-images.sh IMAGE...
# Pods use them under the same names with imagePullPolicy IfNotPresent or Never.
set -euo pipefail
state="${CLUSTER_STATE:-/var/lib/amrutam-cluster}"
sock=/run/amrutam-containerd/containerd.sock
for image in "$@"; do
  podman save --format docker-archive "$image" \
    | ctr --address "$sock" -n k8s.io images import --digests - >/dev/null
  echo "cluster: imported $image" >&2
done
