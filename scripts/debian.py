"""Debian packages that tests and local runs need beside the venv (redis-server, chromium),
installed with apt-get when their command is missing.

    python -m scripts.debian redis-server chromium   # prints each command's path
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

# command -> the Debian package that brings it, and where to get it elsewhere
PACKAGES = {
    "redis-server": ("redis-server", "install Redis 7 (https://redis.io/docs/install)"),
    "chromium": ("chromium", "install Chromium or Chrome"),
}


def ensure_command(command: str) -> str:
    """The path of a command, installing its Debian package first when it is missing."""
    found = shutil.which(command)
    if found:
        return found
    package, elsewhere = PACKAGES[command]
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{command} is not installed and there is no apt-get here: {elsewhere} and put {command} on PATH")
    install = [apt, "install", "-y", "-q", package]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise RuntimeError(f"{command} is not installed; run `sudo apt-get install {package}`")
        install.insert(0, "sudo")
    print(f"installing Debian's {package} (apt-get install {package})", file=sys.stderr)
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    completed = subprocess.run(install, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:  # a fresh machine may not have read the package lists yet
        update = subprocess.run([*install[:-4], "update", "-q"], capture_output=True, text=True, env=environment)
        if update.returncode == 0:
            completed = subprocess.run(install, capture_output=True, text=True, env=environment)
    found = shutil.which(command)
    if not found:
        raise RuntimeError(f"installing {package} failed:\n{completed.stderr[-2000:]}")
    return found


def main(argv: list[str] | None = None) -> int:
    commands = sys.argv[1:] if argv is None else argv
    unknown = [c for c in commands if c not in PACKAGES]
    if not commands or unknown:
        print(f"usage: python -m scripts.debian {' '.join(PACKAGES)}", file=sys.stderr)
        return 2
    try:
        for command in commands:
            print(ensure_command(command))
    except RuntimeError as error:
        print(f"scripts.debian: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
