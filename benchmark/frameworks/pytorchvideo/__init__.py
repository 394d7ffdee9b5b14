"""The pytorchvideo adapter: everything that is pytorchvideo's, and the only code that imports it.

- models: the hub builders (``pytorchvideo.models.hub``), checkpoints ``{"model_state": ...}``;
- clip timings of three releases (``TIMINGS``): 0.1.0 (the zoo's numbers), 0.1.5 (the last
  release), main (commit 9368f30), and its SSv2 dataset's segment sampling (``pytorchvideo_ssv2``,
  PySlowFast's ``Ptvssv2`` test); the spatial step ``uniform_crop`` (short-side scale and
  ``UniformCropVideo``, written in the shared views.py and proved equal to pytorchvideo's);
- heads: ``apply_head`` (PySlowFast's softmax per location); ``eval.fuse``'s ``bn`` and ``relu``
  over its blocks (fuse.py); its own 0.1.5 dataset pipeline for the proofs and the bench
  (reference.py).
``PytorchvideoAdapter`` (the end of this file) is the typed interface the run calls
(frameworks/api.py).

pytorchvideo itself is imported where it is used, after compat.py's torchvision alias, so that
loader workers that only cut clips do not load its models.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from benchmark.frameworks.pytorchvideo import compat  # noqa: F401  (before any pytorchvideo import)
from benchmark.frameworks.api import Adapter
from benchmark.frameworks.clips import Window, frames_in, seconds_window
from benchmark.frameworks.fuse import pad_stem_channels
from benchmark.frameworks.common import instantiate_builder, state_dict_of
from benchmark.frameworks.views import uniform_crop_views
from benchmark.data.decode import DecodedVideo

NAME = "pytorchvideo"
TIMINGS = ("pytorchvideo_0.1.0", "pytorchvideo_0.1.5", "pytorchvideo_main", "pytorchvideo_ssv2")
SPATIALS = ("uniform_crop",)
CHECK_HASH = False  # the zoo's URLs carry no hash in their names


def version() -> dict[str, str]:
    import pytorchvideo

    return {"pytorchvideo": pytorchvideo.__version__}


def build(model_cfg, class_names=None) -> torch.nn.Module:
    """The config's ``builder`` (a ``pytorchvideo.models.hub`` function and its arguments)."""
    return instantiate_builder(model_cfg)


# The zoo's .pyth files hold {"model_state": ...}.
checkpoint_state = state_dict_of


def official_url(model_cfg) -> str | None:
    return model_cfg.checkpoint_url or None


def class_names(model_cfg) -> None:
    """The zoo's models have no class names of their own (kinetics_classnames.json maps them)."""
    return None


def clip_windows(video: DecodedVideo, clip_duration: Fraction, clips: int, timing: str,
                 frame_rate: float | None = None, clip_len: int | None = None) -> list[list[int]]:
    """Each clip's frames (indices into ``video.frames``) under the release ``timing`` names;
    ``pytorchvideo_ssv2``: ``frame_rate`` is the rate the frames were extracted at (the model's
    ``frames_per_second``), ``clip_len`` the frames per clip."""
    if timing == "pytorchvideo_ssv2":
        extracted = extracted_frames(video, float(frame_rate or 30))
        picks = [extracted[i] for i in segment_frames(len(extracted), int(clip_len))]
        # Ptvssv2 asserts one clip (TEST.NUM_ENSEMBLE_VIEWS == 1); more clips of its sampler
        # would each load the same whole video with the same frames.
        return [picks] * clips
    windows = pts_windows(video.time_base, video.start_pts, video.end_pts, clip_duration, clips,
                          timing)
    return [frames_in(video, w, stops_early(timing)) for w in windows]


def pts_windows(time_base: Fraction, start_pts: int, end_pts: int, clip_duration: Fraction,
                clips: int, timing: str) -> list[Window] | None:
    """Each clip's pts window under the framework named by ``timing``, from the stream's time
    base, start pts and end pts (the header's duration, else the last frame's pts)."""
    if timing == "pytorchvideo_0.1.0":
        # 0.1.0's ConstantClipsPerVideoSampler in its float arithmetic on its duration
        # ((end - start pts) * float(time base)); the clip duration a float as PySlowFast
        # computes it (NUM_FRAMES * SAMPLING_RATE / TARGET_FPS); get_clip's seconds -> pts
        # truncated (int(t / float(tb))) and its end inclusive: a 64/30 s clip of a 30 fps
        # video gets 65 frames.
        tb, d = float(time_base), float(clip_duration)
        step = max((end_pts - start_pts) * tb - d, 0) / clips
        return [Window(int(step * i / tb) + start_pts, int((step * i + d) / tb) + start_pts, True)
                for i in range(clips)]
    if timing == "pytorchvideo_ssv2":
        return None  # frames counted over the whole video: decoded whole
    if timing not in TIMINGS:
        raise ValueError(f"protocol.clips: no pts windows for {timing}")
    # 0.1.5's sampler: Fractions, clip i at i * max(D - d, 0) / N, D = int(end - start) * tb;
    # the unreleased main (commit 9368f30) divides by N - 1 (the last clip ends at the end).
    duration = int(end_pts - start_pts) * time_base
    intervals = clips if timing == "pytorchvideo_0.1.5" else max(clips - 1, 1)
    step = Fraction(max(duration - clip_duration, 0)) / intervals
    return [seconds_window(time_base, start_pts, step * i, step * i + clip_duration)
            for i in range(clips)]


def segment_frames(n: int, t: int) -> list[int]:
    """pytorchvideo 0.1.5 ``SSv2._sample_clip_frames`` (data/ssv2.py), test mode
    (``rand_sample=False``, as PySlowFast's ``Ptvssv2`` passes it outside training): ``t``
    segments of (n - 1) / t frames, from each the middle one, (start + end) // 2 with the ends
    rounded half to even (``np.round``). Fewer frames than segments repeat frames; one frame is
    every segment's."""
    size = float(n - 1) / t
    ends = [int(np.round(size * i)) for i in range(t + 1)]
    return [(ends[i] + ends[i + 1]) // 2 for i in range(t)]


def extracted_frames(video: DecodedVideo, rate: float) -> list[int]:
    """The frames ``ffmpeg -i VIDEO -r RATE out_%06d.jpg`` writes, as indices into
    ``video.frames``: PySlowFast's SSv2 models read frames extracted at 30 fps (its DATASET.md,
    "Something-Something V2": ffmpeg 4.1.3, ``-r 30 -q:v 1``), not the 12 fps WebM.

    Restated from ffmpeg 4.1's fftools/ffmpeg.c ``do_video_out`` under ``VSYNC_CFR`` (the
    image2 muxer's default): each frame, at ``sync_ipts`` = its time x RATE output ticks, with
    ``duration`` = its own duration in ticks rounded (``lrintf``), is written ``nb_frames`` =
    lrintf(delta) times when delta = sync_ipts - next output + duration > 1.1 (once when within
    1.1, never below -1.1), the first lrintf(delta0 - 0.6) of them being the previous frame
    when delta0 = sync_ipts - next output > 1.1. ``lrintf`` rounds half to even, as Python's
    ``round``. Not run against ffmpeg here (no ffmpeg on the test machines)."""
    first = video.pts[0]
    ticks = [float((p - first) * video.time_base) * rate for p in video.pts]
    if video.average_fps:
        own = rate / float(video.average_fps)
    elif len(ticks) > 1:
        own = ticks[-1] / (len(ticks) - 1)
    else:
        own = 1.0
    out: list[int] = []
    for j, sync_ipts in enumerate(ticks):
        duration = round(own) if round(own) > 0 else min(own, 1.0)
        delta0 = sync_ipts - len(out)
        delta = delta0 + duration
        if delta0 < 0 < delta:  # "Clipping frame in rate conversion"
            duration += delta0
            delta0 = 0.0
        copies, previous = 1, 0
        if delta < -1.1:
            copies = 0
        elif delta > 1.1:
            copies = round(delta)
            if delta0 > 1.1:
                previous = round(delta0 - 0.6)
        previous = min(previous, copies) if j else 0
        out += [j - 1] * previous + [j] * (copies - previous)
    return out


def stops_early(timing: str) -> bool:
    """Whether the framework's per-clip decode stops at the first frame past the clip (both
    releases do; main is this harness's old default, which kept every frame in the window)."""
    return timing != "pytorchvideo_main"


def views(clips: torch.Tensor, spec, crops: int, fault: str | None = None,
          memory_format: torch.memory_format = torch.contiguous_format,
          spatial: str | None = None) -> list[torch.Tensor]:
    """``uniform_crop``: short-side scale, ``UniformCropVideo`` crops (views.py)."""
    return uniform_crop_views(clips, spec, crops, fault, memory_format)


def setting_problems(protocol, crops: int, model_input) -> list[tuple[str, str]]:
    """(key, message) for settings this framework's protocol cannot run: none."""
    return []


def apply_head(module: torch.nn.Module, head: str) -> bool:
    """Make ``module``'s head do what the protocol's ``head`` says; True when it now returns
    probabilities where it returned logits.

    ``softmax_per_location`` is PySlowFast's PTV models at test time (``post_act`` then
    ``mean([2, 3, 4])``): a hub ResNet-style head without an activation gets a softmax over the
    classes before its output pool, so the pool averages probabilities. Heads that already end
    in a softmax (X3D, R(2+1)D) do this already; a transformer head has one location, where both
    orders agree.
    """
    if head == "pooled_logits":
        return False
    from pytorchvideo.models.head import ResNetBasicHead

    changed = False
    for m in module.modules():
        if isinstance(m, ResNetBasicHead) and m.activation is None and m.output_pool is not None:
            m.activation = torch.nn.Softmax(dim=1)
            changed = True
    return changed


def reference_views(path, spec, clips: int, crops: int):
    """pytorchvideo 0.1.5's own pipeline, per view (reference.py: imported here, on first use,
    so that loader workers and a run without the bench do not load its dataset code)."""
    from benchmark.frameworks.pytorchvideo.reference import reference_views as views_of

    return views_of(path, spec, clips, crops)


class PytorchvideoAdapter(Adapter):
    """pytorchvideo's adapter (frameworks/api.py types each member): the functions above."""

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

    def rewrites(self):
        """All three: ``bn`` and ``relu`` over its blocks (fuse.py), the generic ``stem``."""
        from benchmark.frameworks.pytorchvideo.fuse import fold_batch_norms, fuse_relus

        return {"bn": fold_batch_norms, "stem": pad_stem_channels, "relu": fuse_relus}

    def reference_problem(self, protocol) -> str | None:
        if protocol.name != "pytorchvideo":
            return ("protocol: the benchmark's reference is pytorchvideo 0.1.5's own pipeline, "
                    f"so it needs protocol=pytorchvideo, got {protocol.name}")
        return None

    def reference_views(self, path, spec, clips, crops, *, model_cfg, protocol):
        return reference_views(path, spec, clips, crops)
