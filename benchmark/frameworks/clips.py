"""Protocols: the exact way one reference framework tests a video model, so that a measured
number can stand beside that framework's published one.

The counts of views (``views.clips`` x ``views.crops``) do not fix a number: the same model on
the same videos scores differently when clips start elsewhere, a clip gets one frame more, or the
head's locations are averaged before instead of after the softmax. A protocol (``conf/protocol/``)
names those choices:

- ``framework``: the adapter (benchmark/frameworks/) whose timings and spatial steps these are;
- ``clips``: where clip i starts and which decoded frames belong to it, as one framework's
  sampler and ``get_clip`` compute them (its adapter's ``TIMINGS``; resolved once to a
  ``Timing``, ``frameworks.timing``);
- ``head`` (transformers: ``model``, its own pooled head): ``pooled_logits`` (the hub model as it is: logits averaged over the head's output
  locations, one softmax) or ``softmax_per_location`` (PySlowFast's PTV models at test time:
  a softmax at each location, then the mean);
- ``combine``: how the framework's own test combines a video's views: ``softmax_mean`` or
  ``softmax_sum`` (PySlowFast's ``DATA.ENSEMBLE_METHOD: sum`` on softmax scores; the two rank the
  classes identically, so the harness computes and reports the mean), or ``logit_mean`` (the
  mean of the views' logits, also their sum: TimeSformer's TestMeter sums its head's raw logits,
  ViViT's test step averages them; the run stores the softmax of the mean logits);
- ``precision`` (optional): the precision the authors tested in (VideoMAE's fp16 autocast); a
  run in another precision says so in its log;
- ``spatial``: how a clip becomes views (its adapter's ``SPATIALS``): ``uniform_crop``
  (pytorchvideo: short-side scale, ``UniformCropVideo`` crops, views.py) or ``torchvision``
  (``weights.transforms()``: a fixed or short-side resize of the uint8 frames, antialias off, one
  centre crop).

Each preset is proved equal to its framework's own code in tests/test_protocols.py, never to a
restatement of it here: pytorchvideo 0.1.5 (installed) and 0.1.0 (extracted into a test-only
folder by ``make install``). The frames come from one decode per video (data/decode.py); a framework
that decodes again for every clip is reproduced from the order the decoder gave the frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from benchmark.data.decode import DecodedVideo

HEADS = ("pooled_logits", "softmax_per_location")
COMBINES = ("softmax_mean", "softmax_sum", "logit_mean")
PROTOCOL_PRECISIONS = ("fp32", "bf16", "fp16")  # benchmark.run.device.PRECISIONS' names


@dataclass(frozen=True)
class Protocol:
    name: str
    clips: str
    head: str
    combine: str
    spatial: str = "uniform_crop"
    framework: str = "pytorchvideo"
    precision: str | None = None  # the authors' test precision, where the protocol states it


@dataclass(frozen=True)
class Window:
    """A clip's pts window, as the framework's ``get_clip`` filters frames."""

    lo: int
    hi: int
    inclusive: bool  # the end pts itself belongs to the clip (pytorchvideo 0.1.0)

    def inside(self, p: int) -> bool:
        return self.lo <= p and (p <= self.hi if self.inclusive else p < self.hi)

    def past(self, p: int) -> bool:
        """A frame after the clip: where the framework's per-clip decode stops."""
        return p > self.hi if self.inclusive else p >= self.hi


def seconds_window(time_base: Fraction, start_pts: int, start: Fraction, end: Fraction) -> Window:
    """pytorchvideo 0.1.5's ``get_clip(start, end)``: pts in [start, end), both rounded up."""
    return Window(math.ceil(start / time_base) + start_pts, math.ceil(end / time_base) + start_pts,
                  False)


@dataclass(frozen=True)
class Timing:
    """A protocol's ``clips`` resolved once, when the run composes the protocol, to its
    adapter's steps (``frameworks.timing(name)``): the shared code calls these and never asks
    which framework owns a name.

    - ``clip_windows(video, clip_duration, clips, frame_rate=None, clip_len=None)``: each clip's
      frames (indices into ``video.frames``), before temporal subsampling; ``frame_rate`` and
      ``clip_len`` are the model's, for timings that count frames (torchvision's);
    - ``pts_windows(time_base, start_pts, end_pts, clip_duration, clips)``: each clip's pts
      window (what a streaming decode needs), or None where the timing counts frames;
    - ``cut_clips(video, spec, clips, fault)``: where the adapter cuts (and resizes) the clips
      itself (mmaction2), else None.
    """

    name: str
    clip_windows: Callable[..., list[list[int]]]
    pts_windows: Callable[..., "list[Window] | None"]
    cut_clips: Callable | None = None


class TooShort(ValueError):
    """Fewer frames than one clip: torchvision's VideoClips gives such a video no clip (and its
    reference skips it); here it is a recorded failure with this reason."""


def frames_between(video: DecodedVideo, start: Fraction, end: Fraction) -> list[int]:
    """pytorchvideo 0.1.5's ``get_clip(start, end)`` on the decoded video (toy training)."""
    return frames_in(video, seconds_window(video.time_base, video.start_pts, start, end), False)


def frames_in(video: DecodedVideo, window: Window, stops_early: bool) -> list[int]:
    """The frames inside ``window``, in presentation order.

    When the stream header has a duration, pytorchvideo decodes each clip anew: it seeks to a
    keyframe before the window and keeps decoded frames until the first one past it. On a
    stream whose decoded pts come out of order (packed B-frames in AVI) a frame of the window
    that the decoder gives after that one is left out. The decoder's order from the start of the
    file stands for its order after the seek (the frames before the keyframe lie before the
    window). Without a header duration pytorchvideo decodes the whole video once and filters.
    """
    if stops_early and video.header_duration:
        kept = set()
        for p in video.decoded_pts:
            if window.inside(p):
                kept.add(p)
            elif window.past(p):
                break
    else:
        kept = {p for p in video.pts if window.inside(p)}
    return [i for i, p in enumerate(video.pts) if p in kept]
