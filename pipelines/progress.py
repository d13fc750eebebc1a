"""A long step's progress, said at least every so many seconds of wall clock: how many records it
has read so far, and how many per second. The job's parser and the replay's intake both use it."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

CHECK_EVERY = 512  # records between looks at the clock


class Progress:
    def __init__(self, what: str, every_s: float | None, done: str = "signals read", out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        """every_s: seconds between lines; None or 0 says nothing. done: what a tick counts."""
        self.what = what
        self.done = done
        self.every_s = every_s or 0
        self.out = out
        self.clock = clock
        self.count = 0
        self.started = self.last = clock()

    def tick(self, count: int = 1) -> None:
        before = self.count
        self.count += count
        if self.every_s and (self.count // CHECK_EVERY) != (before // CHECK_EVERY):
            now = self.clock()
            if now - self.last >= self.every_s:
                self.last = now
                rate = self.count / max(now - self.started, 1e-9)
                print(f"{self.what}: {self.count:,} {self.done}, {rate:,.0f}/s", file=self.out or sys.stderr, flush=True)
