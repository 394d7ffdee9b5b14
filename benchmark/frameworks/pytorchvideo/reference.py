"""The reference pipeline: pytorchvideo 0.1.5's own test path, as a pytorchvideo user writes it.

``LabeledVideoDataset`` with ``ConstantClipsPerVideoSampler(clip duration, clips,
augs_per_clip=crops)`` (it decodes each clip anew, once for all its crops; no audio, as
PySlowFast's ``Ptvkinetics``), the model card's float transforms and ``UniformCropVideo`` by
aug index, one view at a time. It is the yardstick of the ``pytorchvideo`` protocol (the tests
hold the harness's views to it) and the benchmark's baseline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from pytorchvideo.data import LabeledVideoDataset
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler
from pytorchvideo.transforms import (
    ApplyTransformToKey,
    ShortSideScale,
    UniformCropVideo,
    UniformTemporalSubsample,
)
from torch.utils.data import SequentialSampler
from torchvision.transforms import Compose, Lambda
from torchvision.transforms._transforms_video import NormalizeVideo

from benchmark.frameworks.views import CROP_INDICES, InputSpec, pack_pathways


def reference_views(path: str | Path, spec: InputSpec, clips: int,
                    crops: int) -> Iterator[list[torch.Tensor]]:
    """Yield each view's pathway list (batch 1), clip-major, as pytorchvideo 0.1.5 builds them.

    The sampler's aug index i is mapped to ``CROP_INDICES[crops][i]`` before the crop (the same
    0, 1, 2 for 3 crops; the centre for 1 crop, as PySlowFast's single-crop test).
    """
    transform = Compose([
        ApplyTransformToKey("video", Compose([
            UniformTemporalSubsample(spec.num_frames),
            Lambda(lambda x: x / 255.0),
            NormalizeVideo(list(spec.mean), list(spec.std)),
            ShortSideScale(size=spec.side_size),
        ])),
        Lambda(lambda x: {**x, "aug_index": CROP_INDICES[crops][x["aug_index"]]}),
        UniformCropVideo(spec.crop_size),
    ])
    dataset = LabeledVideoDataset(
        [(str(path), {"label": 0})],
        ConstantClipsPerVideoSampler(spec.clip_duration, clips, augs_per_clip=crops),
        video_sampler=SequentialSampler, transform=transform, decode_audio=False)
    for _, sample in zip(range(clips * crops), dataset):
        yield pack_pathways(sample["video"].unsqueeze(0), spec.alpha)
