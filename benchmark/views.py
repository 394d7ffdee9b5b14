"""Views: the model zoo's 10 temporal clips x 3 spatial crops of a decoded video.

Two stages, so frames can stay uint8 until they reach the model's device:
- ``sample_clips`` (CPU, in a loader worker): clip start times as pytorchvideo's
  ``ConstantClipsPerVideoSampler``, the frames ``EncodedVideo.get_clip`` would return for each
  clip (pts in [start, end)), then ``UniformTemporalSubsample``; uint8 (clips, C, T, H, W).
- ``make_views`` (on the device): /255, normalise, ``ShortSideScale``, ``UniformCropVideo`` per
  crop, pathway packing. Same operations in the same order as the model card, so the views equal
  the reference pipeline's (tests/test_views.py holds them to 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from pytorchvideo.data.utils import secs_to_pts
from pytorchvideo.transforms import UniformCropVideo
from pytorchvideo.transforms.functional import short_side_scale, uniform_temporal_subsample

from benchmark.decode import DecodedVideo


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


def sample_clips(video: DecodedVideo, spec: InputSpec, clips: int,
                 spacing: str = "to_end") -> torch.Tensor:
    """uint8 (clips, C, num_frames, H, W): each clip's frames, temporally subsampled."""
    picks = []
    for start in clip_starts(video.duration, spec.clip_duration, clips, spacing):
        indices = clip_frame_indices(video, start, start + spec.clip_duration)
        if not indices:
            raise ValueError(f"no frame in the clip [{float(start):.3f}s, "
                             f"{float(start + spec.clip_duration):.3f}s)")
        picks.extend(uniform_temporal_subsample(torch.tensor(indices), spec.num_frames, 0).tolist())
    frames = video.rgb(picks)  # (clips * T, H, W, C)
    return frames.view(clips, spec.num_frames, *frames.shape[1:]).permute(0, 4, 1, 2, 3)


def pack_pathways(frames: torch.Tensor, alpha: int | None) -> list[torch.Tensor]:
    """SlowFast's PackPathway on a batch (N, C, T, H, W); a single pathway when alpha is None."""
    if alpha is None:
        return [frames]
    t = frames.shape[2]
    slow = torch.index_select(frames, 2, torch.linspace(0, t - 1, t // alpha).long().to(frames.device))
    return [slow, frames]


def make_views(clips: torch.Tensor, spec: InputSpec, crops: int) -> list[torch.Tensor]:
    """Pathway tensors with batch clips * crops (clip-major) from uint8 (clips, C, T, H, W)."""
    n, c, t, h, w = clips.shape
    x = clips.float() / 255.0
    mean = torch.tensor(spec.mean, device=x.device).view(1, c, 1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, c, 1, 1, 1)
    # NormalizeVideo's formula, batched over the clips.
    x = (x - mean) / std
    # short_side_scale takes (C, T, H, W); folding the clips into C scales each plane the same way.
    x = short_side_scale(x.reshape(n * c, t, h, w), spec.side_size)
    x = x.view(n, c, t, *x.shape[-2:])
    crop = UniformCropVideo(spec.crop_size)
    views = [crop({"video": x[i], "aug_index": k})["video"]
             for i in range(n) for k in CROP_INDICES[crops]]
    return pack_pathways(torch.stack(views), spec.alpha)
