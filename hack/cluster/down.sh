#!/usr/bin/env bash
# `make cluster-down`: stops the cluster and removes what it put on the host: its
# processes, containers, mounts, network namespaces, bridges, route, iptables rules and
# chains, the kubelet's cgroups, and ip_forward as it was. Keeps the build cache.
# CLUSTER_KEEP_STATE=1 keeps $CLUSTER_STATE (logs, etcd) for a post-mortem.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/network.env"
state="${CLUSTER_STATE:-/var/lib/amrutam-cluster}"
run="$state/run"

stop() {  # name: SIGTERM, then SIGKILL after 10 s
  local pidfile="$run/$1.pid" pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}

# The kubelet first, so it restarts nothing; then every container through containerd.
stop kube-proxy
stop kubelet
sock=/run/amrutam-containerd/containerd.sock
if [[ -S $sock ]] && command -v ctr >/dev/null; then
  for task in $(ctr --address "$sock" -n k8s.io tasks list -q 2>/dev/null); do
    ctr --address "$sock" -n k8s.io tasks kill -s KILL "$task" >/dev/null 2>&1
  done
  sleep 1
fi
stop containerd
# containerd's shims outlive it; they hold the pods' processes.
pkill -9 -f "containerd-shim-runc-v2 -namespace k8s.io .*-address $sock" 2>/dev/null
for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$name"; done
[[ -x $state/bin/kube-proxy ]] && "$state/bin/kube-proxy" --cleanup >/dev/null 2>&1
stop kube-router

# Mounts under the state folder and containerd's run folder, deepest first.
grep -E " ($state|/run/amrutam-containerd)[/ ]" /proc/self/mounts | awk '{print $2}' \
  | sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null; done
# The pods' network namespaces (a namespace hidden under a later bind mount of
# /run/netns, e.g. podman's, cannot be unmounted: its veth goes below, it stays empty).
for ns in /run/netns/cni-*; do
  [[ -e $ns ]] || continue
  umount "$ns" 2>/dev/null && rm -f "$ns"
done

# The kubelet's chains that kube-proxy --cleanup leaves, and our drops.
for table in filter nat mangle; do
  for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
    iptables -t "$table" -S 2>/dev/null | grep -E "^-A [A-Z-]+ .*-j $chain( |$)" \
      | sed 's/^-A/-D/' | while read -r rule; do eval iptables -t "$table" "$rule"; done
    iptables -t "$table" -F "$chain" 2>/dev/null && iptables -t "$table" -X "$chain" 2>/dev/null
  done
done
# Chains of kube-router's policies (its --cleanup-config panics on a host without IPVS)
# and of the portmap plugin's host ports (the kubelet that would have removed them is
# gone): the rules that jump to them, then the chains themselves.
drop_chains() {  # table, regular expression of chain names
  local table=$1 pattern=$2 chains
  chains=$(iptables -t "$table" -S 2>/dev/null | awk -v p="^($pattern)" '$1 == "-N" && $2 ~ p {print $2}')
  [[ -n $chains ]] || return 0
  iptables -t "$table" -S | grep -E "^-A .* -j ($pattern)" | grep -vE "^-A ($pattern)" \
    | sed 's/^-A/-D/' | while read -r rule; do eval iptables -t "$table" "$rule"; done
  for chain in $chains; do iptables -t "$table" -F "$chain"; done
  for chain in $chains; do iptables -t "$table" -X "$chain"; done
}
drop_chains filter 'KUBE-ROUTER-|KUBE-POD-FW-|KUBE-NWPLCY-'
drop_chains nat 'CNI-HOSTPORT-|CNI-DN-'
ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)' | xargs -r -n1 ipset destroy 2>/dev/null
for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
  for chain in FORWARD POSTROUTING; do
    iptables -t mangle -S "$chain" 2>/dev/null | grep -E "^-A $chain -s $cidr .*-j DROP" \
      | sed 's/^-A/-D/' | while read -r rule; do eval iptables -t mangle "$rule"; done
  done
done
ip route del "$SERVICE_CIDR" 2>/dev/null
for veth in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F'[:@ ]+' '{print $2}'); do
  ip link del "$veth" 2>/dev/null
done
ip link del "$CNI_BRIDGE" 2>/dev/null
ip link del "$NODE_BRIDGE" 2>/dev/null
[[ -f $run/ip_forward ]] && cat "$run/ip_forward" > /proc/sys/net/ipv4/ip_forward
# The ingress's name (written in place: /etc/hosts may be a mount that cannot be replaced).
if grep -q "# amrutam-cluster$" /etc/hosts; then
  hosts=$(grep -v "# amrutam-cluster$" /etc/hosts); printf '%s\n' "$hosts" > /etc/hosts
fi

# The cgroups the kubelet made beside the machine's own (never the mounts themselves).
for hierarchy in /sys/fs/cgroup/*/; do
  [[ -d ${hierarchy}kubepods ]] || continue
  find "${hierarchy}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done

if [[ -z ${CLUSTER_KEEP_STATE:-} ]]; then
  rm -rf "$state" /run/amrutam-containerd
else
  rm -f "$state/ready"
fi
echo "cluster down"
