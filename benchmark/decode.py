"""Decoding: each video is decoded once with PyAV; failures come back as a reason, not a crash.

The reference path (``EncodedVideo.get_clip``) seeks and decodes again for every clip; decoding
once and picking frames by timestamp gives the same frames (see views.py) at a fraction of the cost.
Frames stay as PyAV frames until a view needs them, so only used frames are converted to RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


class DecodeError(RuntimeError):
    """A video that cannot be evaluated; the message is the reason a person reads."""


@dataclass
class DecodedVideo:
    frames: list[av.VideoFrame]  # presentation order, one per distinct pts
    pts: list[int]  # in units of time_base, absolute (start_pts included)
    time_base: Fraction
    start_pts: int
    duration: Fraction  # seconds, computed as pytorchvideo's EncodedVideoPyAV does

    def rgb(self, indices: list[int]) -> torch.Tensor:
        """(len(indices), H, W, 3) uint8 RGB frames; each distinct frame converted once."""
        unique = sorted(set(indices))
        arrays = {i: self.frames[i].to_ndarray(format="rgb24") for i in unique}
        return torch.from_numpy(np.stack([arrays[i] for i in indices]))


def decode_video(path: str | Path, threads: int = 0) -> DecodedVideo:
    """Decode every video frame of ``path`` (no audio).

    ``threads``: FFmpeg decoding threads (0 lets FFmpeg choose); frame-and-slice threading
    ("AUTO") is often several times faster than PyAV's default.
    """
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
        by_pts: dict[int, av.VideoFrame] = {}
        try:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    by_pts[frame.pts] = frame
        except av.error.FFmpegError as err:
            raise DecodeError(f"decoding failed after {len(by_pts)} frames: {err}") from None
        if not by_pts:
            raise DecodeError("no decodable video frames")
        time_base = Fraction(stream.time_base)
        start_pts = stream.start_time if stream.start_time is not None else 0
        # As EncodedVideoPyAV: the header's duration, else the last frame's time.
        end = stream.duration if stream.duration is not None else max(by_pts)
        pts = sorted(by_pts)
        return DecodedVideo([by_pts[p] for p in pts], pts, time_base, start_pts,
                            int(end - start_pts) * time_base)
