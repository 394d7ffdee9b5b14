"""The torchvision adapter: its video models (``torchvision.models.video``), their weights enum
(URL with a hash prefix, class names in its meta), and ``references/video_classification``'s
test protocol: clips by frame count (``VideoClips`` + ``UniformClipSampler``) and
``weights.transforms()``'s resize and centre crop. The only code that imports torchvision's
models; the shared view code uses ``torch.nn.functional`` only.

The smallest complete adapter (docs/architecture.md points a newcomer here): module functions
for each required member of ``frameworks/api.py``'s ``Adapter``, and ``TorchvisionAdapter``
at the end naming them; every optional member keeps the base class's default.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torchvision
import torchvision.models
import torchvision.models.video
import torchvision.transforms.functional as TF

from benchmark.frameworks.api import Adapter
from benchmark.frameworks.clips import TooShort
from benchmark.frameworks.common import instantiate_builder, state_dict_of
from benchmark.frameworks.views import InputSpec, normalise_, pack_pathways
from benchmark.data.decode import DecodedVideo

NAME = "torchvision"
TIMINGS = ("torchvision",)
SPATIALS = ("torchvision",)
CHECK_HASH = True  # load_state_dict_from_url(check_hash=True): the prefix in the file name


def version() -> dict[str, str]:
    return {"torchvision": torchvision.__version__}


def build(model_cfg, class_names=None) -> torch.nn.Module:
    """The config's ``builder`` (a ``torchvision.models.video`` function, ``weights: null``)."""
    return instantiate_builder(model_cfg)


# torchvision's checkpoints are plain state dicts (the zoo's wrapper is accepted too).
checkpoint_state = state_dict_of


def weights(cfg):
    """The torchvision weights enum member a model config names (``torchvision_weights``, e.g.
    ``R3D_18_Weights.KINETICS400_V1``), or None for other models."""
    name = cfg.torchvision_weights
    if not name:
        return None
    try:
        return torchvision.models.get_weight(str(name))
    except (ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"model.torchvision_weights: {name}: not a torchvision weights enum "
                           f"member ({err})") from None


def official_url(model_cfg) -> str | None:
    enum = weights(model_cfg)
    return model_cfg.checkpoint_url or (enum.url if enum is not None else None)


def class_names(model_cfg) -> tuple[str, list[str]] | None:
    """(label, names in id order): the weights' ``meta["categories"]``, or None."""
    enum = weights(model_cfg)
    if enum is None:
        return None
    return str(model_cfg.torchvision_weights), list(enum.meta["categories"])


TORCHVISION_NAMES = "torchvision's Kinetics-400 categories"


def kinetics400_names() -> list[str]:
    """Kinetics-400's 400 class names in id order, shipped with torchvision (no network): the
    alphabetical order, that of PySlowFast's kinetics_classnames.json (docs/data.md)."""
    return list(torchvision.models.video.R3D_18_Weights.KINETICS400_V1.meta["categories"])


def clip_windows(video: DecodedVideo, clip_duration: Fraction, clips: int, timing: str,
                 frame_rate: float | None = None, clip_len: int | None = None) -> list[list[int]]:
    """Clips by frame count at the model's ``frame_rate``, ``clip_len`` frames each."""
    if frame_rate is None or clip_len is None:
        raise ValueError("protocol.clips=torchvision needs the model's frame_rate and clip_len")
    return torchvision_windows(video, frame_rate, clip_len, clips)


def pts_windows(time_base: Fraction, start_pts: int, end_pts: int, clip_duration: Fraction,
                clips: int, timing: str) -> None:
    """None: clips by frame count need every frame's count first (decoded whole)."""
    return None


def torchvision_windows(video: DecodedVideo, frame_rate: float, clip_len: int,
                        clips: int) -> list[list[int]]:
    """torchvision ``references/video_classification``'s test clips, as its ``VideoClips`` and
    ``UniformClipSampler`` pick them: the video's frames resampled to ``frame_rate`` (frame
    floor(i * fps / frame_rate) for i < floor(frames * frame_rate / fps); every step-th when
    the ratio is a whole number), every window of ``clip_len`` of those at stride 1, and
    ``clips`` of the windows at linspace(0, windows - 1, clips).floor() (repeats when there
    are fewer). fps is the stream's average rate, as torchvision read it."""
    fps = video.average_fps or 1.0  # VideoClips: a stream without a rate counts as 1 fps
    frames = len(video.pts)
    step = fps / frame_rate
    if float(step).is_integer():
        resampled = list(range(0, frames, int(step)))
    else:
        count = int(math.floor(frames * frame_rate / fps))
        resampled = (torch.arange(count, dtype=torch.float32) * step).floor().long().tolist()
    windows = len(resampled) - clip_len + 1
    if windows < 1:
        raise TooShort(f"too short for one clip: {len(resampled)} frames at the model's "
                       f"frame_rate {frame_rate:g} ({frames} decoded at {fps:g} fps), a clip has "
                       f"{clip_len} (torchvision's VideoClips skips such a video)")
    starts = torch.linspace(0, windows - 1, steps=clips).floor().long().tolist()
    return [resampled[s:s + clip_len] for s in starts]


def torchvision_views(clips: torch.Tensor, spec: InputSpec,
                      memory_format: torch.memory_format = torch.contiguous_format
                      ) -> torch.Tensor:
    """(clips, C, T, crop, crop) float views as torchvision's ``VideoClassification`` (its
    weights' ``transforms()``) makes them: ``resize`` of the uint8 frames to ``resize_size``
    (bilinear, antialias=False, rounded back to uint8 as torchvision does for uint8 input),
    ``center_crop``, then /255 and the mean/std as one multiply-add (``normalise_``)."""
    if spec.resize_size is None:
        raise ValueError("model.input.resize_size: the torchvision spatial step needs it")
    n, c, t, h, w = clips.shape
    frames = clips.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    frames = TF.resize(frames, list(spec.resize_size), interpolation=TF.InterpolationMode.BILINEAR,
                       antialias=False)
    frames = TF.center_crop(frames, [spec.crop_size, spec.crop_size])
    views = torch.empty((n, c, t, spec.crop_size, spec.crop_size), dtype=torch.float32,
                        device=clips.device, memory_format=memory_format)
    views.copy_(frames.view(n, t, c, spec.crop_size, spec.crop_size).permute(0, 2, 1, 3, 4))
    normalise_(views, spec.mean, spec.std)
    return views


def views(clips: torch.Tensor, spec, crops: int, fault: str | None = None,
          memory_format: torch.memory_format = torch.contiguous_format,
          spatial: str | None = None) -> list[torch.Tensor]:
    """``torchvision``: one centre crop (``torchvision_views``), single pathway."""
    if crops != 1:
        raise ValueError(f"views.crops: the torchvision protocol takes one centre crop, got {crops}")
    return pack_pathways(torchvision_views(clips, spec, memory_format), spec.alpha)


def setting_problems(protocol, crops: int, model_input) -> list[tuple[str, str]]:
    """(key, message) for settings torchvision's protocol cannot run: more than one crop, or a
    model without ``resize_size``."""
    problems = []
    if protocol.spatial == "torchvision" and crops != 1:
        problems.append(("views.crops", f"the {protocol.name} protocol takes one centre crop "
                                        f"(views.crops=1), got {crops}"))
    if protocol.spatial == "torchvision" and model_input.get("resize_size") is None:
        problems.append(("model.input.resize_size", f"the {protocol.name} protocol resizes as "
                         "torchvision's weights.transforms() does; this model has none "
                         f"(its protocol is not {protocol.name})"))
    return problems


def apply_head(module: torch.nn.Module, head: str) -> bool:
    """torchvision's video heads pool before their one linear layer: one location, where the
    softmax before or after the mean agree; nothing to change."""
    return False


class TorchvisionAdapter(Adapter):
    """torchvision's adapter (frameworks/api.py types each member): the functions above."""

    NAME, TIMINGS, SPATIALS, CHECK_HASH = NAME, TIMINGS, SPATIALS, CHECK_HASH
    version = staticmethod(version)
    build = staticmethod(build)
    checkpoint_state = staticmethod(checkpoint_state)
    official_url = staticmethod(official_url)
    class_names = staticmethod(class_names)
    clip_windows = staticmethod(clip_windows)
    pts_windows = staticmethod(pts_windows)
    views = staticmethod(views)
    setting_problems = staticmethod(setting_problems)
    apply_head = staticmethod(apply_head)
    # Not in the interface: Kinetics-400's names as torchvision ships them (run/models.py's
    # offline class names).
    kinetics400_names = staticmethod(kinetics400_names)
    KINETICS400_LABEL = TORCHVISION_NAMES
