"""The `zoo` protocol's yardstick, run in a subprocess with pytorchvideo 0.1.0 first on sys.path.

How the pytorchvideo model zoo's Kinetics numbers were made (PySlowFast `Ptvkinetics`, commit
298cd16, with pytorchvideo 0.1.0): `EncodedVideoDataset` + `ConstantClipsPerVideoSampler(clip
duration as a float, clips, augs_per_clip=crops)`, no audio, and 0.1.0's own transforms:
UniformTemporalSubsample, /255, NormalizeVideo, ShortSideScale, UniformCropVideo by aug index.
Everything here is that release's code; this file only wires it together.

    python zoo_reference.py REFS_DIR OUT.pt SPEC_JSON CLIPS CROPS VIDEO...

writes {video path: [per view: fast-pathway tensor (C, T, H, W)]} with torch.save. With one crop
the sampler's aug index 0 is mapped to the centre crop (index 1), the harness's single crop.
"""

import json
import sys

refs, out, spec_json, clips, crops, *paths = sys.argv[1:]
sys.path.insert(0, refs)

import torchvision.transforms._functional_tensor as _ft  # noqa: E402

# 0.1.0's transforms import the module under its old name, as 0.1.5's do (benchmark/frameworks/pytorchvideo/compat.py).
sys.modules.setdefault("torchvision.transforms.functional_tensor", _ft)

import pytorchvideo  # noqa: E402
import torch  # noqa: E402
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler  # noqa: E402
from pytorchvideo.data.encoded_video_dataset import EncodedVideoDataset  # noqa: E402
from pytorchvideo.transforms import (  # noqa: E402
    ApplyTransformToKey,
    ShortSideScale,
    UniformCropVideo,
    UniformTemporalSubsample,
)
from torch.utils.data import SequentialSampler  # noqa: E402
from torchvision.transforms import Compose, Lambda  # noqa: E402
from torchvision.transforms._transforms_video import NormalizeVideo  # noqa: E402

assert pytorchvideo.__version__ == "0.1.0", pytorchvideo.__file__
spec = json.loads(spec_json)
clips, crops = int(clips), int(crops)
# PySlowFast: clip_duration = NUM_FRAMES * SAMPLING_RATE / TARGET_FPS (a float).
clip_duration = spec["num_frames"] * spec["sampling_rate"] / spec["frames_per_second"]
transform = Compose([
    ApplyTransformToKey("video", Compose([
        UniformTemporalSubsample(spec["num_frames"]),
        Lambda(lambda x: x / 255.0),
        NormalizeVideo(spec["mean"], spec["std"]),
        ShortSideScale(size=spec["side_size"]),
    ])),
    Lambda(lambda x: {**x, "aug_index": 1} if crops == 1 else x),
    UniformCropVideo(size=spec["crop_size"]),
])
views = {}
for path in paths:
    dataset = EncodedVideoDataset([(path, {"label": 0})],
                                  ConstantClipsPerVideoSampler(clip_duration, clips, crops),
                                  video_sampler=SequentialSampler, transform=transform,
                                  decode_audio=False)
    views[path] = [sample["video"] for _, sample in zip(range(clips * crops), dataset)]
torch.save(views, out)
