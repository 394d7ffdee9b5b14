"""Views: the 10 temporal clips x 3 spatial crops of a decoded video.

Two stages, so frames can stay uint8 until they reach the model's device:
- ``sample_clips`` (CPU, in a loader worker): the frames of each clip as the run's protocol
  picks them (clips.py), then ``UniformTemporalSubsample``; uint8 (clips, C, T, H, W).
- ``make_views`` (on the device): /255, normalise, ``ShortSideScale``, ``UniformCropVideo`` per
  crop, pathway packing. The model card's operations, ordered to touch fewer pixels (see
  ``make_views``); the views equal the reference pipeline's within float rounding
  (tests/test_views.py holds them to 1e-5). Another framework's spatial step (torchvision's
  ``weights.transforms()``) is its adapter's ``views``, resolved once to a ``Spatial`` when the
  run composes the protocol (``frameworks.spatial``).

The shared tensor work of every framework's protocol lives here, below the adapters, and imports
no framework: pytorchvideo's ``uniform_temporal_subsample``, ``short_side_scale`` and
``uniform_crop`` are restated below from its 0.1.5 source (transforms/functional.py) and held
equal to it by tests/test_views.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch

from benchmark.data.decode import DecodedVideo, DecodeError, decode_video, open_video, stream_timing
from benchmark.frameworks.clips import Timing


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
    # torchvision's VideoClassification resize_size: (H, W), or (short side,); the
    # ``torchvision`` spatial step only (side_size is then the short side it gives).
    resize_size: tuple[int, ...] | None = None

    @property
    def clip_duration(self) -> Fraction:
        # Fraction of the rate: torchvision's MViT runs at 7.5 fps.
        return Fraction(self.num_frames * self.sampling_rate) / Fraction(self.frames_per_second)

    @property
    def views_mean(self) -> str:
        """How a video's views combine: ``softmax`` (the mean of their softmax) or ``logits``
        (the softmax of their mean logits: mmaction2's TSN, whose spec says so)."""
        return "softmax"

    def example(self, batch: int = 1) -> list[torch.Tensor]:
        """A random input batch of the model's test shape (for FLOPs and timing)."""
        fast = torch.randn(batch, 3, self.num_frames, self.crop_size, self.crop_size)
        return pack_pathways(fast, self.alpha)


# Which UniformCropVideo aug_index each crop count uses: 1 crop is the centre (as PySlowFast's
# single-crop test), 2 are the two ends, 3 are top/left, centre, bottom/right.
CROP_INDICES = {1: (1,), 2: (0, 2), 3: (0, 1, 2)}


# Deliberate pipeline bugs (``views.fault``), so tests can show the regression check catches them.
FAULTS = ("reverse_frames", "centre_crop_only", "clips_from_start", "bgr")


def cut_clips(video: DecodedVideo, spec: InputSpec, windows: list[list[int]]) -> torch.Tensor:
    """uint8 (len(windows), C, num_frames, H, W): each window's frames (indices into
    ``video.frames``), temporally subsampled to ``spec.num_frames``."""
    picks = []
    for indices in windows:
        if not indices:
            raise ValueError("a clip has no frame (the video's timestamps lie outside it)")
        picks.extend(uniform_temporal_subsample(torch.tensor(indices), spec.num_frames, 0).tolist())
    frames = video.rgb(picks)  # (clips * T, H, W, C)
    return frames.view(len(windows), spec.num_frames, *frames.shape[1:]).permute(0, 4, 1, 2, 3)


def sample_clips(video: DecodedVideo, spec: InputSpec, clips: int, timing: Timing,
                 fault: str | None = None) -> torch.Tensor:
    """uint8 (clips, C, num_frames, H, W): each clip's frames as the protocol's ``clips``
    timing picks them (clips.py), temporally subsampled; a timing whose adapter cuts its clips
    itself (``timing.cut_clips``: mmaction2's config's sampler and resize) gives resized frames."""
    if timing.cut_clips is not None:
        return timing.cut_clips(video, spec, clips, fault=fault)
    windows = timing.clip_windows(video, spec.clip_duration, clips,
                                  frame_rate=spec.frames_per_second, clip_len=spec.num_frames)
    if fault == "clips_from_start":
        windows = [windows[0]] * clips
    return faulted(cut_clips(video, spec, windows), fault)


def faulted(frames: torch.Tensor, fault: str | None) -> torch.Tensor:
    """uint8 (views, C, T, H, W) clips with ``views.fault``'s frame-level bug applied (reversed
    frames, BGR); the one home of them, for the adapters that cut their own clips too."""
    if fault == "reverse_frames":
        frames = frames.flip(2)
    if fault == "bgr":
        frames = frames.flip(1)
    return frames


class _OutOfOrder(Exception):
    """A frame came after a clip that would have used it was cut: decode again, keeping all."""


def decode_clips(path, spec: InputSpec, clips: int, timing: Timing, threads: int = 0,
                 fault: str | None = None) -> torch.Tensor:
    """``sample_clips(decode_video(path))``, the same tensor, holding only the frames some clip
    may still use while decoding.

    Decoding all of a 10 s 1080p video first holds 300 decoded frames (0.9 GB) beside its clips;
    here each clip is cut as soon as a frame past its end has been decoded, and frames before
    the next clip's start are let go. This needs the duration from the header (the clips' times
    depend on it) and frames in presentation order (then a framework's per-clip decode that
    stops at the first frame past the clip loses nothing either); a file without either is
    decoded whole.
    """
    try:
        return _streamed_clips(path, spec, clips, timing, threads, fault)
    except _OutOfOrder:
        return sample_clips(decode_video(path, threads), spec, clips, timing, fault)


def _streamed_clips(path, spec: InputSpec, n: int, timing: Timing, threads: int,
                    fault: str | None) -> torch.Tensor:
    with open_video(path, threads) as (stream, frames, count):
        time_base, start_pts, end_pts = stream_timing(stream, None)
        if stream.duration is None:
            # No duration in the header (the last frame's time decides): decode whole.
            raise _OutOfOrder
        windows = timing.pts_windows(time_base, start_pts, end_pts, spec.clip_duration, n)
        if windows is None:  # clips by frame count (torchvision): decode whole
            raise _OutOfOrder
        if fault == "clips_from_start":
            windows = [windows[0]] * n
        held: dict[int, object] = {}  # pts -> frame, from the next clip's start on
        rgb: dict[int, torch.Tensor] = {}  # converted once, for as long as the frame is held
        out: torch.Tensor | None = None
        empty: ValueError | None = None
        cut = 0  # clips cut so far (in order of their end)
        last = None

        def cut_next() -> None:
            nonlocal cut, out, empty
            inside = sorted(p for p in held if windows[cut].inside(p))
            if not inside:
                empty = empty or ValueError(
                    "a clip has no frame (the video's timestamps lie outside it)")
            else:
                picks = uniform_temporal_subsample(torch.tensor(inside), spec.num_frames, 0)
                for t, p in enumerate(picks.tolist()):
                    if p not in rgb:
                        rgb[p] = torch.from_numpy(held[p].to_ndarray(format="rgb24", threads=1))
                    if out is None:
                        out = torch.empty((n, spec.num_frames, *rgb[p].shape), dtype=torch.uint8)
                    out[cut, t] = rgb[p]
            cut += 1
            keep_from = windows[cut].lo if cut < n else None
            for p in [p for p in held if keep_from is None or p < keep_from]:
                del held[p]
                rgb.pop(p, None)

        for frame in frames:
            p = frame.pts
            if last is not None and p < last:
                raise _OutOfOrder  # a frame before one already seen: decode whole instead
            last = p
            if cut < n and p >= windows[cut].lo:
                held[p] = frame
                rgb.pop(p, None)  # a repeated pts replaces the frame (as decode_video does)
            while cut < n and windows[cut].past(last):
                cut_next()
        if last is None:
            raise DecodeError(f"no decodable video frames ({count.corrupt} corrupt packets)")
        while cut < n:
            cut_next()
    if empty is not None:
        raise empty
    return faulted(out.permute(0, 4, 1, 2, 3), fault)


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
               memory_format: torch.memory_format = torch.contiguous_format,
               spatial: Spatial | None = None) -> list[torch.Tensor]:
    """Pathway tensors with batch clips * crops (clip-major) from uint8 (clips, C, T, H, W), as
    the protocol's ``spatial`` step makes them (resolved to its adapter's ``views`` once:
    ``frameworks.spatial``; by default pytorchvideo's ``uniform_crop``, written below)."""
    return (spatial or UNIFORM_CROP).views(clips, spec, crops, fault, memory_format)


def uniform_crop_views(clips: torch.Tensor, spec: InputSpec, crops: int, fault: str | None = None,
                       memory_format: torch.memory_format = torch.contiguous_format
                       ) -> list[torch.Tensor]:
    """pytorchvideo's spatial step (``ShortSideScale``, ``UniformCropVideo``, ``NormalizeVideo``,
    ``PackPathway``) on uint8 (clips, C, T, H, W).

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


@dataclass(frozen=True)
class Spatial:
    """A protocol's ``spatial`` resolved once to its adapter's step (``frameworks.spatial``):
    ``views(clips, spec, crops, fault, memory_format)`` -> pathway tensors."""

    name: str
    views: Callable[..., list[torch.Tensor]]


# pytorchvideo's spatial step: shared code, so the default needs no registry.
UNIFORM_CROP = Spatial("uniform_crop", uniform_crop_views)


# ---- pytorchvideo 0.1.5's transforms/functional.py, restated (the shared code imports no
# framework; tests/test_views.py compares each with pytorchvideo's own) ----------------------

def uniform_temporal_subsample(x: torch.Tensor, num_samples: int,
                               temporal_dim: int = -3) -> torch.Tensor:
    """``num_samples`` equispaced indices of ``temporal_dim`` (nearest neighbour when more)."""
    t = x.shape[temporal_dim]
    assert num_samples > 0 and t > 0
    indices = torch.linspace(0, t - 1, num_samples)
    indices = torch.clamp(indices, 0, t - 1).long()
    return torch.index_select(x, temporal_dim, indices)


def short_side_scale(x: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """(C, T, H, W) float32 with the short side scaled to ``size`` (``scaled_size``)."""
    assert len(x.shape) == 4
    assert x.dtype == torch.float32
    c, t, h, w = x.shape
    return torch.nn.functional.interpolate(x, size=scaled_size(h, w, size), mode=interpolation,
                                           align_corners=False)


def uniform_crop(images: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """(C, T, size, size): the left/top (0), centre (1) or right/bottom (2) square of the long side."""
    assert spatial_idx in [0, 1, 2]
    height = images.shape[2]
    width = images.shape[3]
    y_offset = int(math.ceil((height - size) / 2))
    x_offset = int(math.ceil((width - size) / 2))
    if height > width:
        if spatial_idx == 0:
            y_offset = 0
        elif spatial_idx == 2:
            y_offset = height - size
    else:
        if spatial_idx == 0:
            x_offset = 0
        elif spatial_idx == 2:
            x_offset = width - size
    return images[:, :, y_offset: y_offset + size, x_offset: x_offset + size]
