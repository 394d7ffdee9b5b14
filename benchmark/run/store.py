"""The run's files, written as the work is done so that an interrupted run loses nothing.

Results go to ``<run_dir>/parts/part-r<rank>-NNNNNN.parquet`` in small batches (atomically: a temporary
file renamed into place, so a crash never leaves a half-written part that a later run trusts).
``progress.json`` holds the run's fingerprint (a hash of what determines its predictions: model,
weights, data, views, device, precision). A new run with the same fingerprint picks up an
unfinished run's parts and skips those videos; a run with another fingerprint never does.
The adopted run's progress.json is then marked ``superseded_by`` the new run, so its parts are
never adopted again. Failures marked transient (file not found, decoding too slow: a disk that
may be back or less busy) are tried again by the run that resumes; the others stay failures.
A run that does not resume (``resume=false``) clears its run dir's parts and writes its own
progress.json before any work. At the end the parts become predictions.parquet, failures.csv
and metrics.json.

A live run is never taken over: the run holds ``<run dir>/run.lock`` (an flock, released by the
kernel when its process dies, even by kill -9) for its whole life, and its progress.json names
its owner (pid, host). Another run refuses to write into a live run's dir, and one that finds a
live run of its config to resume refuses too, or with ``live_run=skip`` leaves it alone. A run in
which nothing could be evaluated is marked ``nothing_evaluated``: its failures may be the setup's
(a wrong copy of the data), not the videos', so no later run adopts them.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock, Timeout

from benchmark.data.files import atomic_write
from benchmark.results.metrics import top_k

log = logging.getLogger(__name__)

# decoder_note: where the decoder backend disagreed with itself on the video (data/decoders.py).
PREDICTION_COLUMNS = ["video_id", "path", "label", "top5", "probs", "decoder_note"]
# kind: "crash" for a video that killed its decoder twice (benchmark/data/loader.py), else empty.
FAILURE_COLUMNS = ["video_id", "path", "reason", "kind"]
# reason set: a failure (transient: tried again on resume); else a prediction
PART_COLUMNS = PREDICTION_COLUMNS + ["reason", "transient", "kind"]


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_writable(folder: Path, needed_bytes: int = 0) -> None:
    """Fail before any work if ``folder`` cannot take the run's files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(f"{folder}: cannot write there: {err.strerror or err}") from None
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise OSError(f"{folder}: {free / 2**20:.0f} MiB free, the run needs about "
                      f"{needed_bytes / 2**20:.0f} MiB")


def _read_progress(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return None


class ResumeError(RuntimeError):
    """The run dir holds unfinished work of another configuration."""


class LiveRunError(ResumeError):
    """The run dir, or the unfinished run of the same config to resume, belongs to a live run."""


LOCK_NAME = "run.lock"  # in the run dir: held by the run's (rank 0) process for its whole life


def owner() -> dict:
    """This process, as progress.json records the run's owner."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _owner_words(run_dir: Path) -> str:
    who = (_read_progress(run_dir) or {}).get("owner") or {}
    return f"pid {who.get('pid', '?')} on {who.get('host', '?')}"


def _try_lock(run_dir: Path) -> FileLock | None:
    """``run_dir``'s run lock, taken at once, or None while a live run holds it."""
    lock = FileLock(str(run_dir / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir``'s lock for the block (the run's life) and record this process as its
    owner in progress.json; a live run there: LiveRunError, one line naming it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _try_lock(run_dir)
    if lock is None:
        raise LiveRunError(f"{run_dir} belongs to a live run ({_owner_words(run_dir)}): wait for "
                           "it to end, or choose another hydra.run.dir")
    try:
        progress = _read_progress(run_dir) or {"finished": False}
        progress["owner"] = owner()
        atomic_write(run_dir / "progress.json",
                     lambda p: p.write_text(json.dumps(progress, indent=2, default=str) + "\n"))
        yield
    finally:
        lock.release()


def find_unfinished(run_dir: Path, search: list[str], identity: dict,
                    live: str = "refuse") -> tuple[Path | None, FileLock | None]:
    """The newest unfinished run with ``identity``'s fingerprint: ``run_dir`` itself (whose lock
    the caller holds), else one under the ``search`` glob patterns whose lock is free, returned
    held (release it once its parts are adopted). Unfinished runs of other configs are named,
    never used; a live run of this config (its lock held) is refused (LiveRunError) or, with
    ``live="skip"``, left alone."""
    wanted = fingerprint(identity)
    found = {Path(p).parent for pattern in search for p in glob.glob(str(Path(pattern) / "progress.json"))}
    others = []
    for candidate in [run_dir] + sorted(found - {run_dir}, key=lambda p: p.stat().st_mtime, reverse=True):
        progress = _read_progress(candidate)
        if (progress is None or "fingerprint" not in progress or progress.get("finished")
                or progress.get("superseded_by") or progress.get("nothing_evaluated")):
            continue
        if progress.get("fingerprint") == wanted:
            if candidate == run_dir:
                return candidate, None
            try:
                lock = _try_lock(candidate)
            except OSError:  # cannot create a lock file there (read-only): no run writes there
                return candidate, None
            if lock is not None:
                return candidate, lock
            if live != "skip":
                raise LiveRunError(
                    f"{candidate} is a live run of the same config ({_owner_words(candidate)}), "
                    "not taken over: wait for it to end, or pass live_run=skip to start another "
                    "run beside it")
            log.warning("not resuming %s: a live run of the same config (%s)", candidate,
                        _owner_words(candidate))
            continue
        changed = sorted(k for k, v in identity.items() if progress.get("identity", {}).get(k) != v)
        if candidate == run_dir:
            raise ResumeError(f"{run_dir} holds an unfinished run of another config ({', '.join(changed)} "
                              "differ): choose another hydra.run.dir, or delete its parts/ to start over")
        others.append(f"{candidate} ({', '.join(changed)} differ)")
    if others:
        log.info("not resuming unfinished runs of other configs: %s", "; ".join(others))
    return None, None


class RunStore:
    """Predictions and failures of one run, flushed to parts every ``flush_every`` videos or
    ``flush_seconds`` seconds, whichever comes first."""

    def __init__(self, run_dir: Path, identity: dict, flush_every: int = 20,
                 flush_seconds: float = 60.0, rank: int = 0):
        self.run_dir, self.parts, self.rank = run_dir, run_dir / "parts", rank
        # As stored in progress.json (JSON types), so it compares equal to a stored one.
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        self.print = fingerprint(self.identity)
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.rows: list[dict] = []  # everything so far, loaded parts included
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()
        self.resumed_from: Path | None = None
        self.finished = False
        # _add and flush come from the loop and from timed_flushes' thread
        self._lock = threading.RLock()

    def resume(self, search: list[str], live: str = "refuse") -> set[str]:
        """Load the parts of an unfinished run with the same fingerprint; return the ids of its
        videos that need no new try (predictions and permanent failures). ``live``: what to do
        with a live run of the same config (find_unfinished)."""
        source, source_lock = find_unfinished(self.run_dir, search, self.identity, live)
        try:
            return self._adopt(source)
        finally:
            if source_lock is not None:
                source_lock.release()

    def _adopt(self, source: Path | None) -> set[str]:
        if source != self.run_dir:  # a fresh start here: parts of a finished run go
            shutil.rmtree(self.parts, ignore_errors=True)
        if source is not None:
            frames = [pd.read_parquet(p) for p in sorted((source / "parts").glob("part-*.parquet"))]
            if frames:
                rows = pd.concat(frames, ignore_index=True).reindex(columns=PART_COLUMNS)
                rows["transient"] = rows["transient"].fillna(False).astype(bool)  # older parts
                retry = rows.reason.map(lambda r: isinstance(r, str)) & rows.transient
                if retry.any():
                    log.info("%s: %d videos failed for a transient reason; trying them again",
                             source, rows[retry].video_id.nunique())
                done = rows[~retry].drop_duplicates("video_id")
                self.rows = done.to_dict("records")
                self.resumed_from = source
                if source != self.run_dir:  # keep this run self-contained
                    self.pending = list(self.rows)
        self._write_progress(finished=False)
        if self.pending:
            self.flush()
        if source is not None and source != self.run_dir:
            self._mark_superseded(source)
        return {row["video_id"] for row in self.rows}

    def start_fresh(self) -> None:
        """``resume=false``: this run owns its run dir: stale parts go, its progress.json is
        written before any work (so no older config's progress.json stands beside its parts)."""
        shutil.rmtree(self.parts, ignore_errors=True)
        self._write_progress(finished=False)

    def _mark_superseded(self, source: Path) -> None:
        """Mark the adopted run so no later run adopts its (now stale) parts again."""
        progress = _read_progress(source) or {}
        progress["superseded_by"] = str(self.run_dir)
        try:
            atomic_write(source / "progress.json",
                         lambda p: p.write_text(json.dumps(progress, indent=2, default=str) + "\n"))
        except OSError as err:  # a read-only old run: its parts are copied here all the same
            log.warning("%s: cannot mark it superseded: %s", source, err)

    def add_prediction(self, video_id: str, path, label: int, probs: torch.Tensor,
                       note: str | None = None) -> None:
        top = top_k(probs, 5).tolist()
        self._add({"video_id": video_id, "path": str(path), "label": label, "top5": top,
                   "probs": probs.float().tolist(), "decoder_note": note, "reason": None,
                   "transient": False, "kind": None})

    def add_failure(self, video_id: str, path, reason: str, transient: bool = False,
                    kind: str | None = None) -> None:
        """``transient``: the reason may not hold next time (file not found, decode timeout), so
        a run that resumes tries the video again; otherwise (a broken file, a crashed decoder:
        ``kind`` "crash") it stays a failure."""
        self._add({"video_id": video_id, "path": str(path or ""), "label": None, "top5": None,
                   "probs": None, "decoder_note": None, "reason": reason, "transient": bool(transient), "kind": kind})

    def _add(self, row: dict) -> None:
        with self._lock:
            self.pending.append(row)  # first: a signal between the two still flushes it
            self.rows.append(row)
            if (len(self.pending) >= self.flush_every
                    or time.monotonic() - self.last_flush >= self.flush_seconds):
                self.flush()

    def flush(self) -> None:
        with self._lock:
            if self.pending:
                index = len(list(self.parts.glob(f"part-r{self.rank}-*.parquet")))
                frame = pd.DataFrame(self.pending, columns=PART_COLUMNS)
                atomic_write(self.parts / f"part-r{self.rank}-{index:06d}.parquet",
                             lambda p: frame.to_parquet(p, index=False))
                self.pending = []
            self.last_flush = time.monotonic()

    @contextlib.contextmanager
    def timed_flushes(self):
        """Flush every ``flush_seconds`` from a thread during the block, also while the main
        process waits (a decoder hung on a dead mount, a slow batch): _add alone flushes only
        when the next video is done."""
        stop = threading.Event()

        def flush_when_due() -> None:
            while not stop.wait(max(0.05, self.last_flush + self.flush_seconds - time.monotonic())):
                if time.monotonic() - self.last_flush >= self.flush_seconds:
                    try:
                        self.flush()
                    except OSError as err:  # the loop's own flushes raise it where it counts
                        log.warning("%s: timed flush failed: %s", self.parts, err)

        thread = threading.Thread(target=flush_when_due, name="timed-flush", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def extend(self, rows: list[dict]) -> None:
        """Rows another rank evaluated (already in its own parts)."""
        self.rows.extend(rows)

    @property
    def predictions(self) -> list[dict]:
        return [r for r in self.rows if r["reason"] is None or pd.isna(r["reason"])]

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.rows if isinstance(r["reason"], str)]

    def probs_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.predictions
        probs = torch.tensor([list(r["probs"]) for r in rows]) if rows else torch.empty(0, 0)
        labels = torch.tensor([int(r["label"]) for r in rows], dtype=torch.long)
        return probs, labels

    def _ordered(self, order: list[str]) -> list[dict]:
        """One row per video (the first of any repeats), in manifest ``order``."""
        rank = {video_id: i for i, video_id in enumerate(order)}
        unique = {r["video_id"]: r for r in reversed(self.rows)}
        return sorted(unique.values(), key=lambda r: rank.get(r["video_id"], len(rank)))

    def write_failures(self, order: list[str]) -> None:
        """failures.csv (also for a run that ends without any prediction: the reasons)."""
        self.flush()
        failures = pd.DataFrame([r for r in self._ordered(order) if isinstance(r["reason"], str)],
                                columns=FAILURE_COLUMNS)
        atomic_write(self.run_dir / "failures.csv", lambda p: failures.to_csv(p, index=False))

    def finish(self, metrics: dict, order: list[str]) -> None:
        """Write the final files, rows in manifest ``order``, and mark the run finished."""
        self.flush()
        rows = self._ordered(order)
        frame = pd.DataFrame([r for r in rows if not isinstance(r["reason"], str)],
                             columns=PREDICTION_COLUMNS).astype({"label": "int64"})
        atomic_write(self.run_dir / "predictions.parquet", lambda p: frame.to_parquet(p, index=False))
        self.write_failures(order)
        atomic_write(self.run_dir / "metrics.json",
                     lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
        self._write_progress(finished=True)
        self.finished = True

    def mark_interrupted(self, signal_name: str) -> None:
        """progress.json after a SIGTERM/SIGINT: still unfinished (so it resumes), and says so
        (a signal after finish() leaves the finished run finished)."""
        if not self.finished:
            self._write_progress(finished=False, interrupted=signal_name,
                                 videos_done=len(self.rows))

    def mark_nothing_evaluated(self) -> None:
        """progress.json of a run in which no video could be evaluated: its failures may be the
        setup's fault (a root holding a wrong or broken copy, every file "cannot open"), so no
        later run adopts them as verdicts; the next run tries every video again."""
        self._write_progress(finished=False, nothing_evaluated=True)

    def _write_progress(self, finished: bool, **extra) -> None:
        state = {"fingerprint": self.print, "identity": self.identity, "finished": finished,
                 "owner": owner(), **extra}
        atomic_write(self.run_dir / "progress.json",
                     lambda p: p.write_text(json.dumps(state, indent=2, default=str) + "\n"))
