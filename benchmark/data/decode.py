"""Decoding: each video is decoded once (PyAV here; torchcodec and decord in decoders.py give the
same ``DecodedVideo``); failures come back as a reason, not a crash.

The reference path (``EncodedVideo.get_clip``) seeks and decodes again for every clip; decoding
once and picking frames by timestamp gives the same frames (see views.py) at a fraction of the cost.
Frames stay as PyAV frames until a view needs them, so only used frames are converted to RGB.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


class DecodeError(RuntimeError):
    """A video that cannot be evaluated; the message is the reason a person reads."""


class DecodeTimeout(DecodeError):
    """Decoding ran past ``data.decode_timeout_s``: transient (a busy disk), tried again on resume."""


@dataclass
class DecodedVideo:
    # Presentation order, one per distinct pts: PyAV frames (converted when a view needs them),
    # or (H, W, 3) uint8 RGB tensors from another backend (benchmark/data/decoders.py).
    frames: list[av.VideoFrame | torch.Tensor]
    pts: list[int]  # in units of time_base, absolute (start_pts included)
    time_base: Fraction
    start_pts: int
    end_pts: int  # the stream header's duration, else the last frame's pts (as pytorchvideo)
    header_duration: bool  # the header has a duration: pytorchvideo then decodes per clip
    decoded_pts: list[int]  # every decoded frame's pts in the order the decoder gave them
    average_fps: float | None = None  # the stream's average rate (torchvision's video_fps)
    # Where this backend's frames or timestamps are not what it says the file holds (fewer
    # frames than its index, no timestamps): one line each, recorded with the video's prediction.
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> Fraction:
        """Seconds, as pytorchvideo 0.1.5's EncodedVideoPyAV computes it."""
        return int(self.end_pts - self.start_pts) * self.time_base

    def rgb(self, indices: list[int]) -> torch.Tensor:
        """(len(indices), H, W, 3) uint8 RGB frames; each distinct frame converted once."""
        unique = sorted(set(indices))
        # One swscale thread: a loader worker is one of several (data.decode_threads sizes
        # them), and a threaded converter set up per frame costs more than it saves.
        arrays = {i: _rgb(self.frames[i]) for i in unique}
        return torch.stack([arrays[i] for i in indices])


def _rgb(frame: av.VideoFrame | torch.Tensor) -> torch.Tensor:
    if isinstance(frame, torch.Tensor):
        return frame
    return torch.from_numpy(frame.to_ndarray(format="rgb24", threads=1))


# PyAV >= 18.1.1 keeps one frame converter per thread (av.video.frame._thread_local). One that a
# process used with swscale's threads (pytorchvideo's reference path converts with FFmpeg's
# default, a thread per core) goes into a forked loader worker without those threads: the first
# conversion there that sets it up again waits forever in pthread_cond_destroy for them (make
# bench's workers, after its reference pass, hung until data.decode_timeout_s ended them). Each
# forked child sets the inherited converter aside, never freed (freeing it waits the same way),
# and PyAV makes the child a fresh one. A no-op for a PyAV without the per-thread converter.
_INHERITED_CONVERTERS: list = []


def _set_aside_inherited_converter() -> None:
    local = getattr(av.video.frame, "_thread_local", None)
    converter = getattr(local, "reformatter", None)
    if converter is not None:
        _INHERITED_CONVERTERS.append(converter)
        local.reformatter = None


os.register_at_fork(after_in_child=_set_aside_inherited_converter)


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise DecodeError in this thread after ``seconds`` (SIGALRM: main thread of a process,
    which a DataLoader worker's is); no limit when None/0 or off the main thread."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise DecodeTimeout(f"decoding took longer than {seconds:g} s (data.decode_timeout_s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def process_cores() -> int:
    """The CPU cores this process may use: its affinity, shared with the other processes that
    torchrun started on this machine (``LOCAL_WORLD_SIZE``). A SLURM task's affinity is already
    its own share (SLURM binds each task to its ``--cpus-per-task`` cores), so it is not divided
    again; where the node does not bind tasks it is capped at ``SLURM_CPUS_PER_TASK``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    # torchrun (also inside a SLURM job) marks its workers with TORCHELASTIC_RUN_ID; a SLURM task
    # gets LOCAL_WORLD_SIZE from submitit (benchmark/run/distributed.py), not from a shared launcher.
    if "SLURM_PROCID" in os.environ and "TORCHELASTIC_RUN_ID" not in os.environ:
        per_task = os.environ.get("SLURM_CPUS_PER_TASK", "")
        return max(1, min(cores, int(per_task)) if per_task.isdigit() else cores)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def decode_threads(setting: int | str, workers: int, device_type: str) -> int:
    """FFmpeg threads per decoder (``data.decode_threads``), so that the cores are not
    oversubscribed. ``auto``: with ``workers`` loader workers decoding beside the model, a CPU
    run's model already keeps every core busy, so one each; a GPU run's main process needs about
    one core, and the workers share the others; with no workers the main process decodes between
    model passes, on every core. A number is used as is (0: FFmpeg chooses, a thread per core)."""
    if setting != "auto":
        return int(setting)
    cores = process_cores()
    if workers == 0:
        return cores
    return 1 if device_type == "cpu" else max(1, (cores - 1) // workers)


@dataclass
class FrameCount:
    corrupt: int = 0  # packets skipped as undecodable
    decoded: int = 0


@contextlib.contextmanager
def open_video(path: str | Path, threads: int = 0):
    """``(stream, frames, count)``: the first video stream and an iterator over its decoded
    frames in decoding order, corrupt packets skipped (as the ffmpeg tool does); a file that
    cannot be opened or decoded raises DecodeError with the reason."""
    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise DecodeError(f"file not found: {path}") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise DecodeError(f"cannot open as a video: {err}") from None
    with container:
        if not container.streams.video:
            raise DecodeError("no video stream in the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        count = FrameCount()

        def frames():
            try:
                for packet in container.demux(stream):
                    try:
                        decoded = packet.decode()
                    except av.error.InvalidDataError:
                        count.corrupt += 1
                        continue
                    for frame in decoded:
                        if frame.pts is not None:
                            count.decoded += 1
                            yield frame
            except av.error.FFmpegError as err:
                raise DecodeError(f"decoding failed after {count.decoded} frames: {err}") from None

        yield stream, frames(), count


def stream_timing(stream, last_pts: int | None) -> tuple[Fraction, int, int | None]:
    """(time base, start pts, end pts as EncodedVideoPyAV takes it: the header's duration, else
    the last frame's pts; None when neither is known yet)."""
    time_base = Fraction(stream.time_base)
    start_pts = stream.start_time if stream.start_time is not None else 0
    return time_base, start_pts, stream.duration if stream.duration is not None else last_pts


def decode_video(path: str | Path, threads: int = 0) -> DecodedVideo:
    """Decode every video frame of ``path`` (no audio).

    ``threads``: FFmpeg decoding threads (0 lets FFmpeg choose); frame-and-slice threading
    ("AUTO") is often several times faster than PyAV's default.
    """
    with open_video(path, threads) as (stream, frames, count):
        by_pts: dict[int, av.VideoFrame] = {}
        decoded_pts: list[int] = []  # decoder order: pytorchvideo's per-clip decode stops by it
        for frame in frames:
            by_pts[frame.pts] = frame
            decoded_pts.append(frame.pts)
        if not by_pts:
            raise DecodeError(f"no decodable video frames ({count.corrupt} corrupt packets)")
        time_base, start_pts, end_pts = stream_timing(stream, max(by_pts))
        pts = sorted(by_pts)
        rate = stream.average_rate
        return DecodedVideo([by_pts[p] for p in pts], pts, time_base, start_pts, end_pts,
                            stream.duration is not None, decoded_pts,
                            float(rate) if rate else None)
