"""Restart a command when a watched Python file changes: the `skaffold dev` entrypoint.

skaffold's file sync copies an edited file into the running pod; this restarts the service so the
change takes effect without an image rebuild. Standard library only (it runs in the dev image).

    python reload.py --watch /src/services [--interval 1] -- python -m ai_secretary [args...]

SIGTERM and SIGINT are passed to the service, which drains and exits; this then exits with its
code. When the service exits on its own, so does this (a crash is the pod's to restart).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def snapshot(roots: list[str]) -> dict[str, float]:
    """Modification time of every .py file under the roots."""
    seen: dict[str, float] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    try:
                        seen[path] = os.stat(path).st_mtime
                    except FileNotFoundError:
                        pass
    return seen


def stop(child: subprocess.Popen, grace: float) -> int:
    child.send_signal(signal.SIGTERM)
    try:
        return child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: reload.py --watch DIR [--watch DIR] [--interval S] -- COMMAND...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="reload.py")
    parser.add_argument("--watch", action="append", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=25.0, help="seconds the service gets to drain")
    options = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("no command after --")

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))

    before = snapshot(options.watch)
    child = subprocess.Popen(command)
    while True:
        if stopping:
            code = stop(child, options.grace)
            return code if code >= 0 else 128 - code
        code = child.poll()
        if code is not None:
            return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
        time.sleep(options.interval)
        now = snapshot(options.watch)
        if now != before:
            changed = sorted(path for path in now.keys() | before.keys() if now.get(path) != before.get(path))
            print(f"reload.py: {len(changed)} file(s) changed ({changed[0]}), restarting", file=sys.stderr, flush=True)
            stop(child, options.grace)
            before = now
            child = subprocess.Popen(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
