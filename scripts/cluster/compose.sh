#!/usr/bin/env bash
# compose.yaml under podman-compose (Debian's) with the images build.sh made, and everything it
# started taken away again: containers, volume, network, podman's firewall chains, ip_forward.
# Usage: compose.sh up|down|ps PROJECT   (SERVICE_TOKEN, MW_API_PORT, MW_CHAT_PORT from the caller)
set -euo pipefail
source "$(dirname "$0")/env.sh"
action=${1:?usage: compose.sh up|down|ps PROJECT} project=${2:?usage: compose.sh up|down|ps PROJECT}
export MW_IMAGE_PREFIX=localhost/multyworkemon MW_VERSION=$IMAGE_TAG POSTGRES_IMAGE
compose=(podman-compose --project-name "$project" --file "$REPO/compose.yaml")
saved=$STATE/compose-$project.host
mkdir -p "$STATE"

case $action in
  up)
    # netavark turns on forwarding for the project's bridge and leaves it on; down puts it back.
    save_host "$saved" net.ipv4.ip_forward
    "${compose[@]}" up -d
    ;;
  ps)
    podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'
    ;;
  down)
    set +e
    "${compose[@]}" down -v
    # What podman-compose 1.0.3 misses when `up` failed half way: anything with the project label.
    filter="label=io.podman.compose.project=$project"
    podman ps -aq --filter "$filter" | xargs -r podman rm -f -t 5 >/dev/null
    podman volume ls -q --filter "$filter" | xargs -r podman volume rm -f >/dev/null
    podman network ls -q --filter "$filter" | xargs -r podman network rm -f >/dev/null
    # netavark's base chains and podman's cgroup parent stay after the last container goes;
    # remove them when no container of anyone's runs (conmon watches every podman container).
    # A removed container's conmon can outlive `podman rm` by a moment: give it 10 s to go.
    for _ in $(seq 20); do pgrep -x conmon >/dev/null || break; sleep 0.5; done
    if ! pgrep -x conmon >/dev/null; then
      drop_chains NETAVARK
      drop_cgroups libpod_parent
    fi
    restore_host "$saved"
    exit 0
    ;;
  *) echo "usage: compose.sh up|down|ps PROJECT" >&2; exit 2 ;;
esac
