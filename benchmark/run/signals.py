"""Stopping on SIGTERM (SLURM's notice before it kills a job) or SIGINT (Ctrl-C): the videos
finished so far are saved, the progress marked interrupted, and the run resumes from there.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable

from benchmark.run.store import RunStore


class Preempted(RuntimeError):
    """SIGTERM (SLURM's notice before it kills a job) or SIGINT (Ctrl-C) stopped the run after
    its finished videos were saved; ``signum`` gives the exit status (128 + signum)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class _Signalled(BaseException):
    """Raised by the signal handler inside the loop (BaseException: no ``except Exception``
    on the way swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """Turn the first of ``signals`` into ``_Signalled`` in the main thread during the block;
    the ones after it are ignored till the block ends, so the flush that follows (inside the
    block: saved_on_signal) is never cut."""
    def handler(signum, frame):
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        raise _Signalled(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def saved_on_signal(store: RunStore, listed: int, keep: Callable[[], None]):
    """A ``_Signalled`` anywhere in the block: ``keep()`` (store the videos finished but not yet
    recorded), flush, mark the progress interrupted, raise Preempted. Enter it inside
    stop_on_signals, so a second signal cannot cut this."""
    try:
        yield
    except _Signalled as caught:
        keep()
        raise preempted(store, caught.signum, listed) from None


def preempted(store: RunStore, signum: int, listed: int) -> Preempted:
    """Save the finished videos and the progress at once; the one line to show."""
    store.flush()
    name = signal.Signals(signum).name
    store.mark_interrupted(name)
    return Preempted(f"stopped by {name}: {len(store.rows)} of {listed} videos done and saved "
                     f"in {store.parts}; run the same command again to resume from there",
                     signum)
