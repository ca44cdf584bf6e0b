# Sourced by the other scripts in this folder: versions, where things live, shared helpers.
# A real single-node Kubernetes for tests/cluster, without Docker or any container registry:
# Kubernetes and CoreDNS are built from the Go module proxy, images from Debian packages and
# services/Dockerfile. Needs root and the Debian packages of scripts/apt-packages.txt.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

KUBE_VERSION=1.36.3        # kind v0.32.0's node is v1.36 (kind-config.yaml, tests/k8s KUBE_VERSIONS)
COREDNS_VERSION=1.12.4
PAUSE_VERSION=3.10.1       # the sandbox image; pause.c ships in the k8s.io/kubernetes module
DEBIAN_SUITE=bookworm      # the base image: python3 of this suite (3.11, as python:3.11-slim-bookworm)

# Built things survive the clone (keyed by version inside): Go binaries and the image store.
CACHE=${MW_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multyworkemon-cluster}
KUBE_BIN=$CACHE/kubernetes-v$KUBE_VERSION
COREDNS_BIN=$CACHE/coredns-v$COREDNS_VERSION
CONTAINERD_ROOT=$CACHE/containerd-root   # containerd's images; the running state is under STATE
# Everything a running cluster holds (etcd, containerd, kubelet, logs, PKI) lives in the clone
# and is removed by down.sh; STATE is short because unix socket paths are limited to 107 bytes.
STATE=${MW_CLUSTER_STATE:-$REPO/.cluster}

# podman and buildah keep their images in the cache, never in the host's /var/lib/containers.
export CONTAINERS_STORAGE_CONF=$CACHE/containers/storage.conf
export CONTAINERS_CONF=$CACHE/containers/containers.conf
export KUBECONFIG=$STATE/admin.kubeconfig

# The node's address: a /32 on the loopback device, so the cluster never uses the host's real
# network (no dummy-link module on these VMs). It must not be 127.x: the kubelet then reports no
# node address, and pods cannot reach a loopback-bound apiserver through the `kubernetes` Service.
NODE_IP=10.245.255.1
NODE_NAME=mw-node
APISERVER_PORT=36443       # on NODE_IP; etcd on 127.0.0.1, on ports away from its usual ones
ETCD_PORT=32379
ETCD_PEER_PORT=32380
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
CLUSTER_DNS=10.96.0.10
BRIDGE=mw-cni0

# Image names the cluster and compose use (podman storage above, then containerd).
IMAGE_TAG=${MW_IMAGE_TAG:-0.1.0}
BASE_IMAGE=localhost/multyworkemon/debian-python:$DEBIAN_SUITE
POSTGRES_IMAGE=localhost/multyworkemon/postgres:15
PAUSE_IMAGE=localhost/multyworkemon/pause:$PAUSE_VERSION
COREDNS_IMAGE=localhost/multyworkemon/coredns:$COREDNS_VERSION
SERVICES="ai-secretary:8000 ai-guesser:8001 ai-systemanalitic:8002 ai-communicator:8003"

log() { echo "== $(date +%T) $*"; }

# What a run changes on the host and must put back: the named sysctls and paths (recorded when
# absent, removed again after), and whether /run/netns was a mount point (`ip netns`, containerd
# and netavark make it one on first use and never undo it).
save_host() { # file [sysctl|path]...
  local file=$1 item; shift
  for item in "$@"; do
    case $item in
      /*) [ -e "$item" ] || echo "absent $item" ;;
      *) echo "sysctl $item=$(sysctl -n "$item")" ;;
    esac
  done > "$file"
  mountpoint -q /run/netns && echo "netns-mount yes" >> "$file" || echo "netns-mount no" >> "$file"
}
restore_host() { # file
  [ -f "$1" ] || return 0
  local what value
  while read -r what value; do
    case $what in
      sysctl) sysctl -qw "$value" ;;
      absent) rm -rf "$value" ;;
      netns-mount) [ "$value" = no ] && mountpoint -q /run/netns && [ -z "$(ls -A /run/netns)" ] &&
                     umount /run/netns && rmdir /run/netns ;;
    esac
  done < "$1"
  rm -f "$1"
}

# Removes the cgroup tree $1 (kubepods, libpod_parent) from every hierarchy, leaves first; only
# empty cgroups can go, so this never touches a running process.
drop_cgroups() {
  local tree
  for tree in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
    [ -d "$tree" ] && find "$tree" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}

# Removes every iptables/ip6tables chain whose name starts with $1, and the rules that jump to
# them from other chains (the built-in ones included), in every table.
drop_chains() {
  local prefix=$1 ipt table chains rule c
  for ipt in iptables ip6tables; do
    for table in filter nat mangle raw; do
      chains=$($ipt -t $table -S 2>/dev/null | awk -v p="$prefix" '$1 == "-N" && index($2, p) == 1 {print $2}')
      [ -n "$chains" ] || continue
      $ipt -t $table -S | grep -E -- "-j $prefix" | grep -v -E "^-(N|A $prefix)" | sed 's/^-A/-D/' |
        while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null; done
      for c in $chains; do $ipt -t $table -F "$c" 2>/dev/null; done
      for c in $chains; do $ipt -t $table -X "$c" 2>/dev/null; done
    done
  done
}
