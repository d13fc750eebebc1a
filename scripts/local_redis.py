"""A local Redis for the feature store's Redis profile: Debian's redis-server, on loopback, in
memory only, stopped by PID.

    python -m scripts.local_redis install               # apt-get install redis-server, when missing
    python -m scripts.local_redis start --dir var/redis  # prints the JOURNEYS_REDIS connection string
    python -m scripts.local_redis stop --dir var/redis
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts.debian import ensure_command
from scripts.local_broker import free_port

# Lookups give up after 50 ms, so a slow or stopped Redis cannot hold a decision up for longer.
TIMEOUTS = "socket_timeout=0.05,socket_connect_timeout=0.05"


def ensure_installed() -> str:
    return ensure_command("redis-server")


class LocalRedis:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory).resolve()
        self.pid_file = self.directory / "redis.pid"
        self.address_file = self.directory / "address"
        self._process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return self.address_file.read_text().strip()

    @property
    def connection_string(self) -> str:
        """For feature_store.redis.yaml's ${JOURNEYS_REDIS}."""
        return f"{self.address},{TIMEOUTS}"

    def start(self, port: int | None = None, timeout: float = 10.0) -> "LocalRedis":
        binary = ensure_installed()
        self.directory.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        self._process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(self._process.pid))
        self.address_file.write_text(f"127.0.0.1:{port}")
        deadline = time.time() + timeout
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
        while time.time() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {self._process.returncode}; see {self.directory / 'redis.log'}")
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout} s")

    def keyspace_hits(self) -> int:
        """How many reads found their key: the online lookups served, since writes never count."""
        import redis

        host, port = self.address.split(":")
        return int(redis.Redis(host=host, port=int(port), socket_connect_timeout=0.2).info("stats")["keyspace_hits"])

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self._process is not None:
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        else:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.local_redis", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("install", "start", "stop"))
    parser.add_argument("--dir", default="var/redis")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    if args.action == "install":
        print(ensure_installed())
    elif args.action == "start":
        print(LocalRedis(args.dir).start(args.port).connection_string)
    else:
        LocalRedis(args.dir).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
