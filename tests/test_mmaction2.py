"""The mmaction2 adapter (benchmark/frameworks/mmaction2.py) against mmaction2 1.2.0 itself.

mmaction2 is imported once per session (module fixture); the full-size models are built only in
the tests marked slow. The pipeline proofs run mmaction2's own ``Compose`` of each config's
``test_pipeline`` (its decord backend, as the configs name it: ``DecordInit``/``DecordDecode``)
on the six shared videos.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import REAL_NAMES, REPO, SHARED_VIDEOS, compose_eval  # noqa: F401

pytest.importorskip("mmaction", reason="mmaction2 is not installed (the mmaction extra)")

from benchmark.data.decode import decode_video  # noqa: E402

R = "recognition/"
CONFIGS = {  # conf/model/<name>.yaml -> builder.config
    "mm_slowfast_r50_4x16": R + "slowfast/slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb.py",
    "mm_i3d_r50": R + "i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py",
    "mm_x3d_m": R + "x3d/x3d_m_16x5x1_facebook-kinetics400-rgb.py",
    "mm_swin_t": R + "swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py",
    "mm_mvit_v2_s": R + "mvit/mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb.py",
    "mm_videomae_b": R + "videomae/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.py",
    "mm_uniformerv2_b": R + "uniformerv2/uniformerv2-base-p16-res224_clip-kinetics710-pre_8xb32-"
                            "u8_kinetics400-rgb.py",
    "mm_tsn_r50": R + "tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb.py",
    "mm_tsm_r50": R + "tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py",
    "mm_tsm_r50_ssv2": R + "tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py",
}
NUM_CLASSES = {"mm_tsm_r50_ssv2": 174}  # Something-Something v2; the others Kinetics-400
METAFILE_DATASET = {"ssv2": "SthV2"}  # published.dataset -> the metafile's Dataset
# One config per distinct test pipeline (I3D's equals SlowFast's); the fast proof takes three
# (SampleFrames 3D with rounding, UniformSample, 2D segments; CenterCrop, ThreeCrop, TenCrop), the
# slow one the other six (X3D's target_fps floor and TSM-SSv2's twice_sample among them).
FAST_PROOF = ("mm_mvit_v2_s", "mm_uniformerv2_b", "mm_tsn_r50")
SLOW_PROOF = ("mm_slowfast_r50_4x16", "mm_x3d_m", "mm_swin_t", "mm_videomae_b", "mm_tsm_r50",
              "mm_tsm_r50_ssv2")


@pytest.fixture(scope="module")
def mm():
    from benchmark.frameworks import mmaction2

    mmaction2.import_mmaction()
    return mmaction2


def model_cfg(name: str, **extra) -> dict:
    return {"name": name, "framework": "mmaction2", "builder": {"config": CONFIGS[name]},
            "num_classes": NUM_CLASSES.get(name, 400), "weights": "random", **extra}


# ---- 1. the three import problems --------------------------------------------------------------

def test_the_adapter_s_import_handles_the_missing_drn_and_multimodal(mm):
    """The wheel lacks the drn package and, with transformers installed, would turn on the
    multimodal models; after the adapter's import both are handled."""
    import importlib.util

    from mmaction.utils import dependency

    assert importlib.util.find_spec("transformers") is not None  # the case is live
    assert dependency.satisfy_requirement("transformers>=4.28.0")  # what WITH_MULTIMODAL reads
    assert dependency.WITH_MULTIMODAL is False
    drn = sys.modules["mmaction.models.localizers.drn"]
    assert "Stand-in" in drn.__doc__  # no such package in the wheel: the adapter's
    with pytest.raises(ImportError, match="not in the mmaction2 1.2.0 wheel"):
        sys.modules["mmaction.models.localizers.drn.drn"].DRN()
    from mmaction.registry import MODELS

    assert MODELS.get("Recognizer3D") is not None


@pytest.mark.slow
def test_the_wheel_does_not_import_as_published(mm):
    """Without the fixes ``import mmaction.models`` fails on the missing drn package, and with a
    stand-in for it, on the multimodal models (transformers is installed)."""
    probe = (
        "import sys, types\n"
        "try:\n    import mmaction.models\nexcept Exception as e:\n    print('1', repr(e))\n"
        "p = types.ModuleType('mmaction.models.localizers.drn'); p.__path__ = []\n"
        "m = types.ModuleType('mmaction.models.localizers.drn.drn'); m.DRN = object; p.drn = m\n"
        "sys.modules[p.__name__] = p; sys.modules[m.__name__] = m\n"
        "import mmaction.utils.dependency as d; print('multimodal', d.WITH_MULTIMODAL)\n"
        "try:\n    import mmaction.models\nexcept Exception as e:\n    print('2', repr(e))\n")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True,
                         text=True, timeout=120, cwd=REPO).stdout
    assert "1 ModuleNotFoundError(\"No module named 'mmaction.models.localizers.drn'\")" in out
    assert "multimodal True" in out and "\n2 " in out  # VindLU's imports fail (timm, transformers 5)


def test_mmcv_2_2_is_refused_in_one_line(mm, monkeypatch):
    import mmcv

    monkeypatch.setattr(mmcv, "__version__", "2.2.0")
    monkeypatch.setattr(mm.import_mmaction, "done", False)
    with pytest.raises(ImportError) as err:
        mm.import_mmaction()
    assert "mmcv 2.2.0" in str(err.value) and "mmcv-lite==2.1.0" in str(err.value)
    assert "\n" not in str(err.value)


# ---- 2. models by config name ------------------------------------------------------------------

def test_model_configs_compose_and_name_the_wheels_configs(mm):
    import yaml

    for name, path in CONFIGS.items():
        cfg = compose_eval(f"model={name}", "protocol=mmaction2")
        assert cfg.model.framework == "mmaction2" and cfg.model.builder.config == path
        assert cfg.protocol.framework == "mmaction2"
        assert mm.config_path(cfg.model).is_file()
        pub = cfg.model.published
        source = mm.configs_root() / pub.source
        entry = [m for m in yaml.safe_load(source.read_text())["Models"]
                 if m["Name"] == path.rsplit("/", 1)[1][:-3]][0]  # the trained row, not _infer
        dataset = METAFILE_DATASET.get(pub.get("dataset"), "Kinetics-400")
        metrics = [r for r in entry["Results"] if r["Dataset"] == dataset][0]["Metrics"]
        assert pub.top1 == metrics["Top 1 Accuracy"], name
        assert pub.top5 == metrics.get("Top 5 Accuracy", pub.top5), name
        assert cfg.model.checkpoint_url == entry["Weights"], name
        assert pub.views == mm.pipeline(cfg.model).label, name


def test_pipelines_read_from_the_configs(mm):
    p = {n: mm.pipeline(model_cfg(n)) for n in CONFIGS}
    assert (p["mm_slowfast_r50_4x16"].clip_len, p["mm_slowfast_r50_4x16"].frame_interval,
            p["mm_slowfast_r50_4x16"].label, p["mm_slowfast_r50_4x16"].short_side) == (32, 2, "10x3",
                                                                                      256)
    assert p["mm_x3d_m"].target_fps == 30 and p["mm_x3d_m"].mean == (114.75,) * 3
    assert p["mm_uniformerv2_b"].sampler == "UniformSample" and p["mm_uniformerv2_b"].label == "4x3"
    assert p["mm_mvit_v2_s"].crop == "CenterCrop" and p["mm_swin_t"].label == "4x3"
    tsn = p["mm_tsn_r50"]
    assert tsn.two_d and tsn.label == "25x10" and tsn.frames_per_view == 25 and tsn.crops == 10
    assert p["mm_tsm_r50"].frames_per_view == 8 and p["mm_tsm_r50"].clips_per_video == 1
    ssv2 = p["mm_tsm_r50_ssv2"]  # SampleFrames(twice_sample=True): 2 views of 8 per crop
    assert (ssv2.twice_sample, ssv2.frames_per_view, ssv2.clips_per_video, ssv2.label,
            ssv2.crop, ssv2.crop_size, ssv2.views_mean) == (True, 8, 2, "8x3", "ThreeCrop", 256,
                                                            "softmax")
    assert not any(q.twice_sample for n, q in p.items() if n != "mm_tsm_r50_ssv2")


def test_the_adapter_says_a_2d_model_s_clips_are_one_view_s_segments(mm):
    """``segment_views``, by which ``make bench`` counts the views of mmaction2's own test loop:
    a 2D model's clips are the segments of one view (TSN 25x10: 10 views a video, not 250),
    twice under TSM-SSv2's twice_sample; a 3D model's clips are its views, as every other
    framework's (the base class's one default)."""
    from benchmark import frameworks

    adapter = frameworks.get("mmaction2")
    specs = {n: adapter.input_spec(compose_eval(f"model={n}").model) for n in CONFIGS}
    assert {n: adapter.segment_views(s) for n, s in specs.items()} == {
        **dict.fromkeys(CONFIGS), "mm_tsn_r50": 1, "mm_tsm_r50": 1, "mm_tsm_r50_ssv2": 2}
    spec = frameworks.get("torchvision").input_spec(compose_eval("model=r3d_18").model)
    assert [frameworks.get(f).segment_views(spec) for f in frameworks.ADAPTERS
            if f != "mmaction2"] == [None] * (len(frameworks.ADAPTERS) - 1)


@pytest.mark.parametrize("frames", [1, 5, 7, 8, 9, 15, 16, 17, 31, 47, 100, 301])
def test_twice_sample_indices_equal_mmaction2_s_sample_frames(mm, frames):
    """TSM-SSv2's SampleFrames(clip_len=1, num_clips=8, test_mode, twice_sample) run by
    mmaction2 itself: the segments' centres, then their starts (float offsets, truncated), for
    videos shorter and longer than 16 frames; the adapter's two windows are those 8 + 8."""
    from mmaction.registry import TRANSFORMS

    p = mm.pipeline(model_cfg("mm_tsm_r50_ssv2"))
    step = [dict(s) for s in mm.load_config(model_cfg("mm_tsm_r50_ssv2")).test_pipeline
            if s["type"] == "SampleFrames"][0]
    theirs = TRANSFORMS.build(step).transform(dict(total_frames=frames, start_index=0))
    assert theirs["frame_inds"].tolist() == mm.frame_indices(frames, 12.0, p).reshape(-1).tolist()
    video = SimpleNamespace(pts=list(range(frames)), decoded_pts=list(range(frames)),
                            average_fps=12.0)
    windows = mm.clip_windows(video, p)
    assert [len(w) for w in windows] == [8, 8]
    assert windows[0] + windows[1] == theirs["frame_inds"].tolist()


def test_tsn_and_x3d_params_equal_the_metafile_and_tsm_s_listed_figure_is_a_174_class_head(mm):
    """TSM's metafile lists 23.87 M for every R50 row, Kinetics-400 ones too: the count with
    Something-Something V2's 174-class head (23.86 M); with 400 classes the same network is
    24.33 M, what the TSN Kinetics rows list for the identical ResNet-50 + linear head."""
    assert mm.num_params(mm.build_architecture(model_cfg("mm_x3d_m"))) == 3794322  # the metafile's
    assert round(mm.num_params(mm.build_architecture(model_cfg("mm_tsn_r50"))) / 1e6, 2) == 24.33
    tsm = model_cfg("mm_tsm_r50")
    assert round(mm.num_params(mm.build_architecture(tsm)) / 1e6, 2) == 24.33
    tsm["builder"]["overrides"] = {"model.cls_head.num_classes": 174}
    tsm["num_classes"] = 174
    assert round(mm.num_params(mm.build_architecture(tsm)) / 1e6, 2) == 23.86


@pytest.mark.slow
def test_every_model_s_params_and_flops_beside_the_metafile(mm):
    """Full size: params (M) and GFLOPs of one view (get_flops.py's count) at the resolution
    the published figure was measured at, as conf/model/mm_*.yaml record them."""
    for name in CONFIGS:
        cfg = compose_eval(f"model={name}").model
        pub = cfg.published
        model = mm.build_architecture(cfg)
        assert round(mm.num_params(model) / 1e6, 2) == pytest.approx(pub.params_m_measured, abs=0.01)
        g = mm.gflops(model, mm.example(mm.pipeline(cfg), int(pub.gflops_resolution)))
        assert g == pytest.approx(pub.gflops_measured, abs=0.01), name


# ---- 3. checkpoints ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def x3d_checkpoint(mm, tmp_path_factory):
    """An mmaction2-format checkpoint of X3D-M (written by mmengine's save_checkpoint)."""
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

    torch.manual_seed(0)
    model = mm.build_architecture(model_cfg("mm_x3d_m"))
    path = tmp_path_factory.mktemp("mm_ckpt") / "x3d_m_16x5x1_facebook-kinetics400-rgb_20201027-3f42382a.pth"
    save_checkpoint({"meta": {"mmengine_version": "0.10.7", "epoch": 1},
                     "state_dict": weights_to_cpu(model.state_dict())}, str(path))
    return path, model.state_dict()


def test_checkpoint_loads_strictly_from_a_path_and_the_hub_cache(mm, x3d_checkpoint, tmp_path,
                                                                  monkeypatch):
    path, state = x3d_checkpoint
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == {"meta", "state_dict"}
    assert any(k.startswith("backbone.") for k in loaded["state_dict"])
    assert any(k.startswith("cls_head.") for k in loaded["state_dict"])
    model = mm.build(model_cfg("mm_x3d_m", weights=str(path)))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())

    url = ("https://download.openmmlab.com/mmaction/v1.0/recognition/x3d/facebook/" + path.name)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        mm.build(model_cfg("mm_x3d_m", weights="auto", checkpoint_url=url))
    with pytest.raises(mm.CheckpointError, match="not in the torch hub cache"):
        mm.build(model_cfg("mm_x3d_m", weights="pretrained", checkpoint_url=url))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / path.name).write_bytes(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no random-init warning
        model = mm.build(model_cfg("mm_x3d_m", weights="auto", checkpoint_url=url))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("fault", ["missing", "unexpected", "shape"])
def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line(mm, x3d_checkpoint, tmp_path, fault):
    path, state = x3d_checkpoint
    state = copy.copy(torch.load(path, weights_only=True)["state_dict"])
    key = "cls_head.fc2.weight"
    if fault == "missing":
        del state[key]
    elif fault == "unexpected":
        state["cls_head.extra.weight"] = torch.zeros(1)
    else:
        state[key] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pth"
    torch.save({"meta": {}, "state_dict": state}, bad)
    with pytest.raises(mm.CheckpointError) as err:
        mm.build(model_cfg("mm_x3d_m", weights=str(bad)))
    text = str(err.value)
    assert "\n" not in text and str(bad) in text
    assert {"missing": f"missing keys [{key}]", "unexpected": "unexpected keys [cls_head.extra",
            "shape": f"wrong shapes [{key} (3, 3)"}[fault] in text


# ---- 4. the protocol: proved against mmaction2's own pipeline ----------------------------------

def test_frame_indices_match_the_documented_examples(mm):
    sf = mm.pipeline(model_cfg("mm_slowfast_r50_4x16"))
    starts = mm.frame_indices(300, 30.0, sf)[:, 0].tolist()
    assert starts == [0, 26, 53, 79, 105, 132, 158, 184, 211, 237]
    short = mm.frame_indices(20, 30.0, sf)  # 32 x 2 > 20 frames: every clip loops from 0
    assert short[0].tolist() == [(2 * i) % 20 for i in range(32)]
    x3d = mm.pipeline(model_cfg("mm_x3d_m"))  # target_fps: floor, linspace over 80 * fps/30
    assert mm.frame_indices(300, 30.0, x3d)[1, 0] == 24  # floor((300 - 80) / 9)


class DecodedInOrder:
    """decord's ``VideoReader`` whose ``get_batch`` decodes frames 0 .. max(indices) in order and
    returns the ones asked for. decord's own ``get_batch`` seeks back and forth, and on an AVI
    with packed B-frames (xvid_packed_bframes.avi) a seek now and then returns a neighbouring
    picture: measured, 5 of 60 calls of mmaction2's SlowFast pipeline under load, 0 of 150 with
    this reader (dmlc/decord#195 reports the same on HMDB51's AVIs and names this workaround).
    The frames are still decord's, and every step (DecordInit, SampleFrames, DecordDecode,
    Resize, the crops) is still mmaction2's own code."""

    def __init__(self, reader):
        self.reader = reader

    def __len__(self):
        return len(self.reader)

    def get_batch(self, indices):
        indices = np.asarray(indices)
        frames = self.reader.get_batch(list(range(int(indices.max()) + 1))).asnumpy()[indices]
        return SimpleNamespace(asnumpy=lambda: frames)


def reference(mm, cfg, path):
    """mmaction2's own test pipeline on ``path``: (frame_inds, total_frames, uint8 inputs)."""
    results = mm.reference_input(path)
    for step in mm.reference_pipeline(cfg).transforms:
        results = step(results)
        if type(step).__name__ == "DecordInit":
            results["video_reader"] = DecodedInOrder(results["video_reader"])
        if "frame_inds" in results:
            inds, total = results["frame_inds"].copy(), results["total_frames"]
    return inds, total, results["inputs"]


def in_harness_order(inputs, p):
    """mmaction2's inputs are crop-major; the adapter's views are clip-major (view = clip x crop)."""
    if p.two_d:  # (crops * clips * frames, C, H, W) -> (clips * crops, C, frames, H, W)
        n = p.clips_per_video  # twice_sample: each crop's 16 frames are 2 views of 8
        return inputs.view(p.crops, n, -1, *inputs.shape[1:]).permute(1, 0, 3, 2, 4, 5).reshape(
            n * p.crops, inputs.shape[1], -1, *inputs.shape[2:])
    return inputs.view(p.crops, p.num_clips, *inputs.shape[1:]).transpose(0, 1).reshape(
        -1, *inputs.shape[1:])


def prove(mm, names):
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"the shared videos are not here ({SHARED_VIDEOS})")
    worst = {}
    for video_name in REAL_NAMES:
        path = SHARED_VIDEOS / video_name
        video = decode_video(path)
        order = mm.decoder_order(video)
        for name in names:
            cfg = model_cfg(name)
            p = mm.pipeline(cfg)
            inds, total, inputs = reference(mm, cfg, path)
            assert total == len(order), (video_name, name)
            assert mm.frame_indices(len(order), video.average_fps, p).reshape(-1).tolist() == \
                inds.tolist(), (video_name, name)
            mine = mm.uint8_views(video, mm.clip_windows(video, p), p)
            theirs = in_harness_order(inputs, p)
            assert mine.shape == theirs.shape, (video_name, name)
            worst[name] = max(worst.get(name, 0), int((mine.int() - theirs.int()).abs().max()))
    print("max |adapter - mmaction2| per model (uint8 levels):", worst)
    assert all(v == 0 for v in worst.values()), worst


def test_protocol_equals_mmaction2_s_own_pipeline_on_the_shared_videos(mm):
    """Frame indices and uint8 views (after Resize and the crops) equal mmaction2's Compose of
    the config's test_pipeline (decord backend) on all six shared videos: MViT (SampleFrames
    16 x 4, 5 clips, CenterCrop), UniFormerV2 (UniformSample, ThreeCrop), TSN (25 x TenCrop)."""
    prove(mm, FAST_PROOF)


@pytest.mark.slow
def test_protocol_equals_mmaction2_s_own_pipeline_for_the_other_configs(mm):
    prove(mm, SLOW_PROOF)


def test_frames_are_indexed_in_the_decoder_s_order_as_mmaction2_does(mm):
    """On the AVI with packed B-frames the decoder gives pts 1, 2, 4, 3, ...: mmaction2's frame i
    is the decoder's i-th (decord and PyAVDecode alike), not the i-th by timestamp."""
    path = SHARED_VIDEOS / "xvid_packed_bframes.avi"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    video = decode_video(path)
    order = mm.decoder_order(video)
    assert order != list(range(len(video.frames))) and sorted(order) == list(range(len(order)))


# ---- 5/6. 2D models and end to end: the adapter's probabilities = mmaction2's test_step ---------

SMALL_PIPELINE = {  # shrunken spatial steps, so that a forward pass takes a fraction of a second
    "mm_tsn_r50": ((-1, 64), "TenCrop", 56),
    "mm_tsm_r50": ((-1, 64), "TenCrop", 56),
    "mm_tsm_r50_ssv2": ((-1, 64), "ThreeCrop", 64),
    "mm_x3d_m": ((-1, 64), "ThreeCrop", 64),
}


def small_cfg(mm, name):
    cfg = model_cfg(name)
    pipe = [dict(s) for s in mm.load_config(cfg).test_pipeline]
    scale, crop, size = SMALL_PIPELINE[name]
    for s in pipe:
        if s["type"] == "Resize":
            s["scale"] = scale
        if s["type"] in ("ThreeCrop", "TenCrop", "CenterCrop"):
            s.update(type=crop, crop_size=size)
        if s["type"] in ("SampleFrames",) and s["clip_len"] > 1:
            s["num_clips"] = 2  # 2 clips x 3 crops: the views' mean is still taken
    overrides = {"test_pipeline": pipe}
    if name != "mm_x3d_m":
        overrides.update({"model.backbone.depth": 18, "model.cls_head.in_channels": 512})
    cfg["builder"]["overrides"] = overrides
    return cfg


@pytest.mark.parametrize("name", ["mm_tsn_r50", "mm_tsm_r50", "mm_tsm_r50_ssv2", "mm_x3d_m"])
def test_adapter_probabilities_equal_mmaction2_s_test_step(mm, videos, name):
    """Build + views + forward through the adapter give each video's probabilities as mmaction2's
    own pipeline + ``model.test_step`` do (TSN: one consensus over 25 x 10 frames; TSM: groups of
    8 segments, mean of softmax over 10 crops; TSM-SSv2: twice_sample's 2 groups of 8 x 3 crops;
    X3D: mean of softmax over 10 x 3 views), on a generated portrait video (ThreeCrop's
    vertical case)."""
    from mmengine.dataset import pseudo_collate

    torch.manual_seed(0)
    cfg = small_cfg(mm, name)
    model = mm.build(cfg)
    p = mm.pipeline(cfg)
    path = videos["portrait"]
    video = decode_video(path)
    views = mm.video_views(video, p)
    assert views.shape[0] == p.clips_per_video * p.crops
    probs = mm.probabilities(model, views, views.shape[0], p)
    data = mm.reference_pipeline(cfg)(mm.reference_input(path))
    with torch.no_grad():
        out = model.test_step(pseudo_collate([data]))
    theirs = out[0].pred_score
    assert probs.shape == (1, NUM_CLASSES.get(name, 400))
    print(name, "max |adapter - test_step|:", float((probs[0] - theirs).abs().max()))
    assert torch.allclose(probs[0], theirs, atol=1e-6), (probs[0] - theirs).abs().max()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
