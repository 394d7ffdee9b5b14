"""The reference pipeline: the model card's 10x3 evaluation as a pytorchvideo user writes it.

``EncodedVideo.get_clip`` per clip (a seek and decode each time), the card's float transforms,
``UniformCropVideo`` per crop, one view at a time. It is the yardstick: tests hold the harness's
views to it, and the benchmark times the harness against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from pytorchvideo.data.encoded_video import EncodedVideo
from pytorchvideo.transforms import ShortSideScale, UniformCropVideo, UniformTemporalSubsample
from torchvision.transforms import Compose, Lambda
from torchvision.transforms._transforms_video import NormalizeVideo

from benchmark.views import CROP_INDICES, InputSpec, clip_starts, pack_pathways


def reference_views(path: str | Path, spec: InputSpec, clips: int, crops: int,
                    spacing: str = "to_end") -> Iterator[list[torch.Tensor]]:
    """Yield each view's pathway list (batch 1), clip-major, as the model card builds them."""
    video = EncodedVideo.from_path(str(path), decode_audio=False, decoder="pyav")
    transform = Compose([
        UniformTemporalSubsample(spec.num_frames),
        Lambda(lambda x: x / 255.0),
        NormalizeVideo(list(spec.mean), list(spec.std)),
        ShortSideScale(size=spec.side_size),
    ])
    crop = UniformCropVideo(spec.crop_size)
    for start in clip_starts(video.duration, spec.clip_duration, clips, spacing):
        frames = transform(video.get_clip(start, start + spec.clip_duration)["video"])
        for index in CROP_INDICES[crops]:
            view = crop({"video": frames, "aug_index": index})["video"]
            yield pack_pathways(view.unsqueeze(0), spec.alpha)
    video.close()
