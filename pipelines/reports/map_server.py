"""`journeys serve`: the journey map page on loopback, rebuilt when the running job writes more.

The page is rebuilt on a request when the output directories changed since the last build. The
page asks for `/version` (a digest of the outputs' names, sizes and times) every few seconds and
reloads only when it changed, so an idle job costs a small request, not a new page. A job's file
sinks keep the part being written as a hidden in-progress file until the next checkpoint; the
server reads those too (whole lines only), so the map follows the signals rather than the
checkpoints.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import orjson

from pipelines.reports.journey_map import build_map
from pipelines.reports.map_page import render


def live_records(directory: str | Path) -> Iterator[dict]:
    """Every complete JSON line in the files below a sink directory, in-progress ones included."""
    directory = Path(directory)
    files = [directory] if directory.is_file() else sorted(p for p in directory.rglob("*") if p.is_file())
    for file in files:
        try:
            data = file.read_bytes()
        except FileNotFoundError:  # committed (renamed) between listing and reading: read again next time
            continue
        complete = data[:data.rfind(b"\n") + 1] if not data.endswith(b"\n") else data
        for line in complete.splitlines():
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue


def _fingerprint(*directories: Path) -> tuple:
    found = []
    for directory in directories:
        if directory.exists():
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


class MapServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, journeys: str | Path, decisions: str | Path, stages: tuple, host: str = "127.0.0.1",
                 port: int = 8050, refresh_s: int = 3):
        self.journeys, self.decisions = Path(journeys), Path(decisions)
        self.stages, self.refresh_s = stages, refresh_s
        self._lock = threading.Lock()
        self._built_for: tuple | None = None
        self._page = b""
        self.builds = 0
        super().__init__((host, port), _Handler)

    def page(self) -> bytes:
        with self._lock:
            seen = _fingerprint(self.journeys, self.decisions)
            if seen != self._built_for:
                built = build_map(live_records(self.journeys), live_records(self.decisions), self.stages)
                self._page = render(built, "Journey map (live)", live=(_version(seen), self.refresh_s)).encode()
                self._built_for = seen
                self.builds += 1
            return self._page

    def version(self) -> bytes:
        return _version(_fingerprint(self.journeys, self.decisions)).encode()


def _version(fingerprint: tuple) -> str:
    return hashlib.blake2b(repr(fingerprint).encode(), digest_size=8).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: MapServer

    def do_GET(self):  # noqa: N802 (the http.server name)
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            body, content_type = self.server.page(), "text/html; charset=utf-8"
        elif path == "/version":
            body, content_type = self.server.version(), "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # quiet: one line per reload would drown the terminal
        pass
