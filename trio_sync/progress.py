"""The progress bar of ``trio-sync ingest``: drawn on a terminal only."""

from __future__ import annotations

import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressBar:
    """``bar(done_bytes, total_bytes, messages)``: bytes done, events/s and time left.

    Draws nothing unless ``stream`` is a terminal, so logs and pipes stay clean.
    """

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._start = time.monotonic()
        self._drawn = False
        self.enabled = stream.isatty()

    def __call__(self, done: int, total: int, messages: int) -> None:
        if not self.enabled:
            return
        self._stream.write("\r" + self.line(done, total, messages, time.monotonic() - self._start))
        self._stream.flush()
        self._drawn = True

    def line(self, done: int, total: int, messages: int, elapsed: float) -> str:
        """The bar's text after ``elapsed`` seconds."""
        frac = done / total if total else 1.0
        bar = "#" * int(frac * self._width)
        rate = messages / elapsed if elapsed > 0 else 0.0
        if done and elapsed > 0 and total > done:
            left = _duration((total - done) / (done / elapsed)) + " left"
        else:
            left = "done" if total <= done else "--"
        return f"[{bar:<{self._width}}] {frac:6.1%} {messages} events, {rate:,.0f} events/s, {left}"

    def finish(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
