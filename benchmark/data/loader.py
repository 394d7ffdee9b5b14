"""Loader workers under the main process's supervision: a video that kills or hangs its decoder
is a failure of that video, never the end of the run.

Why not torch's DataLoader: when a worker dies (a segfault inside FFmpeg) it raises in the main
process and cannot say which video killed it, so a long run stops and its resume hits the same
file again; and it has no per-item time limit (its ``timeout`` is the wait for the next item in
order, after which it raises too). ``concurrent.futures.ProcessPoolExecutor`` is no better: one
dead worker breaks the whole pool (``BrokenProcessPool`` fails every pending future) and a stuck
task cannot be ended. So this is a small pool of ``multiprocessing`` processes (forked, as the
DataLoader's are) with these rules:

- one pipe per worker and one video per worker at a time, so the main process always knows
  which video each worker holds; pipes, not a shared queue, because a worker killed while
  holding a queue's lock would block the others;
- a worker that dies: its video is retried alone in a fresh worker; if it dies again the video
  is a failure (``decoder process died: signal 11 (SIGSEGV)``, kind ``crash``, which a resumed
  run does not retry), and the run goes on;
- a worker still on one video ``data.decode_timeout_s`` (+1 s) after it got it is killed
  (SIGKILL ends even a blocking C call, which the worker's own SIGALRM cannot interrupt), its
  video recorded as a failure, and a fresh worker takes its place;
- a worker that died while idle (the OOM killer, between videos) is logged with its exit and
  replaced before it is handed the next video, which the fresh worker loads as any other;
- workers die with the main process, even a kill -9 of it: a worker holds only its own end of
  its pipe (it closes the main process's ends it inherited by forking, its own and the other
  workers'), so one waiting for a video reads EOF and exits; and on Linux each asks the kernel
  for SIGKILL when its parent goes (``PR_SET_PDEATHSIG``), which also ends one mid-decode or
  stuck in a C call. (That signal follows the thread that forked the worker: iterate the loader
  in the thread that lives as long as the run, as evaluate does, the main one.)
- forking copies only the forking thread: library state tied to the main process's other
  threads must not be used in a worker (PyAV's per-thread frame converter: decode.py sets the
  inherited one aside in every forked child);
- items are delivered in order; the clips travel as raw bytes through the pipe, received
  straight into page-locked memory on CUDA (so the copy to the GPU can run asynchronously);
- memory is bounded whatever the resolution: a video is handed to a worker only while the clips
  held (received, not yet consumed) plus those being decoded fit in ``memory_bytes``, estimated
  from the largest video seen so far (until one is seen, one video at a time); at least one
  video is always in flight, however large.

``workers=0`` decodes in the main process, unsupervised (as the DataLoader's ``num_workers=0``).
Test-only hooks (environment, never config): ``BENCHMARK_TEST_KILL_ON=VIDEO_ID`` makes the worker
that loads that video kill itself with SIGSEGV, ``BENCHMARK_TEST_HANG_ON=VIDEO_ID`` makes it block
with SIGALRM blocked (as a C call stuck on a hung network mount does).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import torch

log = logging.getLogger(__name__)

KILL_ON, HANG_ON = "BENCHMARK_TEST_KILL_ON", "BENCHMARK_TEST_HANG_ON"
CRASH = "crash"  # failure kind: the video killed its decoder twice (permanent, not retried)
GRACE_S = 1.0  # beyond decode_timeout_s, for the worker's own SIGALRM to report first
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def test_hooks(video_id: str) -> None:
    """The test-only faults (module docstring); a no-op unless their variable names the video."""
    if os.environ.get(KILL_ON) == video_id:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
        os.kill(os.getpid(), signal.SIGSEGV)
    if os.environ.get(HANG_ON) == video_id:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        print(f"test hook: blocking on {video_id}", file=sys.stderr, flush=True)
        threading.Event().wait()


def describe_exit(exitcode: int | None) -> str:
    """``signal 11 (SIGSEGV)`` or ``exit code 3``."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _dense_order(clips: torch.Tensor) -> list[int] | None:
    """The dims of ``clips`` from outermost to innermost in memory, if its storage is dense."""
    order = sorted(range(clips.dim()), key=lambda d: -clips.stride(d))
    return order if clips.permute(order).is_contiguous() else None


def _write_all(conn: Connection, data: memoryview) -> None:
    """The raw bytes, straight from the tensor (``send_bytes`` would be fine here, but its
    ``recv_bytes_into`` on the other side reads into a temporary copy first)."""
    while data:
        data = data[os.write(conn.fileno(), data):]


def _read_all(conn: Connection, data: memoryview) -> None:
    """Read exactly ``len(data)`` bytes straight into ``data`` (pinned memory on CUDA)."""
    while data:
        n = os.readv(conn.fileno(), [data])
        if n == 0:
            raise EOFError("loader worker closed its pipe")
        data = data[n:]


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent ends (Linux); exit now if it has already ended."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the closed pipe ends still end an idle worker
    if os.getppid() != parent:  # the parent died before prctl: no signal will come
        os._exit(1)


def _serve(conn: Connection, load: Callable[[int], object], parent: int,
           inherited: list[Connection]) -> None:
    """A worker: load the positions the main process sends, one at a time, until None (or the
    main process is gone: EOF once ``inherited``, the main process's pipe ends, are closed)."""
    _die_with_parent(parent)
    for end in inherited:
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)  # as DataLoader workers: decoding threads are sized elsewhere
    while True:
        try:
            position = conn.recv()
        except EOFError:  # the main process died
            return
        if position is None:
            return
        item = load(position)
        clips = getattr(item, "clips", None)
        if clips is None:
            conn.send((item, None))
            continue
        order = _dense_order(clips)
        if order is None:
            clips, order = clips.contiguous(), list(range(clips.dim()))
        item.clips = None
        conn.send((item, (tuple(clips.shape), tuple(clips.stride()), order)))
        _write_all(conn, memoryview(clips.permute(order).contiguous().numpy()).cast("B"))
        del item, clips  # not held while waiting for, and decoding, the next video


@dataclass
class _Worker:
    process: multiprocessing.Process
    conn: Connection
    position: int | None = None  # the video it holds
    since: float = 0.0  # when it got it


class SupervisedLoader:
    """Iterate ``load(position)`` for positions 0..count-1, in order, in ``workers`` processes.

    ``load`` returns an item whose ``clips`` (a uint8 tensor or None) travels as bytes;
    ``failed(position, reason, kind)`` makes the item of a video whose worker died or hung.
    """

    def __init__(self, load: Callable[[int], object], count: int, workers: int,
                 failed: Callable[[int, str, str | None], object], timeout_s: float | None = None,
                 pin_memory: bool = False, memory_bytes: int = 4 << 30):
        self.load, self.count, self.workers, self.failed = load, count, workers, failed
        self.timeout_s, self.pin, self.memory_bytes = timeout_s, pin_memory, memory_bytes

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[object]:
        if self.workers == 0:
            for position in range(self.count):
                item = self.load(position)
                if self.pin and getattr(item, "clips", None) is not None:
                    item.clips = item.clips.pin_memory()
                yield item
            return
        run = _Run(self)
        try:
            for position in range(self.count):
                while position not in run.ready:
                    run.service(position)
                item, size = run.ready.pop(position)
                run.ready_bytes -= size
                yield item
        finally:
            run.stop()


class _Run:
    """One pass over the positions: the workers, what each holds, what is ready."""

    def __init__(self, loader: SupervisedLoader):
        self.loader = loader
        self.context = multiprocessing.get_context("fork")
        self.todo = deque(range(loader.count))
        self.retry: deque[int] = deque()  # videos whose worker died: each alone, once more
        self.deaths: dict[int, int] = {}
        self.ready: dict[int, tuple[object, int]] = {}
        self.ready_bytes = 0
        self.largest = 0  # bytes of the largest clips seen: the estimate for one in flight
        self.pool: list[_Worker] = []
        for _ in range(min(loader.workers, loader.count)):
            self.pool.append(self._start())

    def _start(self) -> _Worker:
        ours, theirs = self.context.Pipe()
        inherited = [w.conn for w in self.pool if not w.conn.closed] + [ours]
        process = self.context.Process(target=_serve, daemon=True, name="video-loader",
                                       args=(theirs, self.loader.load, os.getpid(), inherited))
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def _fits(self, first_waiting: int) -> bool:
        """Whether one more video may start decoding (the memory bound, module docstring)."""
        busy = sum(w.position is not None for w in self.pool)
        if busy == 0 and not self.ready:
            return True
        if self.todo[0] > first_waiting + len(self.pool):
            return False  # far ahead of the consumer: the reorder buffer would grow
        if self.largest == 0:
            return busy == 0
        return self.ready_bytes + (busy + 1) * self.largest <= self.loader.memory_bytes

    def _dispatch(self, first_waiting: int) -> None:
        for worker in self.pool:
            if worker.position is not None:
                continue
            if self.retry:
                position = self.retry.popleft()
            elif self.todo and self._fits(first_waiting):
                position = self.todo.popleft()
            else:
                return
            self._hand(worker, position)

    def _hand(self, worker: _Worker, position: int) -> None:
        """Send ``position`` to ``worker``; one found dead (it died while idle: nothing of the
        run is lost) is logged and replaced by a fresh worker, which gets it instead."""
        for _ in range(3):
            try:
                if worker.process.is_alive():
                    worker.conn.send(position)
                    worker.position, worker.since = position, time.monotonic()
                    return
            except OSError:  # BrokenPipeError: it died after is_alive
                pass
            worker.process.join(5)
            i = next(i for i, w in enumerate(self.pool) if w is worker)
            log.warning("loader worker %d (pid %s) died while idle (%s): replaced; video %d goes "
                        "to the fresh worker", i, worker.process.pid,
                        describe_exit(worker.process.exitcode), position)
            worker = self.pool[i] = self._replace(worker)
        raise RuntimeError(f"loader: fresh workers died three times before taking video "
                           f"{position} ({describe_exit(worker.process.exitcode)})")

    def service(self, first_waiting: int) -> None:
        """Hand out work, wait (briefly) for results or deaths, enforce the time limit."""
        self._dispatch(first_waiting)
        busy = [w for w in self.pool if w.position is not None]
        if not busy:  # cannot happen: the video waited for is always held, queued or ready
            raise RuntimeError(f"loader: nothing in flight for video {first_waiting}")
        limit = self.loader.timeout_s
        timeout = 1.0
        if limit:
            deadline = min(w.since for w in busy) + limit + GRACE_S
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        for i, worker in enumerate(self.pool):
            if worker.position is None:
                continue
            if worker.conn in ready:
                try:
                    self._receive(worker)
                    continue
                except (EOFError, OSError):
                    pass  # died mid-message: handled as a death below
            if worker.process.sentinel in ready or not worker.process.is_alive():
                self.pool[i] = self._died(worker)
            elif limit and time.monotonic() - worker.since > limit + GRACE_S:
                self.pool[i] = self._timed_out(worker, limit)

    def _receive(self, worker: _Worker) -> None:
        item, layout = worker.conn.recv()
        size = 0
        if layout is not None:
            shape, stride, order = layout
            size = 1
            for n in shape:
                size *= n
            raw = torch.empty(size, dtype=torch.uint8, pin_memory=self.loader.pin)
            _read_all(worker.conn, memoryview(raw.numpy()))
            item.clips = raw.as_strided(shape, stride)
            self.largest = max(self.largest, size)
        self.ready[worker.position] = (item, size)
        self.ready_bytes += size
        worker.position = None

    def _replace(self, worker: _Worker) -> _Worker:
        worker.conn.close()
        worker.process.join(5)
        return self._start()

    def _died(self, worker: _Worker) -> _Worker:
        worker.process.join(5)
        how = describe_exit(worker.process.exitcode)
        position = worker.position
        self.deaths[position] = self.deaths.get(position, 0) + 1
        if self.deaths[position] >= 2:
            log.warning("loader worker died (%s) on video %d again: recorded as a failure",
                        how, position)
            self.ready[position] = (self.loader.failed(position, f"decoder process died: {how}",
                                                       CRASH), 0)
        else:
            log.warning("loader worker died (%s) on video %d: retrying it alone in a fresh "
                        "worker", how, position)
            self.retry.append(position)
        return self._replace(worker)

    def _timed_out(self, worker: _Worker, limit: float) -> _Worker:
        worker.process.kill()
        self.ready[worker.position] = (self.loader.failed(
            worker.position, f"decoding took longer than {limit:g} s (data.decode_timeout_s); "
            "its stuck decoder process was ended", None), 0)
        return self._replace(worker)

    def stop(self) -> None:
        for worker in self.pool:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self.pool:
            worker.process.join(2 if worker.position is None else 0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
