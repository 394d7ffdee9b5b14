"""Each protocol against its framework's OWN code, on generated and real videos.

- ``pytorchvideo``: the installed pytorchvideo 0.1.5 (benchmark/frameworks/pytorchvideo/reference.py: LabeledVideoDataset
  + ConstantClipsPerVideoSampler + the card's transforms + UniformCropVideo) and the hub model.
- ``zoo``: pytorchvideo 0.1.0's EncodedVideoDataset, sampler and transforms (tests/zoo_reference.py,
  run in a subprocess with the release that ``make install`` extracts into .venv/refs first on
  sys.path), and PySlowFast's PTV head at test time (``post_act``, then ``mean([2, 3, 4])``).
  PySlowFast cannot be installed (PyPI's "slowfast" 1.0 predates its PTV models), so its two
  lines are quoted in ``pyslowfast_ptv_probs`` with their source.

The views use the model card's clip duration (64/30 s; 8 frames at rate 8, so the float work is
affordable) at 64 px, so each window is the one the 8x8 models get; the windows' frame counts
are checked directly in ``test_the_protocols_pick_other_frames``. The generated videos get
10 clips x 3 crops, the real ones (10 s each, where the yardsticks' per-clip float work is the
cost) 10 clips x the centre crop.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmark.data.decode import decode_video
from benchmark.data.decoders import decode
from benchmark.run.batches import predict
from benchmark.run.models import build_model
from benchmark.frameworks import timing as resolved
from benchmark.run.protocol_compare import protocol_table
from benchmark.frameworks.pytorchvideo.reference import reference_views
from benchmark.frameworks.views import InputSpec, make_views, pack_pathways, sample_clips

from conftest import REPO, compose_eval, real_video_missing
from conftest import REAL_NAMES, SHARED_VIDEOS as REAL  # ../shared/videos

SPEC = InputSpec(num_frames=8, sampling_rate=8, frames_per_second=30, side_size=64,
                 crop_size=64, mean=(0.45,) * 3, std=(0.225,) * 3, alpha=4)
GENERATED = ["landscape", "portrait", "short", "late_start"]


def crops_for(name: str) -> int:
    return 3 if name in GENERATED else 1
ZOO_RELEASE = REPO / ".venv" / "refs" / "pytorchvideo-0.1.0"
# protocol_videos and zoo_views live for the session: pytorchvideo 0.1.0's views take a minute,
# and a module fixture is made again whenever an xdist worker comes back to the module.


def write_late_start(path: Path) -> Path:
    """A 3 s video whose first frame is at 1.5 s (start pts != 0, as cut Kinetics files can be)."""
    frames = np.random.default_rng(5).integers(0, 255, (90, 48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        stream.time_base = Fraction(1, 30)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = 45 + i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def protocol_videos(videos, tmp_path_factory) -> dict[str, Path]:
    """The generated shapes, a late-start file, and ../shared/videos when present."""
    found = dict(videos, late_start=write_late_start(tmp_path_factory.mktemp("late") / "late.mp4"))
    found.update({name: REAL / name for name in REAL_NAMES if (REAL / name).is_file()})
    return found


def video(protocol_videos, name: str) -> Path:
    if name not in protocol_videos:
        pytest.skip(real_video_missing(name))
    return protocol_videos[name]


@pytest.fixture(scope="session")
def zoo_views(protocol_videos, tmp_path_factory) -> dict[str, list[torch.Tensor]]:
    """pytorchvideo 0.1.0's own views of every test video (one subprocess for all)."""
    if not (ZOO_RELEASE / "pytorchvideo" / "__init__.py").is_file():
        pytest.skip(f"pytorchvideo 0.1.0 is not extracted at {ZOO_RELEASE} (make install "
                    "downloads it; it needs the package index)")
    views = {}
    for crops in (3, 1):
        paths = [str(p) for name, p in protocol_videos.items() if crops_for(name) == crops]
        out = tmp_path_factory.mktemp("zoo") / "views.pt"
        subprocess.run([sys.executable, str(REPO / "tests" / "zoo_reference.py"),
                        str(ZOO_RELEASE), str(out), json.dumps(dataclasses.asdict(SPEC)), "10",
                        str(crops), *paths], check=True, timeout=600)
        views.update(torch.load(out))
    return {name: views[str(path)] for name, path in protocol_videos.items()}


@pytest.fixture(scope="module")
def pytorchvideo_views(protocol_videos) -> dict[str, list[list[torch.Tensor]]]:
    """pytorchvideo 0.1.5's own views (benchmark/frameworks/pytorchvideo/reference.py), made once per video."""
    cache = {}

    def views(name):
        if name not in cache:
            cache[name] = list(reference_views(video(protocol_videos, name), SPEC, 10,
                                               crops_for(name)))
        return cache[name]
    return views


def harness_views(path: Path, timing: str, crops: int, decoder: str = "pyav") -> torch.Tensor:
    """The harness's fast-pathway views (10 x crops, C, T, H, W): one decode, then the
    protocol's clips."""
    return make_views(sample_clips(decode(path, decoder), SPEC, 10, resolved(timing)), SPEC,
                      crops)[1]


@pytest.mark.parametrize("name", GENERATED + REAL_NAMES)
def test_pytorchvideo_protocol_equals_pytorchvideo_0_1_5(protocol_videos, pytorchvideo_views,
                                                         name):
    ours = harness_views(video(protocol_videos, name), "pytorchvideo_0.1.5", crops_for(name))
    theirs = torch.cat([view[1] for view in pytorchvideo_views(name)])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", GENERATED + REAL_NAMES)
def test_zoo_protocol_equals_pytorchvideo_0_1_0(protocol_videos, zoo_views, name):
    path = video(protocol_videos, name)
    ours = harness_views(path, "pytorchvideo_0.1.0", crops_for(name))
    torch.testing.assert_close(ours, torch.stack(zoo_views[name]), atol=1e-5, rtol=0)


# Under the other decoders, the proofs on a cheap subset: a generated shape, the late start, the
# short real file and the 29.97 fps one (tests/test_decoders.py holds every real video's frames and
# timestamps equal to PyAV's, and records where the packed-B-frame AVI differs).
DECODER_SUBSET = ["portrait", "late_start", "short_1s.mp4", "ntsc_29.97fps.mp4"]


@pytest.mark.parametrize("decoder", ["torchcodec", "decord"])
@pytest.mark.parametrize("name", DECODER_SUBSET)
def test_pytorchvideo_protocol_holds_under_each_decoder(protocol_videos, pytorchvideo_views,
                                                        name, decoder):
    ours = harness_views(video(protocol_videos, name), "pytorchvideo_0.1.5", crops_for(name),
                         decoder)
    theirs = torch.cat([view[1] for view in pytorchvideo_views(name)])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("decoder", ["torchcodec", "decord"])
@pytest.mark.parametrize("name", DECODER_SUBSET)
def test_zoo_protocol_holds_under_each_decoder(protocol_videos, zoo_views, name, decoder):
    ours = harness_views(video(protocol_videos, name), "pytorchvideo_0.1.0", crops_for(name),
                         decoder)
    torch.testing.assert_close(ours, torch.stack(zoo_views[name]), atol=1e-5, rtol=0)


def test_the_protocols_pick_other_frames(protocol_videos):
    """What the tests above tell apart, on a 10 s 30 fps file: 0.1.0's inclusive end gives
    clips of 65 frames (64 where truncating the start skips one), 0.1.5's 64; the packed-B-frame AVI loses a frame in 0.1.5's clips 2, 5, 8;
    main's N - 1 spacing puts the last clip at the end."""
    k400 = decode_video(video(protocol_videos, "k400_30fps.mp4"))
    clip = SPEC.clip_duration
    assert {len(w) for w in resolved("pytorchvideo_0.1.0").clip_windows(k400, clip, 10)} == {64, 65}
    assert len(resolved("pytorchvideo_0.1.0").clip_windows(k400, clip, 10)[0]) == 65
    assert {len(w) for w in resolved("pytorchvideo_0.1.5").clip_windows(k400, clip, 10)} == {64}
    assert resolved("pytorchvideo_main").clip_windows(k400, clip, 10)[-1][-1] == len(k400.pts) - 1
    assert resolved("pytorchvideo_0.1.5").clip_windows(k400, clip, 10)[-1][-1] < len(k400.pts) - 20
    avi = decode_video(video(protocol_videos, "xvid_packed_bframes.avi"))
    sizes = [len(w) for w in resolved("pytorchvideo_0.1.5").clip_windows(avi, clip, 10)]
    assert [i for i, n in enumerate(sizes) if n == 52] == [2, 5, 8] and set(sizes) == {52, 53}


# ---- the model's side: the head's locations and the views' combination ---------------------

@pytest.fixture(scope="module")
def probe_cfg(tmp_path_factory):
    """The tiny SlowFast at 64 px: its head sees 1 x 2 x 2 locations, as the 8x8 models' head
    does at 256 px. Random weights, saved as a checkpoint; batch-norm statistics and a head
    scaled up so that its outputs are far from uniform (as a trained model's are)."""
    cfg = compose_eval("model=slowfast_tiny", "model.num_classes=5",
                       *(f"model.input.{k}={getattr(SPEC, k)}" for k in
                         ("num_frames", "sampling_rate", "side_size", "crop_size")))
    torch.manual_seed(0)
    module = instantiate(cfg.model.builder)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2)
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(30)
    path = tmp_path_factory.mktemp("probe") / "probe.pyth"
    torch.save({"model_state": module.state_dict()}, path)
    cfg.model.weights = str(path)
    return cfg


def pyslowfast_ptv_probs(cfg, views: list[list[torch.Tensor]]) -> torch.Tensor:
    """PySlowFast's PTVSlowFast in eval (slowfast/models/ptv_model_builder.py): the model built
    with ``head_output_with_global_average=False``, then ``x = self.post_act(x)`` (Softmax(dim=1))
    and ``x = x.mean([2, 3, 4])``; the views' softmax summed (ENSEMBLE_METHOD sum), / views."""
    module = instantiate(cfg.model.builder, head_output_with_global_average=False).eval()
    state = torch.load(cfg.model.weights, weights_only=True)["model_state"]
    module.load_state_dict(state)
    with torch.inference_mode():
        probs = [torch.softmax(module(list(view)), dim=1).mean([2, 3, 4])[0] for view in views]
    return torch.stack(probs).sum(0) / len(probs)


def harness_probs(cfg, path: Path, protocol: str, crops: int) -> torch.Tensor:
    """A video's probabilities through evaluate's ``predict`` under ``protocol``, over the first
    4 of its 10 clips (the clips' frames are the view tests' business; here the head and the
    views' combination are)."""
    preset = compose_eval(f"protocol={protocol}").protocol  # conf/protocol/<protocol>.yaml
    model = build_model(cfg.model, preset.head)
    clips = sample_clips(decode_video(path), SPEC, 10, resolved(preset.clips))[:4]
    ((_, probs),) = predict(model.module, [(0, clips)], SPEC, crops, 3, torch.device("cpu"),
                            "fp32")
    return probs


@pytest.mark.parametrize("name", ["portrait", "xvid_packed_bframes.avi"])
def test_zoo_probabilities_equal_pyslowfast_on_pytorchvideo_0_1_0(protocol_videos, zoo_views,
                                                                   probe_cfg, name):
    path = video(protocol_videos, name)
    crops = crops_for(name)
    views = [pack_pathways(v.unsqueeze(0), SPEC.alpha) for v in zoo_views[name][:4 * crops]]
    expected = pyslowfast_ptv_probs(probe_cfg, views)
    ours = harness_probs(probe_cfg, path, "zoo", crops)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert ours.topk(5).indices.tolist() == expected.topk(5).indices.tolist()


@pytest.mark.parametrize("name", ["portrait", "xvid_packed_bframes.avi"])
def test_pytorchvideo_probabilities_equal_the_hub_model_on_0_1_5(protocol_videos,
                                                                 pytorchvideo_views, probe_cfg,
                                                                 name):
    path, crops = video(protocol_videos, name), crops_for(name)
    hub = build_model(probe_cfg.model).module  # the hub head as it is: pooled logits
    with torch.inference_mode():
        expected = torch.stack([hub(list(view)).softmax(-1)[0]
                                for view in pytorchvideo_views(name)[:4 * crops]]).mean(0)
    ours = harness_probs(probe_cfg, path, "pytorchvideo", crops)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert ours.topk(5).indices.tolist() == expected.topk(5).indices.tolist()


def test_softmax_per_location_differs_from_pooled_logits(protocol_videos, probe_cfg):
    """The head choice is visible: same views, other probabilities."""
    path = protocol_videos["landscape"]
    clips = sample_clips(decode_video(path), SPEC, 2, resolved("pytorchvideo_0.1.5"))
    outputs = []
    for head in ("pooled_logits", "softmax_per_location"):
        model = build_model(probe_cfg.model, head)
        ((_, probs),) = predict(model.module, [(0, clips)], SPEC, 3, 3, torch.device("cpu"), "fp32")
        outputs.append(probs)
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3  # float rounding is ~1e-7



def test_make_protocols_tables_one_model_under_each_protocol(kinetics_run, tmp_path):
    """``python -m benchmark.protocols``: a run per protocol through the real entry point, one
    table; the first protocol is the yardstick of the others' changes."""
    _, overrides, _ = kinetics_run
    keep = [o for o in overrides if not o.startswith(("protocol=", "results_dir=",
                                                      "hydra.run.dir=", "views.clips="))]
    out = tmp_path / "protocols"
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.protocols", *keep, "views.clips=2", "data.limit=2",
         "--protocols", "zoo,pytorchvideo_main", "--out", str(out), "--run-dir",
         str(tmp_path / "runs")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(out.with_suffix(".csv"))
    assert table.protocol.tolist() == ["zoo", "pytorchvideo_main"]
    assert table["head"].tolist() == ["softmax_per_location", "pooled_logits"]
    assert table.videos.tolist() == [2, 2] and table.evaluated.tolist() == ["2/2", "2/2"]
    assert table.top1_changed_vs_zoo[0] == 0 and table.max_prob_diff_vs_zoo[0] == 0
    assert table.max_prob_diff_vs_zoo[1] > 0  # other clips and head: other probabilities
    assert "slowfast_tiny" in out.with_suffix(".md").read_text()


def finished_run(folder, protocol: str, clips: str, predicted: dict, listed: int):
    """A finished run's files as make protocols reads them: predictions (video -> (label,
    top-1)), metrics.json and the resolved protocol in .hydra/config.yaml."""
    (folder / ".hydra").mkdir(parents=True)
    rows = []
    for video, (label, top) in predicted.items():
        probs = [0.1, 0.1, 0.1]
        probs[top] = 0.8
        rows.append({"video_id": video, "label": label, "probs": probs})
    pd.DataFrame(rows).to_parquet(folder / "predictions.parquet", index=False)
    (folder / "metrics.json").write_text(json.dumps(
        {"videos_evaluated": len(predicted), "videos_listed": listed}))
    OmegaConf.save({"protocol": {"name": protocol, "clips": clips, "head": "pooled_logits",
                                 "combine": "softmax_mean", "spatial": "uniform_crop"}},
                   folder / ".hydra" / "config.yaml")
    return folder


def test_make_protocols_compares_every_protocol_over_the_same_videos(tmp_path):
    """A video one protocol's run failed on (v3) counts in no row: the zoo's top-1 is over
    v0..v2 like the other's and like the change columns (over each run's own videos it would
    read 75.0 beside 66.67, a gap one failure makes, not the protocol)."""
    zoo = finished_run(tmp_path / "zoo", "zoo", "pytorchvideo_0.1.0",
                       {"v0": (0, 0), "v1": (1, 1), "v2": (2, 2), "v3": (0, 1)}, listed=4)
    other = finished_run(tmp_path / "pv", "pytorchvideo", "pytorchvideo_0.1.5",
                         {"v0": (0, 0), "v1": (1, 1), "v2": (2, 0)}, listed=4)
    table, _ = protocol_table({"zoo": zoo, "pytorchvideo": other}, "zoo")
    assert table.protocol.tolist() == ["zoo", "pytorchvideo"]
    assert table.videos.tolist() == [3, 3] and table.evaluated.tolist() == ["4/4", "3/4"]
    assert table.top1.tolist() == [100.0, 66.67] and table.top5.tolist() == [100.0, 100.0]
    assert table.top1_changed_vs_zoo.tolist() == [0.0, 33.33]
    assert table.max_prob_diff_vs_zoo.tolist() == [0.0, 0.7]


# ---- pytorchvideo_ssv2: PySlowFast's Ptvssv2 test (the zoo's SSv2 models) ----------------------

@pytest.mark.parametrize("t", [8, 32])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 31, 32, 33, 61, 63, 64, 65, 121])
def test_ssv2_segments_equal_pytorchvideo_ssv2_sampler(n, t):
    """pytorchvideo 0.1.5's own SSv2._sample_clip_frames (test mode): fewer frames than
    segments, one frame, odd counts and rounding ties (np.round: half to even) included."""
    from benchmark.frameworks.pytorchvideo import segment_frames
    from pytorchvideo.data.ssv2 import SSv2

    assert segment_frames(n, t) == SSv2._sample_clip_frames(list(range(n)), t, False)


def test_ssv2_frames_at_30_fps_follow_ffmpeg_constant_rate_output(tmp_path):
    """12 fps WebM frames (pts in ms: 0, 83, 167, 250, ...) as ffmpeg 4.1 -r 30 writes them,
    traced by hand through do_video_out's VSYNC_CFR arithmetic (duration lrintf(2.5) = 2 ticks;
    frame 2 at 5.01 ticks: delta 3.01, three copies; frame 3 at 7.5: delta 2.5, two, half to
    even): 2, 2, 3, 2, 3, 3, 2, 2, 3 ...; a one-frame video gives its frame twice (delta 2)."""
    from benchmark.frameworks.pytorchvideo import extracted_frames

    video = decode_video(make_video(tmp_path / "v.webm", 12, 2.0, codec="libvpx-vp9"))
    assert len(video.frames) == 24
    got = extracted_frames(video, 30)
    assert got[:22] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 7, 7, 8, 8, 8]
    assert len(got) == 60 and got[-1] == 23  # 24 frames at 2.5 ticks each
    one = decode_video(make_video(tmp_path / "one.webm", 12, 1 / 12, codec="libvpx-vp9"))
    assert extracted_frames(one, 30) == [0, 0]


def make_video(path: Path, fps: int, seconds: float, **encode) -> Path:
    from benchmark.data.synthetic import ActionSetSpec, render_action, write_video

    spec = ActionSetSpec(seconds=seconds, width=48, height=40, fps=fps)
    options = {"deadline": "realtime", "cpu-used": "8"} if "vp9" in encode.get("codec", "") else {}
    return write_video(path, render_action("moving left", spec, np.random.default_rng(0)), fps,
                       options=options, **encode)


def test_ssv2_protocol_views_equal_ptvssv2_on_pytorchvideo_ssv2(tmp_path):
    """The harness's pytorchvideo_ssv2 views (one decode, the 30 fps frame list, segments)
    equal PySlowFast's Ptvssv2 test transform run on pytorchvideo's own SSv2 dataset over those
    frames written as images (its frame-list CSV, labels and validation JSON): the frames it
    picks, the crops, and the channel order with a per-channel mean and std: rgb2bgr, then
    PackPathway's pack_pathway_output (slowfast/datasets/utils.py; PySlowFast is not on PyPI in
    this form, so its two lines are quoted) reverses them back under DATA.REVERSE_INPUT_CHANNEL,
    True in the SSv2 configs: RGB."""
    import cv2
    from benchmark.frameworks.pytorchvideo import extracted_frames
    from pytorchvideo.data import SSv2, make_clip_sampler
    from pytorchvideo.transforms import ApplyTransformToKey, ShortSideScale, UniformCropVideo
    from torchvision.transforms import Compose, Lambda
    from torchvision.transforms._transforms_video import NormalizeVideo

    spec = InputSpec(num_frames=16, sampling_rate=2, frames_per_second=30, side_size=32,
                     crop_size=32, mean=(0.40, 0.45, 0.50), std=(0.20, 0.225, 0.25), alpha=4)
    path = make_video(tmp_path / "74225.webm", 12, 2.2, codec="libvpx-vp9")
    decoded = decode_video(path)
    frames = tmp_path / "frames" / "74225"
    frames.mkdir(parents=True)
    lines = ["original_vido_id video_id frame_id path labels"]
    for k, index in enumerate(extracted_frames(decoded, 30)):
        rgb = decoded.rgb([index])[0].numpy()
        cv2.imwrite(str(frames / f"74225_{k + 1:06d}.png"), rgb[..., ::-1])
        lines.append(f"74225 0 {k} 74225/74225_{k + 1:06d}.png \"\"")
    (tmp_path / "val.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.json").write_text(json.dumps({"Approaching something with your camera": "0"}))
    (tmp_path / "validation.json").write_text(json.dumps([{
        "id": "74225", "template": "Approaching [something] with your camera"}]))
    transform = Compose([  # ptv_datasets.py Ptvssv2, mode test
        ApplyTransformToKey("video", Compose([
            Lambda(lambda x: x / 255.0), NormalizeVideo(list(spec.mean), list(spec.std)),
            ShortSideScale(size=spec.crop_size)])),
        UniformCropVideo(size=spec.crop_size),
        ApplyTransformToKey("video", Compose([
            Lambda(lambda x: x[[2, 1, 0], ...]),  # rgb2bgr
            # PackPathway -> pack_pathway_output: "if cfg.DATA.REVERSE_INPUT_CHANNEL:
            # frames = frames[[2, 1, 0], :, :, :]" (then the pathways, as pack_pathways)
            Lambda(lambda x: x[[2, 1, 0], :, :, :])]))])
    dataset = SSv2(str(tmp_path / "labels.json"), str(tmp_path / "validation.json"),
                   str(tmp_path / "val.csv"), make_clip_sampler("constant_clips_per_video", 1, 1, 3),
                   video_sampler=torch.utils.data.SequentialSampler, transform=transform,
                   video_path_prefix=str(tmp_path / "frames"), frames_per_clip=spec.num_frames)
    theirs = torch.stack([sample["video"] for _, sample in zip(range(3), dataset)])
    clips = sample_clips(decoded, spec, 1, resolved("pytorchvideo_ssv2"))
    ours = make_views(clips, spec, 3)
    torch.testing.assert_close(ours[1], theirs, atol=1e-5, rtol=0)
    assert ours[0].shape[2] == spec.num_frames // spec.alpha  # PackPathway's slow pathway
    # BGR views (one reversal only) would not be what the model sees.
    assert not torch.allclose(make_views(clips.flip(1), spec, 3)[1], theirs, atol=1e-3)


def test_the_ssv2_models_run_under_their_protocol():
    cfg = compose_eval("model=slowfast_r50_ssv2", "data=ssv2")
    assert (cfg.protocol.name, cfg.model.published.protocol) == ("pytorchvideo_ssv2",) * 2
    assert compose_eval("model=slow_r50_ssv2").protocol.name == "pytorchvideo_ssv2"
    assert compose_eval("model=slowfast_r50").protocol.name == "zoo"  # K400 unchanged
