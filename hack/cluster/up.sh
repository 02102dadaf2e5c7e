#!/usr/bin/env bash
# `make cluster`: a single-node Kubernetes on this machine, from the programs that
# build.sh made at the versions of versions.env. Prints the kubeconfig's path last.
#
# Processes run in the background with PID files under $CLUSTER_STATE/run (there is no
# systemd here); down.sh stops them and removes every trace from the host. Running it
# again while the cluster is up does nothing. Needs root.
#
# Network: the node's address lives on a bridge of its own, pods on a CNI bridge, and no
# pod packet leaves the machine: no masquerade, mangle-table drops of pod and service
# traffic towards the outside interface, and a CoreDNS without a forward plugin.
set -euo pipefail
trap 'echo "cluster: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
source "$here/network.env"
state="${CLUSTER_STATE:-/var/lib/amrutam-cluster}"
run="$state/run" logs="$state/logs" pki="$state/pki" kc="$state/kubeconfig"
started=$(date +%s)

alive() { [[ -f "$run/$1.pid" ]] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }
if alive kube-apiserver && alive kubelet && [[ -f "$state/ready" ]]; then
  echo "$kc/admin.conf"; exit 0
fi
[[ $(id -u) == 0 ]] || { echo "make cluster needs root" >&2; exit 1; }
bash "$here/down.sh" >/dev/null 2>&1 || true

# --- host packages (Debian's containerd, runc and CNI plugins; iptables for kube-proxy)
need=()
for pair in containerd:containerd runc:runc iptables:iptables conntrack:conntrack \
  busybox:busybox-static socat:socat ipset:ipset; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

bin=$(bash "$here/build.sh" | tail -1)
export PATH="$bin:$PATH"
mkdir -p "$run" "$logs" "$pki" "$kc" "$state/etcd" "$state/cni" "$state/volumes"
chmod 700 "$state/etcd"
ln -sfn "$bin" "$state/bin"

start() {  # name, command...: in the background, its own session, a PID file
  local name=$1; shift
  setsid "$@" >>"$logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$run/$name.pid"
}
wait_for() {  # what, seconds, command...
  local what=$1 limit=$2; shift 2
  for ((i = 0; i < limit * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "cluster: $what not ready after ${limit}s; last log lines:" >&2
  tail -n 30 "$logs"/*.log >&2 || true
  exit 1
}

# --- the node's address and the pod traffic guards
ip link add "$NODE_BRIDGE" type bridge
ip addr add "$NODE_IP/32" dev "$NODE_BRIDGE"
for client in $CLIENT_IPS; do ip addr add "$client/32" dev "$NODE_BRIDGE"; done
ip link set "$NODE_BRIDGE" up
ip route add "$SERVICE_CIDR" dev "$NODE_BRIDGE"   # host -> Service: kube-proxy DNATs it
cat /proc/sys/net/ipv4/ip_forward > "$run/ip_forward"
uplink=$(ip -o route show default | awk '{print $5; exit}')
for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
  for dev in ${uplink:-}; do
    iptables -t mangle -I FORWARD -s "$cidr" -o "$dev" -j DROP
    iptables -t mangle -I POSTROUTING -s "$cidr" -o "$dev" -j DROP
  done
done

# --- certificates, keys and kubeconfigs, new for each cluster
sed -e "s|@STATE@|$state|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
  -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@SERVICE_CIDR@|$SERVICE_CIDR|g" \
  -e "s|@KUBERNETES_VERSION@|$KUBERNETES_VERSION|g" "$here/node/kubeadm.yaml" > "$state/kubeadm.yaml"
kubeadm init phase certs all --config "$state/kubeadm.yaml" >/dev/null
kubeadm init phase kubeconfig all --config "$state/kubeadm.yaml" --kubeconfig-dir "$kc" >/dev/null
kubeadm kubeconfig user --config "$state/kubeadm.yaml" --client-name system:kube-proxy \
  > "$kc/kube-proxy.conf" 2>/dev/null
kubeadm kubeconfig user --config "$state/kubeadm.yaml" --client-name kube-router \
  > "$kc/kube-router.conf" 2>/dev/null

# --- etcd and the control plane
start etcd etcd --name node --data-dir "$state/etcd" \
  --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
  --listen-peer-urls https://127.0.0.1:2380 --initial-advertise-peer-urls https://127.0.0.1:2380 \
  --initial-cluster node=https://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --cert-file "$pki/etcd/server.crt" --key-file "$pki/etcd/server.key" \
  --trusted-ca-file "$pki/etcd/ca.crt" --client-cert-auth \
  --peer-cert-file "$pki/etcd/peer.crt" --peer-key-file "$pki/etcd/peer.key" \
  --peer-trusted-ca-file "$pki/etcd/ca.crt" --peer-client-cert-auth \
  --snapshot-count 10000 --unsafe-no-fsync
wait_for etcd 60 curl -sf http://127.0.0.1:2381/health

start kube-apiserver kube-apiserver \
  --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
  --allow-privileged=true --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction,OwnerReferencesPermissionEnforcement \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" \
  --tls-private-key-file "$pki/apiserver.key" \
  --etcd-servers https://127.0.0.1:2379 --etcd-cafile "$pki/etcd/ca.crt" \
  --etcd-certfile "$pki/apiserver-etcd-client.crt" --etcd-keyfile "$pki/apiserver-etcd-client.key" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --proxy-client-cert-file "$pki/front-proxy-client.crt" \
  --proxy-client-key-file "$pki/front-proxy-client.key" \
  --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
  --requestheader-allowed-names front-proxy-client \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --requestheader-group-headers X-Remote-Group --requestheader-username-headers X-Remote-User \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false \
  --enable-aggregator-routing=true  # metrics-server's API by its pod's address
kubectl() { command kubectl --kubeconfig "$kc/admin.conf" "$@"; }
wait_for kube-apiserver 120 command kubectl --kubeconfig "$kc/super-admin.conf" get --raw /readyz
# kubeadm's admin.conf group has no rights until bound (kubeadm init does this step).
command kubectl --kubeconfig "$kc/super-admin.conf" create clusterrolebinding kubeadm:cluster-admins \
  --clusterrole cluster-admin --group kubeadm:cluster-admins >/dev/null
# The API server's own client for `kubectl logs/exec/port-forward` through the kubelet.
kubectl create clusterrolebinding kube-apiserver-kubelet-api-admin \
  --clusterrole system:kubelet-api-admin --user kube-apiserver-kubelet-client >/dev/null

# Started only after /readyz: started together, the controller-manager exits on an
# RBAC refusal before the bootstrap policy exists.
start kube-controller-manager kube-controller-manager \
  --kubeconfig "$kc/controller-manager.conf" --authentication-kubeconfig "$kc/controller-manager.conf" \
  --authorization-kubeconfig "$kc/controller-manager.conf" --bind-address 127.0.0.1 \
  --client-ca-file "$pki/ca.crt" --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
  --cluster-name amrutam --cluster-signing-cert-file "$pki/ca.crt" \
  --cluster-signing-key-file "$pki/ca.key" --root-ca-file "$pki/ca.crt" \
  --service-account-private-key-file "$pki/sa.key" --use-service-account-credentials \
  --service-cluster-ip-range "$SERVICE_CIDR" --leader-elect=false --profiling=false
start kube-scheduler kube-scheduler --kubeconfig "$kc/scheduler.conf" \
  --authentication-kubeconfig "$kc/scheduler.conf" --authorization-kubeconfig "$kc/scheduler.conf" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false

# --- the node: containerd, the kubelet, kube-proxy
render() { sed -e "s|@STATE@|$state|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
  -e "s|@POD_SUBNET@|$POD_SUBNET|g" -e "s|@POD_GATEWAY@|$POD_GATEWAY|g" -e "s|@POD_CIDR@|$POD_CIDR|g" \
  -e "s|@CNI_BRIDGE@|$CNI_BRIDGE|g" -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" "$1"; }
render "$here/node/containerd.toml" > "$state/containerd.toml"
render "$here/node/10-amrutam.conflist" > "$state/cni/10-amrutam.conflist"
render "$here/node/kubelet.yaml" > "$state/kubelet.yaml"
render "$here/node/kube-proxy.yaml" > "$state/kube-proxy.yaml"
# The pods' resolver: cluster names only (the kubelet adds the search list and DNS IP).
printf 'nameserver %s\noptions ndots:5\n' "$DNS_IP" > "$state/resolv.conf"
start containerd containerd --config "$state/containerd.toml"
sock=/run/amrutam-containerd/containerd.sock
wait_for containerd 30 ctr --address "$sock" version

# The add-ons' images: static programs packed by archive.py, imported under local names.
img="$state/images"; mkdir -p "$img"
python3 "$here/archive.py" "$img/pause.tar" "$PAUSE_IMAGE" /pause "$bin/pause"
python3 "$here/archive.py" "$img/coredns.tar" "$COREDNS_IMAGE" /coredns "$bin/coredns"
python3 "$here/archive.py" "$img/local-path.tar" "$LOCAL_PATH_IMAGE" /usr/bin/local-path-provisioner \
  "$bin/local-path-provisioner=/usr/bin/"
python3 "$here/archive.py" "$img/busybox.tar" "$BUSYBOX_IMAGE" /bin/sh "$(command -v busybox)=/bin/busybox" \
  @bin/sh=busybox @bin/mkdir=busybox @bin/rm=busybox @bin/chmod=busybox @bin/ls=busybox
python3 "$here/archive.py" "$img/traefik.tar" "$TRAEFIK_IMAGE" /traefik "$bin/traefik"
python3 "$here/archive.py" "$img/metrics-server.tar" "$METRICS_SERVER_IMAGE" /metrics-server \
  "$bin/metrics-server"
for archive in "$img"/*.tar; do
  ctr --address "$sock" -n k8s.io images import --no-unpack=false "$archive" >/dev/null
done

start kubelet kubelet --config "$state/kubelet.yaml" --kubeconfig "$kc/kubelet.conf" \
  --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --root-dir "$state/kubelet" \
  --cert-dir "$state/kubelet/pki"
start kube-proxy kube-proxy --config "$state/kube-proxy.yaml"

wait_for "node $NODE_NAME" 120 kubectl wait --for condition=Ready "node/$NODE_NAME" --timeout 1s
wait_for "default ServiceAccount" 60 kubectl get serviceaccount default

# --- add-ons: CoreDNS (no forward plugin) and local-path storage (the default class)
render "$here/addons/coredns.yaml" | sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" | kubectl apply -f - >/dev/null
render "$here/addons/local-path.yaml" | sed -e "s|@LOCAL_PATH_IMAGE@|$LOCAL_PATH_IMAGE|g" \
  -e "s|@BUSYBOX_IMAGE@|$BUSYBOX_IMAGE|g" | kubectl apply -f - >/dev/null

# --- what production clusters add (hack/cluster/README.md, "Add-ons"):
# NetworkPolicies enforced by kube-router's firewall alone, a host process like kube-proxy.
kubectl apply -f "$here/addons/kube-router.yaml" >/dev/null
start kube-router kube-router --kubeconfig "$kc/kube-router.conf" --hostname-override "$NODE_NAME" \
  --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
  --enable-pod-egress=false --service-cluster-ip-range "$SERVICE_CIDR" \
  --health-port 20244 --metrics-port 0
# Traefik: its CRDs and ClusterRole as its module ships them, and a pod on ports 80/443.
module() { (cd "$here/modules/$1" && go list -m -f '{{.Dir}}' "$2"); }
traefik_docs="$(module traefik github.com/traefik/traefik/v3)/docs/content/reference/dynamic-configuration"
kubectl apply --server-side -f "$traefik_docs/kubernetes-crd-definition-v1.yml" >/dev/null
sed -n '/^kind: ClusterRole$/,/^---/p' "$traefik_docs/kubernetes-crd-rbac.yml" | sed '/^---/d' \
  | sed '1i apiVersion: rbac.authorization.k8s.io/v1' | kubectl apply -f - >/dev/null
render "$here/addons/traefik.yaml" | sed -e "s|@TRAEFIK_IMAGE@|$TRAEFIK_IMAGE|g" | kubectl apply -f - >/dev/null
# metrics-server: its own manifests with this cluster's image (kubectl's kustomize).
ms="$state/addons/metrics-server"; mkdir -p "$ms"
cp -r "$(module metrics-server sigs.k8s.io/metrics-server)/manifests/base" "$ms/"; chmod -R u+w "$ms"
sed -e "s|@METRICS_SERVER_IMAGE_NAME@|${METRICS_SERVER_IMAGE%:*}|" \
  -e "s|@METRICS_SERVER_IMAGE_TAG@|${METRICS_SERVER_IMAGE##*:}|" \
  "$here/addons/metrics-server/kustomization.yaml" > "$ms/kustomization.yaml"
kubectl apply -k "$ms" >/dev/null

kubectl -n kube-system rollout status deployment/coredns --timeout 120s >/dev/null
kubectl -n local-path-storage rollout status deployment/local-path-provisioner --timeout 120s >/dev/null
kubectl -n traefik rollout status deployment/traefik --timeout 120s >/dev/null
kubectl -n kube-system rollout status deployment/metrics-server --timeout 180s >/dev/null
wait_for kube-router 60 curl -sf http://127.0.0.1:20244/healthz

# The ingress's name, for clients on this machine (the tests, Locust, a browser).
grep -q "# amrutam-cluster$" /etc/hosts || echo "$NODE_IP $INGRESS_HOST  # amrutam-cluster" >> /etc/hosts

touch "$state/ready"
echo "cluster $KUBERNETES_VERSION up in $(($(date +%s) - started)) s (node $NODE_NAME, $NODE_IP)" >&2
echo "$kc/admin.conf"
