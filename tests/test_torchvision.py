"""torchvision's video classifiers under the ``torchvision`` protocol, against torchvision's OWN
code: ``VideoClips.compute_clips_for_video`` + ``UniformClipSampler`` for the clip windows (on the
decoded video's pts and the stream's average rate, as torchvision read them), the weights'
``transforms()`` for the pixels (on the harness's decoded frames: torchvision no longer decodes
video), and the model itself on those views for the probabilities. The models' configs are held
to the installed weights enums. Big models are never run here (``make flops`` measures them).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.models
from torchvision.datasets.samplers import UniformClipSampler
from torchvision.datasets.video_utils import VideoClips

from benchmark.data.decode import decode_video
from benchmark.run.batches import predict
from benchmark.run.clip_loader import VideoClipsDataset
from benchmark.data.manifest import Video
from benchmark.run.models import build_model
from benchmark import frameworks
from benchmark.frameworks.clips import TooShort
from benchmark.data.synthetic import ActionSetSpec, render_action, write_video
from benchmark.frameworks.views import make_views, sample_clips

TIMING = frameworks.timing("torchvision")  # the protocol's clips, resolved as the run does

from conftest import REPO, compose_eval, real_video_missing
from conftest import REAL_NAMES, SHARED_VIDEOS as REAL  # ../shared/videos

TORCHVISION_MODELS = {  # config -> (builder, weights enum member)
    "r3d_18": ("r3d_18", "R3D_18_Weights.KINETICS400_V1"),
    "mc3_18": ("mc3_18", "MC3_18_Weights.KINETICS400_V1"),
    "r2plus1d_18": ("r2plus1d_18", "R2Plus1D_18_Weights.KINETICS400_V1"),
    "s3d": ("s3d", "S3D_Weights.KINETICS400_V1"),
    "mvit_v1_b": ("mvit_v1_b", "MViT_V1_B_Weights.KINETICS400_V1"),
    "mvit_v2_s": ("mvit_v2_s", "MViT_V2_S_Weights.KINETICS400_V1"),
    "swin3d_t": ("swin3d_t", "Swin3D_T_Weights.KINETICS400_V1"),
    "swin3d_s": ("swin3d_s", "Swin3D_S_Weights.KINETICS400_V1"),
    "swin3d_b": ("swin3d_b", "Swin3D_B_Weights.KINETICS400_V1"),
    "swin3d_b_in22k": ("swin3d_b", "Swin3D_B_Weights.KINETICS400_IMAGENET22K_V1"),
}
# (frame_rate, clip_len, clips_per_video) of the four families: R(2+1)D/R3D/MC3, MViT, Swin, S3D.
TIMINGS = [(15, 16, 5), (7.5, 16, 5), (15, 32, 12), (15, 128, 1)]


def weights(name: str):
    return torchvision.models.get_weight(TORCHVISION_MODELS[name][1])


def docs_value(meta: dict, key: str) -> float:
    return float(re.search(rf"{key}=([\d.]+)", meta["_docs"]).group(1))


@pytest.mark.parametrize("name", sorted(TORCHVISION_MODELS))
def test_config_is_what_the_installed_weights_enum_says(name):
    cfg = compose_eval(f"model={name}")
    w, model = weights(name), cfg.model
    t, meta = w.transforms(), w.meta
    assert model.builder._target_ == f"torchvision.models.video.{TORCHVISION_MODELS[name][0]}"
    assert model.builder.weights is None and model.torchvision_weights == TORCHVISION_MODELS[name][1]
    assert model.checkpoint_url == w.url and model.num_classes == len(meta["categories"])
    spec = frameworks.get("torchvision").input_spec(model)
    assert (spec.frames_per_second, spec.num_frames, spec.sampling_rate) == (
        docs_value(meta, "frame_rate"), docs_value(meta, "clip_len"), 1)
    assert list(spec.resize_size) == t.resize_size and [spec.crop_size] * 2 == t.crop_size
    assert list(spec.mean) == t.mean and list(spec.std) == t.std and spec.alpha is None
    assert spec.side_size == min(t.resize_size)
    # Its default protocol and views are those of its published numbers.
    assert cfg.protocol.name == "torchvision" and cfg.protocol.spatial == "torchvision"
    assert (cfg.views.clips, cfg.views.crops) == (docs_value(meta, "clips_per_video"), 1)
    published = model.published
    assert (published.top1, published.top5) == (meta["_metrics"]["Kinetics-400"]["acc@1"],
                                                 meta["_metrics"]["Kinetics-400"]["acc@5"])
    assert published.gflops == meta["_ops"] and published.num_params == meta["num_params"]
    assert published.protocol == "torchvision" and published.views == f"{cfg.views.clips}x1"


def write_at(path: Path, fps: float, seconds: float, width: int = 96, height: int = 64) -> Path:
    spec = ActionSetSpec(seconds=seconds, width=width, height=height, fps=fps)
    return write_video(path, render_action("moving left", spec, np.random.default_rng(0)), fps)


@pytest.fixture(scope="module")
def tv_videos(tmp_path_factory) -> dict[str, Path]:
    """Generated videos at whole and odd ratios to 15 and 7.5 fps, one shorter than a clip,
    and ../shared/videos when present."""
    root = tmp_path_factory.mktemp("tv")
    found = {"30fps": write_at(root / "a.mp4", 30, 3.0), "25fps": write_at(root / "b.mp4", 25, 3.0),
             "24fps": write_at(root / "c.mp4", 24, 2.0), "12fps": write_at(root / "d.mp4", 12, 3.0),
             "short": write_at(root / "e.mp4", 30, 0.5)}
    found.update({name: REAL / name for name in REAL_NAMES if (REAL / name).is_file()})
    return found


@functools.lru_cache(maxsize=None)
def decoded(path: Path):
    """The harness's decode, and the pts and average rate as torchvision's (removed)
    read_video_timestamps read them with PyAV (decoded once per test module)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        pts = sorted({f.pts for f in container.decode(stream) if f.pts is not None})
    return decode_video(path), pts, fps


def torchvision_windows(path: Path, frame_rate: float, clip_len: int, clips: int):
    """torchvision's own clips: VideoClips on the video's pts and average rate (what its
    read_video_timestamps gave), sampled by UniformClipSampler; each clip as its pts."""
    _, pts, fps = decoded(path)
    video_clips = VideoClips([str(path)], clip_len, 1, frame_rate, _precomputed_metadata={
        "video_paths": [str(path)], "video_pts": [torch.tensor(pts)], "video_fps": [fps]})
    static, _ = VideoClips.compute_clips_for_video(torch.tensor(pts), clip_len, 1, fps, frame_rate)
    assert torch.equal(static, video_clips.clips[0])
    if not len(static):  # no clip: torchvision skips the video (the sampler has nothing)
        return [], 0
    picked = [video_clips.get_clip_location(i) for i in UniformClipSampler(video_clips, clips)]
    return [video_clips.clips[v][c].tolist() for v, c in picked], len(static)


@pytest.mark.parametrize("timing", TIMINGS, ids=lambda t: "rate{}_len{}_clips{}".format(*t))
@pytest.mark.parametrize("name", ["30fps", "25fps", "24fps", "12fps", "short", *REAL_NAMES])
def test_clip_windows_equal_videoclips_and_uniform_clip_sampler(tv_videos, name, timing):
    if name not in tv_videos:
        pytest.skip(real_video_missing(name))
    frame_rate, clip_len, clips = timing
    expected, windows = torchvision_windows(tv_videos[name], frame_rate, clip_len, clips)
    video = decoded(tv_videos[name])[0]
    if windows == 0:  # torchvision gives the video no clip: a failure with that reason
        with pytest.raises(TooShort, match=f"too short for one clip: .* a clip has {clip_len}"):
            TIMING.clip_windows(video, None, clips, frame_rate, clip_len)
        return
    ours = TIMING.clip_windows(video, None, clips, frame_rate, clip_len)
    assert [[video.pts[i] for i in w] for w in ours] == expected
    assert all(len(w) == clip_len for w in ours)


def test_a_video_shorter_than_one_clip_is_a_recorded_failure(tv_videos):
    spec = frameworks.get("torchvision").input_spec(compose_eval("model=r3d_18").model)
    dataset = VideoClipsDataset([Video("short", str(tv_videos["short"]), 0, "")], [0], spec, 5,
                                frameworks.timing("torchvision"), 1, None)
    item = dataset[0]
    assert item.clips is None and not item.transient
    assert item.failure.startswith("too short for one clip: 8 frames at the model's frame_rate 15")


@pytest.mark.parametrize("name", ["r3d_18", "mvit_v2_s", "s3d"])
@pytest.mark.parametrize("video_name", ["30fps", "ntsc_29.97fps.mp4"])
def test_pixels_equal_weights_transforms(tv_videos, name, video_name):
    """The fixed (128, 171), short-side 256 and (256, 256) resizes, each model family's mean/std;
    S3D with 8-frame clips (its 128 does not fit the 3 s generated video, and
    the spatial step does not depend on the length)."""
    if video_name not in tv_videos:
        pytest.skip(real_video_missing(video_name))
    spec = frameworks.get("torchvision").input_spec(compose_eval(f"model={name}").model)
    if spec.num_frames > 16:
        spec = type(spec)(**{**spec.__dict__, "num_frames": 8})
    video = decoded(tv_videos[video_name])[0]
    clips = sample_clips(video, spec, 2, frameworks.timing("torchvision"))
    windows = TIMING.clip_windows(video, None, 2, spec.frames_per_second, spec.num_frames)
    transform = weights(name).transforms()
    expected = torch.stack([transform(video.rgb(w).permute(0, 3, 1, 2)) for w in windows])
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        (views,) = make_views(clips, spec, 1, memory_format=layout, spatial=frameworks.spatial("torchvision"))
        assert views.shape == expected.shape == (2, 3, spec.num_frames, 224 if name != "r3d_18"
                                                 else 112, 224 if name != "r3d_18" else 112)
        assert (views - expected).abs().max() < 1e-5


def test_predict_equals_the_model_on_yardstick_views(tv_videos):
    """A seeded random r3d_18 (its real architecture) on small views (4 frames, 40x53 resize,
    32 crop: a 40-GFLOP view would take seconds here) through ``evaluate.predict``: the mean of
    the softmax equals torchvision's model on ``weights.transforms()``-made views with summed
    softmax (divided by the count), identical top-5."""
    cfg = compose_eval("model=r3d_18", "model.weights=random", "model.input.num_frames=4",
                       "model.input.resize_size=[40,53]", "model.input.side_size=40",
                       "model.input.crop_size=32")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    spec, clips = model.spec, 5
    from torchvision.transforms._presets import VideoClassification

    transform = VideoClassification(crop_size=(32, 32), resize_size=(40, 53), mean=spec.mean,
                                    std=spec.std)
    for name in ("25fps",):
        video = decode_video(tv_videos[name])
        windows = TIMING.clip_windows(video, None, clips, 15, 4)
        with torch.inference_mode():
            summed = sum(model.module([transform(video.rgb(w).permute(0, 3, 1, 2))[None]])
                         .softmax(-1)[0] for w in windows)
            ((_, probs),) = list(predict(model.module, [(name, sample_clips(video, spec, clips,
                                                                             TIMING))],
                                         spec, 1, 3, torch.device("cpu"), "fp32",
                                         spatial=frameworks.spatial("torchvision")))
        assert (probs - summed / clips).abs().max() < 1e-5
        assert probs.topk(5).indices.tolist() == summed.topk(5).indices.tolist()


def sweep(tmp_path, action_set, models: str):
    return subprocess.run(
        [sys.executable, "-m", "benchmark.eval", "-m", f"model={models}", "model.num_classes=4",
         "model.weights=random", "data=kinetics400", f"data.csv={action_set / 'validate.csv'}",
         f"data.root={action_set}", f"data.class_names={action_set / 'kinetics_classnames.json'}",
         "data.limit=1", "views.clips=1", "cost.flops=false", "cost.throughput_iters=0",
         "device=cpu", f"results_dir={tmp_path / 'results'}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_sweep_puts_each_model_under_its_own_protocol(tmp_path, action_set):
    """``-m model=slowfast_tiny,r3d_18`` (the full-size r3d_18, 1 clip of 1 video): one table,
    the pytorchvideo model under zoo, the torchvision one under torchvision, with its published
    numbers and its 1x1 views never compared with the published 5x1."""
    result = sweep(tmp_path, action_set, "slowfast_tiny,r3d_18")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table.model.tolist() == ["slowfast_tiny", "r3d_18"]
    assert table.protocol.tolist() == ["zoo", "torchvision"]
    assert table.views.tolist() == ["1x3", "1x1"] and table.status.tolist() == ["ok", "ok"]
    metrics = json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())
    assert metrics["protocol"] == "torchvision" and metrics["weights"] == "random-init"
    assert (metrics["clips"], metrics["crops"], metrics["videos_evaluated"]) == (1, 1, 1)
    rows = pd.read_csv(tmp_path / "results" / "evaluations.csv").set_index("model")
    assert rows.loc["r3d_18", "protocol"] == "torchvision"
    # random weights: not the enum's checkpoint, so no published top-1 beside it (its GFLOPs are)
    assert pd.isna(rows.loc["r3d_18", "published_top1"])
    assert rows.loc["r3d_18", "published_gflops"] == 40.697
    assert pd.isna(rows.loc["r3d_18", "top1_delta"])  # random weights, 1x1: not comparable
    # num_params less the 400-class fc plus a 4-class one (512 x 4 + 4)
    assert rows.loc["r3d_18", "params_m"] == pytest.approx((33371472 - 205200 + 2052) / 1e6, abs=0.01)


def test_torchvision_protocol_needs_one_crop_and_a_torchvision_resize(action_set, tmp_path):
    from benchmark.run.settings import SettingsError, check_settings

    with pytest.raises(SettingsError, match=r"views.crops: the torchvision protocol takes one "
                                            r"centre crop \(views.crops=1\), got 3"):
        check_settings(compose_eval("model=r3d_18", "views.crops=3"))
    with pytest.raises(SettingsError, match="model.input.resize_size: the torchvision protocol"):
        check_settings(compose_eval("model=slowfast_tiny", "protocol=torchvision", "views=5x1"))


def test_class_names_are_the_weights_categories(tmp_path):
    """data.class_names=auto with a torchvision model on a Kinetics CSV: the labels map to the
    weights' ``meta["categories"]`` ids."""
    from benchmark.run.evaluate import with_model_class_names
    from benchmark.data.load import load_dataset

    categories = weights("swin3d_t").meta["categories"]
    csv = tmp_path / "val.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   f"{categories[0]},aaa,0,10,validate\n{categories[399]},bbb,0,10,validate\n")
    (tmp_path / "aaa_000000_000010.mp4").write_bytes(b"")
    cfg = compose_eval("model=swin3d_t", "data=kinetics400", f"data.csv={csv}",
                       f"data.root={tmp_path}", f"cache_dir={tmp_path / 'cache'}")
    data = with_model_class_names(cfg)
    assert data.class_names == str(tmp_path / "cache" / "class_names" /
                                   "Swin3D_T_Weights.KINETICS400_V1.json")
    manifest = load_dataset(data)
    assert manifest.class_names == categories
    assert [v.label for v in manifest.videos] == [0, 399]
    # A pytorchvideo model keeps data.class_names as it is.
    assert with_model_class_names(compose_eval("model=slowfast_tiny", "data=kinetics400")
                                  ).class_names == "auto"


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18", "s3d"])
def test_parameters_equal_num_params_exactly(name):
    """The config's builder is the published architecture (the big ones: results/flops.md)."""
    module = build_model(compose_eval(f"model={name}", "model.weights=random").model).module
    assert sum(p.numel() for p in module.parameters()) == weights(name).meta["num_params"]


def test_flops_row_names_the_matching_conventions():
    from benchmark.results.tables import flops_row

    spec = frameworks.get("torchvision").input_spec(compose_eval("model=mvit_v2_s").model)
    published = {"gflops": 64.224, "params_m": 34.54, "num_params": 34537744}
    counts = {"gflops": 64.03, "gflops_with_norm": 64.26, "gmacs_flop_counter": 64.2241,
              "params": 34537744}
    row = flops_row("mvit_v2_s", spec, "5x1", counts, 34.537744, published)
    assert row["flops_match"] == "yes: flop_counter MACs" and row["params_match"] == "yes (exact)"
    assert row["input"] == "16x224x224"
    row = flops_row("x", spec, "5x1", {**counts, "gflops": 64.22, "params": 34537745}, 34.54,
                    published)
    assert row["flops_match"] == "yes: conv + linear, flop_counter MACs"
    assert row["params_match"] == "no"  # one parameter off, though params_m agrees
    assert flops_row("x", spec, "5x1", {**counts, "gmacs_flop_counter": 1.0}, 34.54,
                     published)["flops_match"] == "no"


def test_weights_auto_takes_the_enums_file_from_the_torch_hub_cache(tmp_path, monkeypatch):
    """Where torchvision's own ``get_state_dict`` keeps the enum's checkpoint (no network
    needed when it is there), checked against the hash in its name as a download is
    (tests/test_models.py: a file that matches is official)."""
    from benchmark.run.models import WeightsError, _hash_prefix, resolve_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = compose_eval("model=r3d_18").model
    cached = tmp_path / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the published file")
    with pytest.raises(WeightsError, match=f"^{re.escape(str(cached))}: its SHA-256 starts [0-9a-f]{{8}}, but "
                                           "r3d_18-b3b3357e.pth says b3b3357e"):
        resolve_weights(cfg)
    assert _hash_prefix(weights("r3d_18").url) == "b3b3357e"
