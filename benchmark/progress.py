"""Progress of a long evaluation: videos done, videos/s, ETA and the running top-1.

On a terminal it is a tqdm bar. Elsewhere (CI logs, ``nohup``, a pipe) a redrawn bar becomes a
wall of carriage returns, so it logs one plain line every ``log_every_s`` seconds and one at the
end instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """Wraps the loader: ``for item in progress: ...; progress.record(hit)`` per evaluated video."""

    def __init__(self, items: Iterable, total: int, desc: str, log_every_s: float = 60.0,
                 terminal: bool | None = None):
        self.items, self.total, self.desc, self.log_every_s = items, total, desc, log_every_s
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.done = self.evaluated = self.hits = 0

    def __iter__(self) -> Iterator:
        start = last_log = time.perf_counter()
        with tqdm(total=self.total, unit="video", desc=self.desc, disable=not self.terminal,
                  dynamic_ncols=True) as self._bar:
            for item in self.items:
                yield item
                self.done += 1
                self._bar.update(1)
                now = time.perf_counter()
                if not self.terminal and now - last_log >= self.log_every_s:
                    log.info("%s", self.line(now - start))
                    last_log = now
        if not self.terminal:
            log.info("%s", self.line(time.perf_counter() - start))

    def record(self, hit: bool) -> None:
        """One evaluated video and whether its top-1 prediction was right."""
        self.evaluated += 1
        self.hits += int(hit)
        self._bar.set_postfix_str(f"top-1 {self.top1_text()}", refresh=False)

    def top1_text(self) -> str:
        return f"{100 * self.hits / self.evaluated:.1f}%" if self.evaluated else "-"

    def line(self, elapsed: float) -> str:
        """``desc: 120/19881 videos, 1.52 videos/s, ETA 3:36:41, top-1 71.7%``."""
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = tqdm.format_interval((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"{self.desc}: {self.done}/{self.total} videos, {rate:.3g} videos/s, ETA {eta}, "
                f"top-1 {self.top1_text()}")
