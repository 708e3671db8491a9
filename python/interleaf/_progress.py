"""Progress lines with rates for long reads and writes, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class Progress:
    """Prints ``label: N docs, M nodes, X MB (r docs/s, s MB/s)`` at most every ``interval``
    seconds (every 0.5 s on a terminal, 10 s otherwise) and a final line on ``close``. ``units``
    names the two counts (default ``("docs", "nodes")``; e.g. ``("pairs", "images")``)."""

    def __init__(self, label: str, enabled: bool = True, stream: TextIO | None = None, interval: float | None = None, units: tuple[str, str] = ("docs", "nodes")):
        self.label = label
        self.units = units
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self.start = time.perf_counter()
        self.last = self.start
        self.docs = 0
        self.nodes = 0
        self.bytes = 0

    def line(self) -> str:
        dt = max(time.perf_counter() - self.start, 1e-9)
        return (
            f"{self.label}: {self.docs:,} {self.units[0]}, {self.nodes:,} {self.units[1]}, {_human_bytes(self.bytes)} "
            f"({self.docs / dt:,.0f} {self.units[0]}/s, {_human_bytes(self.bytes / dt)}/s)"
        )

    def update(self, docs: int, nodes: int, nbytes: int) -> None:
        """Sets the totals so far and prints if the interval has passed."""
        self.docs, self.nodes, self.bytes = docs, nodes, nbytes
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            end = "\r" if self.tty else "\n"
            print(self.line(), end=end, file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(self.line(), file=self.stream, flush=True)
