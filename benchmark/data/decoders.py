"""Decoder backends (``decoder=pyav|torchcodec|decord``): each gives the shared view code the same
``DecodedVideo`` (frames in presentation order, their pts in the stream's time base), so every
protocol picks clips the same way whichever library decoded the frames.

Why three: decoding moves accuracy (mmaction2 users measured about a point between decord
versions), torchvision's own video reading is deprecated in favour of torchcodec, and mmaction2's
configs use decord; ``make decoders`` (docs/decoders.md) measures where they differ.

What each backend supplies, and what it cannot:
- pyav: everything (decode.py), also the order in which the decoder gave the frames, which
  pytorchvideo's per-clip decode stops by (clips.py ``stops_early``).
- torchcodec, decord: the frames (RGB) and their timestamps. The stream header (time base, start,
  duration, average rate) is read with PyAV for every backend, as pytorchvideo reads it, so the
  clip times are the same; neither says in which order its decoder produced the frames, so their
  ``decoded_pts`` is the presentation order. Both decode the whole file to RGB (frames x H x W x 3
  bytes in the worker), where PyAV cuts clips while decoding (views.py ``decode_clips``).
- Where a backend disagrees with itself (torchcodec's index lists a frame it cannot decode; decord
  has no timestamps for a file) the video's ``notes`` say so, and the run records them beside its
  prediction, rather than clips shifting silently.
"""

from __future__ import annotations

import importlib.metadata
from fractions import Fraction
from pathlib import Path

import torch

from benchmark.data.decode import (DecodedVideo, DecodeError, decode_video, open_video,
                                   stream_timing)

BACKENDS = ("pyav", "torchcodec", "decord")
CHUNK = 64  # frames per decord call
FFMPEG_HINT = ("FFmpeg's shared libraries (libavutil.so.56 to .61: FFmpeg 4 to 9) cannot be "
               "loaded: apt-get install -y --no-install-recommends ffmpeg (make install does "
               "this as root), or use decoder=pyav")


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (not installed, FFmpeg missing): a setting problem, one line."""


def version(backend: str) -> str:
    """The backend's package version, for the run's identity (a decoder version moves accuracy)."""
    package = {"pyav": "av"}.get(backend, backend)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def check_available(backend: str) -> None:
    """Raise BackendUnavailable (one line: what to install) unless ``backend`` can decode here."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"decoder={backend}: unknown, expected one of {', '.join(BACKENDS)}")
    if backend == "torchcodec":
        _torchcodec()
    elif backend == "decord":
        _decord()


def decode(path: str | Path, backend: str = "pyav", threads: int = 0) -> DecodedVideo:
    """Every frame of ``path`` with ``backend``; DecodeError (the reason) for a bad file."""
    if backend == "pyav":
        return decode_video(path, threads)
    if not Path(path).is_file():
        raise DecodeError(f"file not found: {path}")
    if backend == "torchcodec":
        rgb, seconds, notes = _torchcodec_frames(path, threads)
    elif backend == "decord":
        rgb, seconds, notes = _decord_frames(path, threads)
    else:
        raise BackendUnavailable(f"decoder={backend}: unknown, expected one of {', '.join(BACKENDS)}")
    return _assemble(path, backend, rgb, seconds, notes, since_start=backend == "decord")


def _header(path: str | Path):
    """The first video stream's header fields (PyAV, opened as decode.py opens it for a run;
    nothing is decoded)."""
    with open_video(path) as (stream, _, _):
        rate = stream.average_rate
        return (stream_timing(stream, None), stream.duration is not None,
                float(rate) if rate else None, stream.frames)


def _assemble(path, backend: str, rgb: list[torch.Tensor], seconds: list[float | None],
              notes: list[str], since_start: bool = False) -> DecodedVideo:
    """A DecodedVideo from a backend's frames and their times in seconds (None: unknown), which
    ``since_start`` counts from the stream's start (decord) rather than from zero (torchcodec)."""
    (time_base, start_pts, end_pts), has_duration, fps, header_frames = _header(path)
    if not rgb:
        raise DecodeError(f"{backend}: no decodable video frames")
    if any(s is None for s in seconds):
        step = 1 / Fraction(fps or 1)
        notes.append(f"{backend} gives no timestamps for this file: frame i is taken at "
                     f"start + i / {fps or 1:g} fps")
        ticks = [start_pts + round(i * step / time_base) for i in range(len(rgb))]
    else:
        offset = start_pts if since_start else 0
        ticks = [offset + round(Fraction(s) / time_base) for s in seconds]
    by_pts = dict(zip(ticks, rgb))  # a repeated timestamp keeps the last frame, as decode_video
    if len(by_pts) < len(rgb):
        notes.append(f"{backend}: {len(rgb) - len(by_pts)} of its {len(rgb)} frames repeat an "
                     "earlier frame's timestamp (the later one kept)")
    if header_frames and header_frames != len(by_pts):
        notes.append(f"{backend} gave {len(by_pts)} distinct frames, the header lists "
                     f"{header_frames}")
    pts = sorted(by_pts)
    return DecodedVideo([by_pts[p] for p in pts], pts, time_base, start_pts,
                        end_pts if end_pts is not None else pts[-1], has_duration, pts, fps, notes)


def _torchcodec():
    """torchcodec's VideoDecoder, with FFmpeg's libraries loaded (else BackendUnavailable)."""
    try:
        from torchcodec.decoders import VideoDecoder
        from torchcodec._core.ops import load_core_libraries
    except ImportError as err:
        raise BackendUnavailable(f"decoder=torchcodec: torchcodec is not installed ({err}): "
                                 "pip install -e '.[decoders]'") from None
    try:
        load_core_libraries()
    except RuntimeError:  # torchcodec's 40-line message, one line here
        raise BackendUnavailable(f"decoder=torchcodec: {FFMPEG_HINT}") from None
    return VideoDecoder


def _torchcodec_frames(path, threads: int):
    """All frames torchcodec can decode, one call each in order (no seeking): measured here that
    is 5x faster than one ``get_frames_in_range`` over the file (0.85 s against 4.6 s for 300
    frames), and on a packed-B-frame AVI, whose index lists one frame more than it decodes, a
    range call fails where this stops at the frame that fails."""
    VideoDecoder = _torchcodec()
    try:
        decoder = VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC",
                               num_ffmpeg_threads=threads)
    except (RuntimeError, ValueError) as err:
        raise DecodeError(f"torchcodec cannot open it: {_first_line(err)}") from None
    listed = len(decoder)
    rgb: list[torch.Tensor] = []
    seconds: list[float] = []
    notes: list[str] = []
    for index in range(listed):
        try:
            frame = decoder.get_frame_at(index)
        except RuntimeError as err:
            notes.append(f"torchcodec decoded {index} of the {listed} frames its index lists "
                         f"({_first_line(err)})")
            break
        rgb.append(frame.data)
        seconds.append(frame.pts_seconds)
    return rgb, seconds, notes


def _decord():
    try:
        import decord
    except ImportError as err:
        raise BackendUnavailable(f"decoder=decord: decord is not installed ({err}): "
                                 "pip install -e '.[decoders]'") from None
    return decord


def _decord_frames(path, threads: int):
    """All frames decord decodes; its timestamps come from its index, in seconds since the stream's
    start (a file whose first frame is at 1.5 s gives 0 for it); negative: none known."""
    decord = _decord()
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
        count = len(reader)
        times = reader.get_frame_timestamp(list(range(count)))[:, 0].tolist() if count else []
        rgb = []
        for start in range(0, count, CHUNK):
            batch = reader.get_batch(list(range(start, min(start + CHUNK, count))))
            rgb.extend(torch.from_numpy(batch.asnumpy()).unbind(0))
    except decord.DECORDError as err:
        raise DecodeError(f"decord cannot decode it: {_first_line(err)}") from None
    seconds = [t if t >= 0 else None for t in times]
    return rgb, seconds, []


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
