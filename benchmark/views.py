"""Views: the model zoo's 10 temporal clips x 3 spatial crops of a decoded video.

Two stages, so frames can stay uint8 until they reach the model's device:
- ``sample_clips`` (CPU, in a loader worker): clip start times as pytorchvideo's
  ``ConstantClipsPerVideoSampler``, the frames ``EncodedVideo.get_clip`` would return for each
  clip (pts in [start, end)), then ``UniformTemporalSubsample``; uint8 (clips, C, T, H, W).
- ``make_views`` (on the device): /255, normalise, ``ShortSideScale``, ``UniformCropVideo`` per
  crop, pathway packing. The model card's operations, ordered to touch fewer pixels (see
  ``make_views``); the views equal the reference pipeline's within float rounding
  (tests/test_views.py holds them to 1e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
from pytorchvideo.data.utils import secs_to_pts
from pytorchvideo.transforms.functional import (
    short_side_scale,
    uniform_crop,
    uniform_temporal_subsample,
)

from benchmark.decode import DecodedVideo, DecodeError, decode_video, open_video, stream_timing


@dataclass(frozen=True)
class InputSpec:
    """A model's test input: what its config's ``input`` section says."""

    num_frames: int
    sampling_rate: int
    frames_per_second: int
    side_size: int
    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    alpha: int | None = None  # SlowFast speed ratio; None for single-pathway models

    @property
    def clip_duration(self) -> Fraction:
        return Fraction(self.num_frames * self.sampling_rate, self.frames_per_second)

    def example(self, batch: int = 1) -> list[torch.Tensor]:
        """A random input batch of the model's test shape (for FLOPs and timing)."""
        fast = torch.randn(batch, 3, self.num_frames, self.crop_size, self.crop_size)
        return pack_pathways(fast, self.alpha)


# Which UniformCropVideo aug_index each crop count uses: 1 crop is the centre (as PySlowFast's
# single-crop test), 2 are the two ends, 3 are top/left, centre, bottom/right.
CROP_INDICES = {1: (1,), 2: (0, 2), 3: (0, 1, 2)}


# How clip starts spread over the video (seconds). "to_end": i * max(D - d, 0) / max(N - 1, 1),
# first clip at 0 and last one ending at the end (REFERENCE.md, the protocol).
# "pytorchvideo_0.1.5": i * max(D - d, 0) / N, what the pinned release's
# ConstantClipsPerVideoSampler and PySlowFast do: the last clip stops short of the end.
CLIP_SPACINGS = ("to_end", "pytorchvideo_0.1.5")


def clip_starts(duration: Fraction, clip_duration: Fraction, clips: int,
                spacing: str = "to_end") -> list[Fraction]:
    """Start time of each of ``clips`` clips of ``clip_duration`` in a video of ``duration``."""
    if spacing not in CLIP_SPACINGS:
        raise ValueError(f"views.spacing must be one of {CLIP_SPACINGS}, got {spacing!r}")
    intervals = clips if spacing == "pytorchvideo_0.1.5" else max(clips - 1, 1)
    step = Fraction(max(duration - clip_duration, 0)) / intervals
    return [step * i for i in range(clips)]


def clip_frame_indices(video: DecodedVideo, start: Fraction, end: Fraction) -> list[int]:
    """Indices of the frames get_clip(start, end) returns: pts in [start, end), ceil-rounded."""
    lo = secs_to_pts(start, video.time_base, video.start_pts, round_mode="ceil")
    hi = secs_to_pts(end, video.time_base, video.start_pts, round_mode="ceil")
    return [i for i, p in enumerate(video.pts) if lo <= p < hi]


# Deliberate pipeline bugs (``views.fault``), so tests can show the regression check catches them.
FAULTS = ("reverse_frames", "centre_crop_only", "clips_from_start", "bgr")


def cut_clips(video: DecodedVideo, spec: InputSpec, starts: list[Fraction]) -> torch.Tensor:
    """uint8 (len(starts), C, num_frames, H, W): the clips starting at ``starts`` (seconds)."""
    picks = []
    for start in starts:
        indices = clip_frame_indices(video, start, start + spec.clip_duration)
        if not indices:
            raise ValueError(f"no frame in the clip [{float(start):.3f}s, "
                             f"{float(start + spec.clip_duration):.3f}s)")
        picks.extend(uniform_temporal_subsample(torch.tensor(indices), spec.num_frames, 0).tolist())
    frames = video.rgb(picks)  # (clips * T, H, W, C)
    return frames.view(len(starts), spec.num_frames, *frames.shape[1:]).permute(0, 4, 1, 2, 3)


def sample_clips(video: DecodedVideo, spec: InputSpec, clips: int, spacing: str = "to_end",
                 fault: str | None = None) -> torch.Tensor:
    """uint8 (clips, C, num_frames, H, W): each clip's frames, temporally subsampled."""
    starts = clip_starts(video.duration, spec.clip_duration, clips, spacing)
    if fault == "clips_from_start":
        starts = [Fraction(0)] * clips
    return _faulted(cut_clips(video, spec, starts), fault)


def _faulted(frames: torch.Tensor, fault: str | None) -> torch.Tensor:
    if fault == "reverse_frames":
        frames = frames.flip(2)
    if fault == "bgr":
        frames = frames.flip(1)
    return frames


class _OutOfOrder(Exception):
    """A frame came after a clip that would have used it was cut: decode again, keeping all."""


def decode_clips(path, spec: InputSpec, clips: int, spacing: str = "to_end", threads: int = 0,
                 fault: str | None = None) -> torch.Tensor:
    """``sample_clips(decode_video(path))``, the same tensor, holding only the frames some clip
    may still use while decoding.

    Decoding all of a 10 s 1080p video first holds 300 decoded frames (0.9 GB) beside its clips;
    here each clip is cut as soon as a frame past its end has been decoded, and frames before
    the next clip's start are let go. This needs the duration from the header (clip starts
    depend on it) and frames in presentation order; a file without either is decoded whole.
    """
    try:
        return _streamed_clips(path, spec, clips, spacing, threads, fault)
    except _OutOfOrder:
        return sample_clips(decode_video(path, threads), spec, clips, spacing, fault)


def _streamed_clips(path, spec: InputSpec, n: int, spacing: str, threads: int,
                    fault: str | None) -> torch.Tensor:
    with open_video(path, threads) as (stream, frames, count):
        time_base, start_pts, duration = stream_timing(stream, None)
        if duration is None:
            raise _OutOfOrder  # no duration in the header: the last frame's time decides
        starts = clip_starts(duration, spec.clip_duration, n, spacing)
        if fault == "clips_from_start":
            starts = [Fraction(0)] * n
        windows = [(secs_to_pts(s, time_base, start_pts, round_mode="ceil"),
                    secs_to_pts(s + spec.clip_duration, time_base, start_pts, round_mode="ceil"))
                   for s in starts]
        held: dict[int, object] = {}  # pts -> frame, from the next clip's start on
        rgb: dict[int, torch.Tensor] = {}  # converted once, for as long as the frame is held
        out: torch.Tensor | None = None
        empty: ValueError | None = None
        cut = 0  # clips cut so far (in order of their end)
        closed = None  # end pts of the last clip cut
        last = None

        def cut_next() -> None:
            nonlocal cut, out, empty
            lo, hi = windows[cut]
            inside = sorted(p for p in held if lo <= p < hi)
            if not inside:
                empty = empty or ValueError(
                    f"no frame in the clip [{float(starts[cut]):.3f}s, "
                    f"{float(starts[cut] + spec.clip_duration):.3f}s)")
            else:
                picks = uniform_temporal_subsample(torch.tensor(inside), spec.num_frames, 0)
                for t, p in enumerate(picks.tolist()):
                    if p not in rgb:
                        rgb[p] = torch.from_numpy(held[p].to_ndarray(format="rgb24", threads=1))
                    if out is None:
                        out = torch.empty((n, spec.num_frames, *rgb[p].shape), dtype=torch.uint8)
                    out[cut, t] = rgb[p]
            cut += 1
            keep_from = windows[cut][0] if cut < n else None
            for p in [p for p in held if keep_from is None or p < keep_from]:
                del held[p]
                rgb.pop(p, None)

        for frame in frames:
            p = frame.pts
            if closed is not None and p < closed:
                raise _OutOfOrder  # a clip already cut would have had this frame
            last = p if last is None else max(last, p)
            if cut < n and p >= windows[cut][0]:
                held[p] = frame
                rgb.pop(p, None)  # a repeated pts replaces the frame (as decode_video does)
            while cut < n and last >= windows[cut][1]:
                closed = windows[cut][1]
                cut_next()
        if last is None:
            raise DecodeError(f"no decodable video frames ({count.corrupt} corrupt packets)")
        while cut < n:
            cut_next()
    if empty is not None:
        raise empty
    return _faulted(out.permute(0, 4, 1, 2, 3), fault)


def slow_indices(t: int, alpha: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """PackPathway's slow-pathway frames: linspace(0, T - 1, T // alpha), truncated."""
    return torch.linspace(0, t - 1, t // alpha).long().to(device)


def pack_pathways(frames: torch.Tensor, alpha: int | None) -> list[torch.Tensor]:
    """SlowFast's PackPathway on a batch (N, C, T, H, W); a single pathway when alpha is None."""
    if alpha is None:
        return [frames]
    return [torch.index_select(frames, 2, slow_indices(frames.shape[2], alpha, frames.device)),
            frames]


def scaled_size(h: int, w: int, side: int) -> tuple[int, int]:
    """(H, W) after ``ShortSideScale(side)``: pytorchvideo's formula, float rounding included
    (so a long side that comes out one pixel short is still scaled, as the reference does)."""
    if w < h:
        return int(math.floor((float(h) / w) * side)), side
    return side, int(math.floor((float(w) / h) * side))


def normalise_(views: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """In place: /255 then ``NormalizeVideo(mean, std)``, as one multiply-add per value.

    In a channels-last batch the channel is the fastest axis, so per-channel factors would give
    3-long inner loops; each row of W pixels x C channels is one run instead, with the factors
    tiled along it, which vectorises.
    """
    std64 = torch.tensor(std, dtype=torch.float64)
    scale = (1 / (255 * std64)).float().to(views.device)
    shift = (-torch.tensor(mean, dtype=torch.float64) / std64).float().to(views.device)
    n, c, t, h, w = views.shape
    if c > 1 and views.is_contiguous(memory_format=torch.channels_last_3d):
        rows = views.permute(0, 2, 3, 4, 1).view(n * t * h, w * c)
        torch.addcmul(shift.repeat(w), rows, scale.repeat(w), out=rows)
    else:
        torch.addcmul(shift.view(c, 1, 1, 1), views, scale.view(c, 1, 1, 1), out=views)


def make_views(clips: torch.Tensor, spec: InputSpec, crops: int, fault: str | None = None,
               memory_format: torch.memory_format = torch.contiguous_format) -> list[torch.Tensor]:
    """Pathway tensors with batch clips * crops (clip-major) from uint8 (clips, C, T, H, W).

    The card's steps in an order that touches fewer pixels; the values equal within float
    rounding (bilinear weights sum to 1, so scaling commutes with the affine normalisation):
    - ``ShortSideScale`` first, and not at all when the frames already have the scaled size
      (bilinear at scale 1 is the identity: Kinetics copies resized to short side 256);
    - crops are ``uniform_crop`` slices copied once into the views; /255 + ``NormalizeVideo``
      run in place on the views (when scaling, on the float frames instead, which for 3 crops
      hold fewer pixels than the crops do);
    - the slow pathway is built from the frames it picks, not copied from the fast one.
    ``memory_format``: the views' layout (channels_last_3d for a channels-last model).
    """
    n, c, t, h, w = clips.shape
    size = scaled_size(h, w, spec.side_size)
    frames = clips
    if size != (h, w):
        # short_side_scale takes (C, T, H, W); folding the clips into C scales each plane alike.
        frames = short_side_scale(clips.float().reshape(n * c, t, h, w), spec.side_size)
        frames = frames.view(n, c, t, *size)
        normalise_(frames, spec.mean, spec.std)
    indices = (1,) * crops if fault == "centre_crop_only" else CROP_INDICES[crops]

    def crops_of(x: torch.Tensor) -> torch.Tensor:
        views = torch.empty((n * len(indices), c, x.shape[2], spec.crop_size, spec.crop_size),
                            device=x.device, memory_format=memory_format)
        for i in range(n):
            for j, k in enumerate(indices):
                views[i * len(indices) + j].copy_(uniform_crop(x[i], spec.crop_size, k))
        if x.dtype == torch.uint8:
            normalise_(views, spec.mean, spec.std)
        return views

    fast = crops_of(frames)
    if spec.alpha is None:
        return [fast]
    return [crops_of(frames.index_select(2, slow_indices(t, spec.alpha, frames.device))), fast]
