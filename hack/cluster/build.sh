#!/usr/bin/env bash
# Builds the cluster's programs from their Go modules at the versions of versions.env,
# once per machine, into a cache keyed by version outside the clone:
#   $CLUSTER_CACHE/bin-<hash of versions and wrapper modules>/{kube-apiserver,...,etcd,helm,coredns,
#   traefik,kube-router,metrics-server}
# Prints the build time; a warm cache returns at once. Needs Go >= 1.26 and a module proxy.
set -euo pipefail
trap 'echo "cluster build: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
cache="${CLUSTER_CACHE:-/var/cache/amrutam-cluster}"
key=$(cat "$here/versions.env" "$here"/modules/*/go.mod "$here"/modules/*/*.go | sha256sum | cut -c1-12)
bin="$cache/bin-$key"
if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$bin"
start=$(date +%s)

kv=${KUBERNETES_VERSION#v}
minor=$(cut -d. -f2 <<<"$kv")
ldk=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldk+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldk+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
(cd "$here/modules/kubernetes" &&
  go build -trimpath -ldflags "-s -w $ldk" -o "$bin/" \
    k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl,kubeadm})
echo "kubernetes $KUBERNETES_VERSION built after $(($(date +%s) - start)) s" >&2

(cd "$here/modules/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
(cd "$here/modules/helm" &&
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    -o "$bin/helm" helm.sh/helm/v4/cmd/helm)
(cd "$here/modules/coredns" && go build -trimpath -ldflags "-s -w" -o "$bin/coredns" .)
(cd "$here/modules/local-path" &&
  go build -trimpath -ldflags "-s -w" -o "$bin/local-path-provisioner" github.com/rancher/local-path-provisioner)
# What a production cluster adds around the chart: an ingress controller, a NetworkPolicy
# engine and the resource metrics an HPA reads.
addons=$(date +%s)
(cd "$here/modules/traefik" && go build -trimpath -ldflags "-s -w \
  -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
  -o "$bin/traefik" github.com/traefik/traefik/v3/cmd/traefik)
(cd "$here/modules/kube-router" && go build -trimpath -ldflags "-s -w" \
  -o "$bin/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
(cd "$here/modules/metrics-server" && go build -trimpath -ldflags "-s -w" \
  -o "$bin/metrics-server" sigs.k8s.io/metrics-server/cmd/metrics-server)
echo "traefik, kube-router and metrics-server built after $(($(date +%s) - addons)) s" >&2
# The pause container: Kubernetes' own C source, linked statically.
gcc -Os -static -o "$bin/pause" "$(cd "$here/modules/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
touch "$bin/.complete"
echo "cluster programs built in $(($(date +%s) - start)) s into $bin" >&2
echo "$bin"
