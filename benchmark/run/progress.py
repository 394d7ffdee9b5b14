"""Progress of a long evaluation: videos done, videos/s, ETA and the running top-1.

On a terminal it is a tqdm bar. Elsewhere (CI logs, ``nohup``, a pipe) a redrawn bar becomes a
wall of carriage returns, so it logs one plain line every ``log_every_s`` seconds and one at the
end instead.
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """``with Progress(...) as progress: ... progress.update(hit)`` per finished video.

    ``hit``: whether its top-1 prediction was right; None for a video that failed. Videos are
    counted when they finish, not when they are loaded: with view batches spanning videos the
    two differ by a few.
    """

    def __init__(self, total: int, desc: str, log_every_s: float = 60.0,
                 terminal: bool | None = None):
        self.total, self.desc, self.log_every_s = total, desc, log_every_s
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.done = self.evaluated = self.hits = 0

    def __enter__(self) -> Progress:
        self.start = self.last_log = time.perf_counter()
        self.bar = tqdm(total=self.total, unit="video", desc=self.desc,
                        disable=not self.terminal, dynamic_ncols=True)
        return self

    def update(self, hit: bool | None) -> None:
        self.done += 1
        if hit is not None:
            self.evaluated += 1
            self.hits += int(hit)
            self.bar.set_postfix_str(f"top-1 {self.top1_text()}", refresh=False)
        self.bar.update(1)
        now = time.perf_counter()
        if not self.terminal and now - self.last_log >= self.log_every_s and self.done < self.total:
            log.info("%s", self.line(now - self.start))
            self.last_log = now

    def __exit__(self, *exc) -> None:
        self.bar.close()
        if not self.terminal:  # the closing line, once
            log.info("%s", self.line(time.perf_counter() - self.start))

    def top1_text(self) -> str:
        return f"{100 * self.hits / self.evaluated:.1f}%" if self.evaluated else "-"

    def line(self, elapsed: float) -> str:
        """``desc: 120/19881 videos, 1.52 videos/s, ETA 3:36:41, top-1 71.7%``."""
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = tqdm.format_interval((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"{self.desc}: {self.done}/{self.total} videos, {rate:.3g} videos/s, ETA {eta}, "
                f"top-1 {self.top1_text()}")
