#!/usr/bin/env bash
# Builds what the local cluster runs, each piece only when its versioned cache entry is missing:
#   Go binaries (Kubernetes, CoreDNS) from the Go module proxy   -> $CACHE/<name>-v<version>/
#   images (base, the four services, PostgreSQL, pause, CoreDNS)  -> podman storage in $CACHE
# Usage: build.sh [binaries|images|all]   (default all). Cold: ~10-20 min of Go on 2 cores.
set -euo pipefail
source "$(dirname "$0")/env.sh"
mkdir -p "$CACHE"
export GOFLAGS="-mod=mod -trimpath" CGO_ENABLED=0

build_kubernetes() {
  [ -x "$KUBE_BIN/kubelet" ] && return
  log "building Kubernetes v$KUBE_VERSION (cold: about 10 min of CPU per core)"
  local work; work=$(mktemp -d "$CACHE/.k8s-build.XXXXXX")
  # `go install k8s.io/kubernetes/cmd/...@v` refuses a module with replace directives (it points
  # its staging modules at ./staging). A throwaway module requires it and replaces each staging
  # module with its published v0.x twin instead.
  local staging=${KUBE_VERSION/#1./0.}
  local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    printf 'module local/kubernetes-build\n\ngo 1.26\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$KUBE_VERSION"
    grep -oE '^\s+k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " v" v}'
    printf ')\n'
  } > "$work/go.mod"
  local cmds="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
  # Name the version on every path: a bare `go get k8s.io/kubernetes/cmd/x` moves to the newest
  # release and the staging replaces no longer match.
  (cd "$work" && go get $(for c in $cmds; do echo "k8s.io/kubernetes/cmd/$c@v$KUBE_VERSION"; done))
  # Without the version stamps the servers call themselves v0.0.0 and kubectl refuses to talk.
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
  ld="$ld -X k8s.io/component-base/version.gitMajor=${KUBE_VERSION%%.*}"
  ld="$ld -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
  ld="$ld -X k8s.io/component-base/version.gitTreeState=clean"
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
  mkdir -p "$work/bin"
  # One `go build` for all six: the shared packages compile once.
  (cd "$work" && go build -ldflags "$ld" -o "$work/bin/" $(for c in $cmds; do echo "k8s.io/kubernetes/cmd/$c"; done))
  # pause, the sandbox container: a static C program shipped inside the module.
  local src; src=$(cd "$work" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$work/bin/pause" "$src/build/pause/linux/pause.c"
  rm -rf "$KUBE_BIN" && mv "$work/bin" "$KUBE_BIN" && rm -rf "$work"
}

build_coredns() {
  [ -x "$COREDNS_BIN/coredns" ] && return
  log "building CoreDNS v$COREDNS_VERSION"
  local work; work=$(mktemp -d "$CACHE/.coredns-build.XXXXXX")
  GOBIN=$work go install -ldflags '-s -w' "github.com/coredns/coredns@v$COREDNS_VERSION"
  rm -rf "$COREDNS_BIN" && mkdir -p "$COREDNS_BIN" && mv "$work/coredns" "$COREDNS_BIN/" && rm -rf "$work"
}

podman_config() {
  mkdir -p "$CACHE/containers/storage"
  # runroot holds locks and mount state that must not outlive a reboot: /run is a tmpfs.
  cat > "$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$CACHE/containers/storage"
runroot = "/run/multyworkemon-containers"
CONF
  # crun 1.8 (Debian) refuses these VMs' hybrid cgroups ("cgroups in hybrid mode not supported"):
  # runc. The bounding set lacks CAP_SYS_RESOURCE, so podman's default rlimits (nofile 1048576)
  # fail with "setrlimit: operation not permitted": lower ones. No systemd, no journald here.
  cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
# netavark + aardvark-dns: compose services find each other by name (the CNI default needs dnsname).
network_backend = "netavark"
CONF
}

image_exists() { podman image exists "$1"; }

# A container with nothing but one static binary.
binary_image() { # name binary entrypoint user
  image_exists "$1" && return
  [ -x "$2" ] || { echo "build.sh: $2 is missing; run build.sh binaries" >&2; return 1; }
  local c; c=$(buildah from scratch)
  buildah copy -q "$c" "$2" "$3" >/dev/null
  buildah config --entrypoint "[\"$3\"]" --user "$4" "$c"
  buildah commit --rm -q "$c" "$1" >/dev/null
}

base_image() {
  # Keyed by its tag: change the tag in env.sh when this recipe changes.
  image_exists "$BASE_IMAGE" && return
  log "base image $BASE_IMAGE from Debian packages"
  local work; work=$(mktemp -d "$CACHE/.base.XXXXXX")
  # The host's own apt sources (a mirror the machine can reach); a file as MIRROR is pasted into
  # the new root as is. The host's extra CA certificates go in too: where a TLS-inspecting proxy
  # stands between this machine and PyPI, uv and pip in the image builds must trust it.
  local sources; sources=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
  mkdir -p "$work/ca"; cp /usr/local/share/ca-certificates/*.crt "$work/ca/" 2>/dev/null || true
  # python3 of bookworm is 3.11, what python:3.11-slim-bookworm has; passwd for the Dockerfile's
  # groupadd/useradd; pip because the Dockerfile installs uv with it.
  mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,passwd \
    "$DEBIAN_SUITE" "$work/rootfs.tar" "${sources:-/etc/apt/sources.list}" \
    --customize-hook="mkdir -p \"\$1/usr/local/share/ca-certificates\"; cp -r $work/ca/. \"\$1/usr/local/share/ca-certificates/\"; chroot \"\$1\" update-ca-certificates >/dev/null" \
    --customize-hook='chroot "$1" apt-get clean; rm -rf "$1"/var/lib/apt/lists/*'
  local c; c=$(buildah from scratch)
  buildah add -q "$c" "$work/rootfs.tar" / >/dev/null
  # Debian marks its Python externally managed; the official image does not, and the Dockerfile
  # pip-installs uv. uv reads SSL_CERT_FILE, so it trusts the same certificates as the system.
  buildah config --env PIP_BREAK_SYSTEM_PACKAGES=1 --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env LANG=C.UTF-8 --cmd python3 "$c"
  buildah commit --rm -q "$c" "$BASE_IMAGE" >/dev/null
  rm -rf "$work"
}

# Stands in for postgres:17.5-alpine: Debian's postgresql-15 with the official image's interface
# (POSTGRES_USER/PASSWORD/DB, PGDATA, pg_isready on PATH) and its uid 70, which the chart runs as.
postgres_image() {
  # Built every time: --layers makes an unchanged Containerfile a cache hit, a changed one rebuilds.
  log "PostgreSQL image $POSTGRES_IMAGE"
  buildah bud --quiet --layers --network host --pull-never --build-arg "BASE=$BASE_IMAGE" -t "$POSTGRES_IMAGE" \
    -f "$REPO/scripts/cluster/postgres/Containerfile" "$REPO/scripts/cluster/postgres" >/dev/null
}

service_images() {
  # The unchanged services/Dockerfile; --layers reuses every step whose inputs did not change, so
  # a rerun without source changes takes seconds. Host network: no netavark bridge or firewall
  # rules for the RUN steps (that need PyPI), so nothing to clean up.
  local s
  for s in $SERVICES; do
    log "image localhost/multyworkemon/${s%:*}:$IMAGE_TAG"
    buildah bud --quiet --layers --network host --pull-never -f "$REPO/services/Dockerfile" \
      --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "SERVICE=${s%:*}" --build-arg "PORT=${s#*:}" \
      -t "localhost/multyworkemon/${s%:*}:$IMAGE_TAG" "$REPO" >/dev/null
  done
  # Each source change leaves the previous images' layers behind, untagged: drop those a week old
  # (younger ones are the layer cache the next build reuses).
  podman image prune -f --filter until=168h >/dev/null
}

build_images() {
  podman_config
  base_image
  postgres_image
  service_images
  binary_image "$PAUSE_IMAGE" "$KUBE_BIN/pause" /pause 65535:65535
  binary_image "$COREDNS_IMAGE" "$COREDNS_BIN/coredns" /coredns 65532:65532
}

case "${1:-all}" in
  binaries) build_kubernetes; build_coredns ;;
  images) build_images ;;
  all) build_kubernetes; build_coredns; build_images ;;
  *) echo "usage: $0 [binaries|images|all]" >&2; exit 2 ;;
esac
