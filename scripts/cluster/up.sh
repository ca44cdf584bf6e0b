#!/usr/bin/env bash
# Starts a single-node Kubernetes in $STATE from what build.sh made: etcd, containerd (runc, CNI
# bridge), kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, CoreDNS
# and a default StorageClass. Every process writes its PID to $STATE/pids/ so down.sh finds it;
# run down.sh even when this fails half way. Nothing listens on the host's real addresses.
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ "$(id -u)" = 0 ] || { echo "up.sh: needs root (mounts, netns, iptables, cgroups)" >&2; exit 1; }
[ -x "$KUBE_BIN/kubelet" ] || { echo "up.sh: run scripts/cluster/build.sh first" >&2; exit 1; }
[ -e "$STATE/pids" ] && "$(dirname "$0")/down.sh"   # the leftovers of a run that was killed
mkdir -p "$STATE"/{pids,logs,pki,etcd,containerd,cni/net.d,kubelet,pod-logs,pv/pg0}
cd "$STATE"
B=$KUBE_BIN P=$STATE/pki
API=https://$NODE_IP:$APISERVER_PORT
start() { # name command...: in the background, its output in logs/name.log
  local name=$1; shift
  nohup "$@" > "logs/$name.log" 2>&1 &
  echo $! > "pids/$name"
}
wait_for() { # what seconds command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "up.sh: $what not ready after ${seconds}s; logs in $STATE/logs" >&2; return 1
}

# ---- host settings the cluster changes; down.sh puts the recorded values back ----
# The kubelet sets kernel tunables (panic on oops, overcommit), the bridge plugin turns on
# forwarding, containerd makes /run/netns a mount: all survive the processes. Three folders have
# fixed places no setting moves: the kubelet's device-plugins socket, containerd's shim sockets
# (/run/containerd/s) and the CNI library's result cache.
save_host host.saved net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom \
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes \
  /var/lib/kubelet /run/containerd /var/lib/cni
# Service traffic between pods on one bridge is bridged, not routed: without this, iptables
# (kube-proxy's DNAT) never sees it and the replies come back from the wrong address.
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
ip addr add "$NODE_IP/32" dev lo
touch node-ip.added
# Network namespaces that exist before the cluster: down.sh deletes only the pods' new ones.
ip netns list | awk '{print $1}' > netns.before

# ---- PKI: one CA, a certificate per component, the service-account key pair ----
cd pki
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 -subj /CN=multyworkemon-test-ca 2>/dev/null
cert() { # name subject [extensions]
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "${3:-extendedKeyUsage=clientAuth}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 7 -extfile "$1.ext" 2>/dev/null
}
cert apiserver /CN=kube-apiserver "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP
extendedKeyUsage=serverAuth"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert admin "/O=system:masters/CN=kubernetes-admin"
cert node "/O=system:nodes/CN=system:node:$NODE_NAME"
cert controller-manager /CN=system:kube-controller-manager
cert scheduler /CN=system:kube-scheduler
cert kube-proxy /CN=system:kube-proxy
openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
cd ..
for user in admin node controller-manager scheduler kube-proxy; do
  cat > "$user.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$API", certificate-authority: "$P/ca.crt"}}]
users: [{name: $user, user: {client-certificate: "$P/$user.crt", client-key: "$P/$user.key"}}]
contexts: [{name: local, context: {cluster: local, user: $user, namespace: default}}]
current-context: local
EOF
done

# ---- etcd (Debian's), on loopback ----
start etcd etcd --name local --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT"

# ---- containerd (Debian's 1.6): its image store in the cache, everything else under $STATE ----
# restrict_oom_score_adj: containerd 1.6 otherwise fails to lower a pod's OOM score without
# CAP_SYS_RESOURCE. The opt plugin would create /opt/containerd, runc's state /run/containerd/runc.
# CNI plugins from Debian.
containerd config default | sed \
  -e "s#^root = .*#root = \"$CONTAINERD_ROOT\"#" \
  -e "s#^state = .*#state = \"$STATE/containerd/state\"#" \
  -e "s#address = \"/run/containerd/containerd.sock\"#address = \"$STATE/containerd/containerd.sock\"#" \
  -e "s#path = \"/opt/containerd\"#path = \"$STATE/containerd/opt\"#" \
  -e 's#restrict_oom_score_adj = false#restrict_oom_score_adj = true#' \
  -e "s#^\( *\)Root = \"\"#\1Root = \"$STATE/containerd/runc\"#" \
  -e "s#sandbox_image = .*#sandbox_image = \"$PAUSE_IMAGE\"#" \
  -e 's#bin_dir = "/opt/cni/bin"#bin_dir = "/usr/lib/cni"#' \
  -e "s#conf_dir = \"/etc/cni/net.d\"#conf_dir = \"$STATE/cni/net.d\"#" > containerd/config.toml
# One bridge of our own name; no masquerading and no port maps, so the only firewall rules are
# kube-proxy's and the kubelet's (down.sh removes them).
cat > cni/net.d/10-multyworkemon.conflist <<EOF
{"cniVersion": "1.0.0", "name": "multyworkemon-pods", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$STATE/cni/ipam"}}]}
EOF
start containerd containerd --config "$STATE/containerd/config.toml"
CTR="ctr --address $STATE/containerd/containerd.sock --namespace k8s.io"
wait_for containerd 30 $CTR version
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

# ---- images: podman's store -> containerd's k8s.io namespace ----
# containerd's image store is kept in the cache between runs; only images whose podman id
# changed since they were imported are saved and imported again (all seven take about a minute).
images="$PAUSE_IMAGE $COREDNS_IMAGE $POSTGRES_IMAGE"
for s in $SERVICES; do images="$images localhost/multyworkemon/${s%:*}:$IMAGE_TAG"; done
mkdir -p "$CONTAINERD_ROOT" && imported=$CONTAINERD_ROOT/imported
touch "$imported"
changed=""
for image in $images; do
  id=$(podman image inspect --format '{{.Id}}' "$image")
  grep -qx "$image $id" "$imported" || changed="$changed $image"
done
if [ -n "$changed" ]; then
  log "importing into containerd:$changed"
  podman save -q --multi-image-archive -o images.tar $changed
  $CTR images import images.tar >/dev/null
  rm -f images.tar
  for image in $images; do echo "$image $(podman image inspect --format '{{.Id}}' "$image")"; done > "$imported"
fi

# ---- control plane ----
log "control plane"
start kube-apiserver "$B/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$NODE_IP" --secure-port="$APISERVER_PORT" --advertise-address="$NODE_IP" \
  --service-cluster-ip-range="$SERVICE_CIDR" --cert-dir="$STATE/apiserver-certs" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP
# The controller manager exits when it starts before the apiserver answers /readyz.
wait_for "kube-apiserver /readyz" 120 "$B/kubectl" get --raw /readyz
# Secure port 0: no HTTPS endpoint (nothing scrapes them here), so no port to collide with.
start kube-controller-manager "$B/kube-controller-manager" --kubeconfig=controller-manager.kubeconfig \
  --authentication-kubeconfig=controller-manager.kubeconfig --authorization-kubeconfig=controller-manager.kubeconfig \
  --secure-port=0 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR"
start kube-scheduler "$B/kube-scheduler" --kubeconfig=scheduler.kubeconfig \
  --authentication-kubeconfig=scheduler.kubeconfig --authorization-kubeconfig=scheduler.kubeconfig \
  --secure-port=0 --leader-elect=false

# ---- node ----
log "node"
# Pods resolve only cluster names: an empty host resolv.conf keeps every lookup in the cluster.
: > resolv.conf
cat > kubelet.yaml <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
healthzPort: 0
readOnlyPort: 0
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: "$P/ca.crt"}}
authorization: {mode: AlwaysAllow}
# No systemd on these machines, and cgroup v1 (hybrid): the kubelet refuses v1 unless told.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
podLogsDir: $STATE/pod-logs
resolvConf: $STATE/resolv.conf
clusterDomain: cluster.local
clusterDNS: ["$CLUSTER_DNS"]
serializeImagePulls: false
maxPods: 50
# The machine's disk is shared and often more than 85% full: no image GC, no disk eviction.
evictionHard: {"memory.available": "200Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
EOF
# --node-ip must not be loopback, or the node reports no address and the apiserver cannot reach
# the kubelet (logs, exec, port-forward): NODE_IP, on lo, is neither loopback nor external.
start kubelet "$B/kubelet" --config=kubelet.yaml --kubeconfig=node.kubeconfig --root-dir="$STATE/kubelet" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --cert-dir="$STATE/kubelet/pki"
# kube-proxy leaves the host's sysctls alone: no conntrack table sizing or timeouts, no
# route_localnet (localhostNodePorts), no health or metrics ports.
cat > kube-proxy.yaml <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: ""
metricsBindAddress: ""
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start kube-proxy "$B/kube-proxy" --config=kube-proxy.yaml
wait_for "node $NODE_NAME Ready" 120 "$B/kubectl" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s

# ---- CoreDNS and storage ----
mkdir -p "$STATE/pv/pg0" && chown 70:70 "$STATE/pv/pg0"   # the PostgreSQL image's uid
sed -e "s#__COREDNS_IMAGE__#$COREDNS_IMAGE#" -e "s#__CLUSTER_DNS__#$CLUSTER_DNS#" -e "s#__PV_PATH__#$STATE/pv/pg0#" \
  "$REPO/scripts/cluster/addons.yaml" | "$B/kubectl" apply -f - >/dev/null
"$B/kubectl" -n kube-system rollout status deploy/coredns --timeout=180s >/dev/null
log "cluster up: KUBECONFIG=$KUBECONFIG"
