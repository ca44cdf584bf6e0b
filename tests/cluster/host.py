"""What a cluster or compose run may leave on this machine, looked at the way an operator would
(ps, findmnt, ip netns, ip link, iptables-save, the cgroup tree, sysctl), so a test can compare
before and after."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

# The kubelet and the bridge plugin change these; scripts/cluster/down.sh puts them back.
SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "vm.overcommit_memory",
           "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops", "kernel.keys.root_maxkeys",
           "kernel.keys.root_maxbytes")
# Programs only a cluster or a container run starts on these machines.
PROGRAMS = {"etcd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "kube-apiserver",
            "kube-controller", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns",
            "conmon", "aardvark-dns", "netavark", "podman", "buildah", "runc", "pause"}


def lines(*args: str) -> list[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return result.stdout.splitlines()


def firewall_chains() -> set[str]:
    chains = set()
    for save in ("iptables-save", "ip6tables-save"):
        table = ""
        for line in lines(save):
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line.split()[1] == "-":  # built-in chains have a policy instead
                chains.add(f"{save.split('-')[0]} {table} {line[1:].split()[0]}")
    return chains


def container_processes() -> set[str]:
    """Processes of our programs, or inside a pod's or a podman container's cgroup."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text().strip()
            cgroups = (proc / "cgroup").read_text()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # ended while we looked
        if name in PROGRAMS or "kubepods" in cgroups or "libpod" in cgroups:
            found.add(f"{proc.name} {command or name}")
    return found


def cgroups() -> set[str]:
    return {str(path) for pattern in ("*/kubepods", "*/libpod_parent", "*/machine.slice")
            for path in Path("/sys/fs/cgroup").glob(pattern)}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    processes: frozenset[str]
    mounts: frozenset[str]
    netns: frozenset[str]
    links: frozenset[str]
    addresses: frozenset[str]
    chains: frozenset[str]
    cgroups: frozenset[str]
    sysctls: frozenset[str]

    @classmethod
    def take(cls) -> "Snapshot":
        return cls(
            processes=frozenset(container_processes()),
            mounts=frozenset(lines("findmnt", "-rn", "-o", "TARGET")),
            netns=frozenset(line.split()[0] for line in lines("ip", "netns", "list") if line.strip()),
            links=frozenset(line.split(":")[1].strip().split("@")[0] for line in lines("ip", "-o", "link")),
            addresses=frozenset(" ".join(line.split()[1:4]) for line in lines("ip", "-o", "addr")),
            chains=frozenset(firewall_chains()),
            cgroups=frozenset(cgroups()),
            sysctls=frozenset(f"{key}={value}" for key, value in
                              zip(SYSCTLS, lines("sysctl", "-n", *SYSCTLS))),
        )

    def left_since(self, before: "Snapshot") -> dict[str, list[str]]:
        """What this snapshot has that `before` had not (sysctls: what differs), by kind; empty
        when nothing was left."""
        left = {}
        for field in dataclasses.fields(self):
            now, then = getattr(self, field.name), getattr(before, field.name)
            extra = now ^ then if field.name == "sysctls" else now - then
            if extra:
                left[field.name] = sorted(extra)
        return left
