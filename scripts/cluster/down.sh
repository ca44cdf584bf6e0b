#!/usr/bin/env bash
# Takes down what up.sh started, whatever state it is in (half started, pods running, processes
# already dead): pods, processes, containers, network namespaces, the bridge, firewall chains,
# mounts, cgroups and the host settings it changed. Keeps only $STATE/logs. Safe to run twice.
set -uo pipefail
source "$(dirname "$0")/env.sh"
[ -d "$STATE" ] || exit 0
cd "$STATE"
B=$KUBE_BIN
CTR="ctr --address $STATE/containerd/containerd.sock --namespace k8s.io"
alive() { [ -f "pids/$1" ] && kill -0 "$(cat "pids/$1")" 2>/dev/null; }
stop() { # name...: SIGTERM to all at once, up to 10 s, then SIGKILL
  local name pids=()
  for name in "$@"; do alive "$name" && pids+=("$(cat "pids/$name")"); done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 40); do kill -0 "${pids[@]}" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "${pids[@]}" 2>/dev/null
}

# 1. While the node still runs, let the kubelet remove the pods itself: it unmounts their
#    volumes and the CNI plugin deletes their network namespaces and veths.
#    No grace: this is the end, and graceful stops are what the tests before checked. Their logs
#    go to logs/pods first, for a failed run's post-mortem.
if alive kube-apiserver && alive kubelet; then
  rm -rf logs/pods && mkdir -p logs/pods
  "$B/kubectl" get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null |
    while read -r ns pod; do
      "$B/kubectl" -n "$ns" logs "$pod" --all-containers --timestamps > "logs/pods/$ns-$pod.log" 2>&1
    done
  "$B/kubectl" delete deployments,replicasets,statefulsets,daemonsets,jobs --all -A --wait=false >/dev/null 2>&1
  "$B/kubectl" delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1
  for _ in $(seq 60); do [ -z "$("$B/kubectl" get pods -A -o name 2>/dev/null)" ] && break; sleep 1; done
fi

# 2. Kubernetes processes, then kube-proxy's own cleanup of its iptables chains.
stop kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver
[ -x "$B/kube-proxy" ] && "$B/kube-proxy" --cleanup >/dev/null 2>&1

# 3. Containers the kubelet did not get to: kill their tasks, stop the sandboxes' network
#    namespaces, then containerd and the shims (matched by our socket, never anyone else's).
if alive containerd; then
  for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $($CTR containers ls -q 2>/dev/null); do $CTR containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd
for pid in $(pgrep -f -- "-address $STATE/containerd/containerd.sock"); do kill -9 "$pid" 2>/dev/null; done
stop etcd

# 4. Network: the pods' namespaces (those made since up.sh started), the bridge, the node
#    address, and every KUBE-* chain the kubelet and kube-proxy made (no one else makes them).
if [ -f netns.before ]; then
  for ns in $(ip netns list | awk '{print $1}' | grep '^cni-'); do
    grep -qx "$ns" netns.before || ip netns delete "$ns"
  done
fi
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
[ -f node-ip.added ] && ip addr del "$NODE_IP/32" dev lo 2>/dev/null; rm -f node-ip.added
drop_chains KUBE-

# 5. Mounts under $STATE and containerd's root (volumes, overlay root filesystems, shm), deepest first.
findmnt -rn -o TARGET | grep -e "^$STATE/" -e "^$CONTAINERD_ROOT/" | sort -r |
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done

# 6. The kubelet's cgroups (cgroupfs driver) and the host settings up.sh recorded.
drop_cgroups kubepods
restore_host host.saved

# 7. Everything but the logs.
find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null
echo "cluster down"
