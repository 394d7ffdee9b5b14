"""Protocols: the exact way one reference framework tests a video model, so that a measured
number can stand beside that framework's published one.

The counts of views (``views.clips`` x ``views.crops``) do not fix a number: the same model on
the same videos scores differently when clips start elsewhere, a clip gets one frame more, or the
head's locations are averaged before instead of after the softmax. A protocol (``conf/protocol/``)
names those choices:

- ``clips``: where clip i starts and which decoded frames belong to it, as one framework's
  sampler and ``get_clip`` compute them (``CLIP_TIMINGS``);
- ``head``: ``pooled_logits`` (the hub model as it is: logits averaged over the head's output
  locations, one softmax) or ``softmax_per_location`` (PySlowFast's PTV models at test time:
  a softmax at each location, then the mean);
- ``combine``: how a video's views are combined: ``softmax_mean``, or ``softmax_sum`` (PySlowFast's
  ``DATA.ENSEMBLE_METHOD: sum``), which ranks the classes identically and is reported as the mean;
- ``spatial``: how a clip becomes views (views.py): ``uniform_crop`` (pytorchvideo: short-side
  scale, ``UniformCropVideo`` crops) or ``torchvision`` (``weights.transforms()``: a fixed or
  short-side resize of the uint8 frames, antialias off, one centre crop).

Each preset is proved equal to its framework's own code in tests/test_protocols.py, never to a
restatement of it here: pytorchvideo 0.1.5 (installed) and 0.1.0 (extracted into a test-only
folder by ``make install``). The frames come from one decode per video (decode.py); a framework
that decodes again for every clip is reproduced from the order the decoder gave the frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from benchmark.data.decode import DecodedVideo

CLIP_TIMINGS = ("pytorchvideo_0.1.0", "pytorchvideo_0.1.5", "pytorchvideo_main", "torchvision")
HEADS = ("pooled_logits", "softmax_per_location")
COMBINES = ("softmax_mean", "softmax_sum")
SPATIALS = ("uniform_crop", "torchvision")


@dataclass(frozen=True)
class Protocol:
    name: str
    clips: str
    head: str
    combine: str
    spatial: str = "uniform_crop"


def protocol_from_config(cfg) -> Protocol:
    """The ``protocol`` config group as a value; an unknown choice names its key."""
    protocol = Protocol(str(cfg.name), str(cfg.clips), str(cfg.head), str(cfg.combine),
                        str(cfg.get("spatial", "uniform_crop")))
    for key, value, allowed in (("clips", protocol.clips, CLIP_TIMINGS),
                                ("head", protocol.head, HEADS),
                                ("combine", protocol.combine, COMBINES),
                                ("spatial", protocol.spatial, SPATIALS)):
        if value not in allowed:
            raise ValueError(f"protocol.{key}: must be one of {', '.join(allowed)}, got {value}")
    return protocol


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


def pts_windows(time_base: Fraction, start_pts: int, end_pts: int, clip_duration: Fraction,
                clips: int, timing: str) -> list[Window]:
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
    if timing not in ("pytorchvideo_0.1.5", "pytorchvideo_main"):  # torchvision: frame counts
        raise ValueError(f"protocol.clips: no pts windows for {timing}")
    # 0.1.5's sampler: Fractions, clip i at i * max(D - d, 0) / N, D = int(end - start) * tb;
    # the unreleased main (commit 9368f30) divides by N - 1 (the last clip ends at the end).
    duration = int(end_pts - start_pts) * time_base
    intervals = clips if timing == "pytorchvideo_0.1.5" else max(clips - 1, 1)
    step = Fraction(max(duration - clip_duration, 0)) / intervals
    return [seconds_window(time_base, start_pts, step * i, step * i + clip_duration)
            for i in range(clips)]


def seconds_window(time_base: Fraction, start_pts: int, start: Fraction, end: Fraction) -> Window:
    """pytorchvideo 0.1.5's ``get_clip(start, end)``: pts in [start, end), both rounded up."""
    return Window(math.ceil(start / time_base) + start_pts, math.ceil(end / time_base) + start_pts,
                  False)


def stops_early(timing: str) -> bool:
    """Whether the framework's per-clip decode stops at the first frame past the clip (both
    releases do; main is this harness's old default, which kept every frame in the window)."""
    return timing != "pytorchvideo_main"


def clip_windows(video: DecodedVideo, clip_duration: Fraction, clips: int,
                 timing: str, frame_rate: float | None = None,
                 clip_len: int | None = None) -> list[list[int]]:
    """For each of ``clips`` clips, the indices (into ``video.frames``) of the frames that the
    framework named by ``timing`` gives that clip, before temporal subsampling.
    ``frame_rate``/``clip_len``: the ``torchvision`` timing's (the model's), see
    ``torchvision_windows``."""
    if timing == "torchvision":
        if frame_rate is None or clip_len is None:
            raise ValueError("protocol.clips=torchvision needs the model's frame_rate and clip_len")
        return torchvision_windows(video, frame_rate, clip_len, clips)
    windows = pts_windows(video.time_base, video.start_pts, video.end_pts, clip_duration, clips,
                          timing)
    return [frames_in(video, w, stops_early(timing)) for w in windows]


class TooShort(ValueError):
    """Fewer frames than one clip: torchvision's VideoClips gives such a video no clip (and its
    reference skips it); here it is a recorded failure with this reason."""


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


def compare(overrides: list[str], run_root, protocols: list[str], default: str = "zoo"):
    """The same model and data under each protocol, through the real entry point: one row per
    protocol with its top-1/top-5, and against ``default``'s run the share of videos whose top-1
    changes and the largest probability difference."""
    import json
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from omegaconf import OmegaConf

    from benchmark.run.regression import merge_overrides, run_eval

    rows, base = [], None
    for name in [default, *(p for p in protocols if p != default)]:
        run_dir = Path(run_root) / name
        result = run_eval(merge_overrides(overrides, [f"protocol={name}"]), run_dir)
        probs = pd.read_parquet(run_dir / "predictions.parquet").set_index("video_id").probs
        base = probs if base is None else base
        shared = probs.index.intersection(base.index)  # videos both runs evaluated
        ours, theirs = (np.stack(p[shared].map(np.asarray)) for p in (probs, base))
        # The protocol as the run had it (its resolved config), not as the preset reads now.
        ran = protocol_from_config(OmegaConf.load(run_dir / ".hydra" / "config.yaml").protocol)
        rows.append({
            "protocol": name, "clips": ran.clips, "head": ran.head, "combine": ran.combine,
            "videos": result["videos"],
            "top1": round(100 * result["top1"], 2), "top5": round(100 * result["top5"], 2),
            f"top1_changed_vs_{default}": round(100 * float(np.mean(
                ours.argmax(1) != theirs.argmax(1))), 2),
            f"max_prob_diff_vs_{default}": float(f"{np.abs(ours - theirs).max():.3g}"),
        })
    metrics = json.loads((Path(run_root) / default / "metrics.json").read_text())
    return pd.DataFrame(rows), metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmark.protocols [overrides]`` (``make protocols``): see ``compare``."""
    import argparse
    import sys
    from pathlib import Path

    from benchmark.run.models import CONF_DIR
    from benchmark.run.regression import TOY_OVERRIDES, CheckError, merge_overrides
    from benchmark.results.tables import write_table

    parser = argparse.ArgumentParser(prog="python -m benchmark.protocols",
                                     description=compare.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for benchmark.eval, on "
                        "top of the toy model on the toy set (e.g. model=slowfast_r50 "
                        "data=kinetics400 data.csv=... data.root=... device=cuda)")
    parser.add_argument("--out", type=Path, default=Path("results/protocols"),
                        help="the table's path without suffix (.csv and .md are written)")
    parser.add_argument("--run-dir", type=Path, default=Path("outputs/protocols"),
                        help="where each protocol's run goes (replaced each time)")
    # torchvision's protocol needs a torchvision model's input (resize_size): not a default.
    parser.add_argument("--protocols", default="zoo,pytorchvideo,pytorchvideo_main",
                        type=lambda names: [n for n in names.split(",") if n],
                        help="conf/protocol names, comma-separated; the first is the one the "
                        "others are compared with")
    args = parser.parse_args(argv)
    unknown = [n for n in args.protocols if not (CONF_DIR / "protocol" / f"{n}.yaml").is_file()]
    if unknown or not args.protocols:
        print(f"error: --protocols: no conf/protocol/{(unknown or [''])[0]}.yaml", file=sys.stderr)
        return 2
    try:
        table, metrics = compare(merge_overrides(TOY_OVERRIDES, args.overrides), args.run_dir,
                                 args.protocols, default=args.protocols[0])
    except CheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    v = metrics["versions"]
    note = (f"`make protocols` (python -m benchmark.protocols {' '.join(args.overrides)}): "
            f"{metrics['model']} ({metrics['weights']} weights) on {metrics['dataset']}, "
            f"{metrics['clips']}x{metrics['crops']} views, {metrics['device']} "
            f"{metrics['precision']}; torch {v['torch']}, pytorchvideo {v['pytorchvideo']}, "
            f"av {v['av']}; finished {metrics['finished']}. top1/top5 and the share of videos "
            f"whose top-1 changes against {args.protocols[0]} in %; max_prob_diff: the largest "
            f"difference of one class's averaged probability from {args.protocols[0]}'s, over "
            "the videos both evaluated.")
    write_table(args.out, table, note)
    print(table.to_markdown(index=False))
    print(f"table: {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
