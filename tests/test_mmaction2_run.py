"""mmaction2's models in the run (benchmark/frameworks/mmaction2.py through the registry): the
evaluate loop's 2D and 3D input paths on tiny tensors against the adapter's ``probabilities``
(mmaction2's own test path, proved equal to ``model.test_step`` in tests/test_mmaction2.py),
and the CLI end to end on one cheap model against mmaction2's own pipeline + ``test_step``.
The full-size models are built only in the test marked slow."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, compose_eval, run_eval  # noqa: F401

pytest.importorskip("mmaction", reason="mmaction2 is not installed (the mmaction extra)")

from benchmark import frameworks  # noqa: E402
from benchmark.frameworks import fuse  # noqa: E402
from benchmark.run.device import prepare_model  # noqa: E402
from benchmark.run.batches import predict  # noqa: E402
from benchmark.run.settings import SettingsError, check_settings  # noqa: E402
from benchmark.run.models import build_model  # noqa: E402

MM_MODELS = ("mm_slowfast_r50_4x16", "mm_i3d_r50", "mm_x3d_m", "mm_swin_t", "mm_mvit_v2_s",
             "mm_videomae_b", "mm_uniformerv2_b", "mm_tsn_r50", "mm_tsm_r50", "mm_tsm_r50_ssv2")
TWO_D = ("mm_tsn_r50", "mm_tsm_r50", "mm_tsm_r50_ssv2")  # ResNet-50 2D: views.clips = segments


@pytest.fixture(scope="module")
def mm():
    from benchmark.frameworks import mmaction2

    mmaction2.import_mmaction()
    return mmaction2


def small(mm, name: str, side: int = 64, crop: int = 56, clips: int | None = None):
    """The eval config of ``name`` with a shrunken test pipeline (Resize(-1, side), ``crop``)
    and, for the ResNet-50 2D models, a ResNet-18 backbone: the same code paths in a fraction
    of a second."""
    cfg = compose_eval(f"model={name}", "model.weights=random")
    builder = OmegaConf.to_container(cfg.model.builder)
    pipe = [dict(s) for s in mm.load_config(cfg.model).test_pipeline]
    for s in pipe:
        if s["type"] == "Resize":
            s["scale"] = (-1, side)
        if s["type"] in ("ThreeCrop", "TenCrop", "CenterCrop"):
            s["crop_size"] = crop
        if s["type"] == "SampleFrames" and clips is not None:
            s["num_clips"] = clips
    overrides = {"test_pipeline": pipe}
    if name in TWO_D:
        overrides.update({"model.backbone.depth": 18, "model.cls_head.in_channels": 512})
    builder["overrides"] = overrides
    cfg.model.builder = builder
    cfg.model.input.side_size, cfg.model.input.crop_size = side, crop
    return cfg


@pytest.mark.parametrize("name", ["mm_tsn_r50", "mm_tsm_r50", "mm_tsm_r50_ssv2", "mm_x3d_m"])
def test_the_loop_s_views_and_batches_give_mmaction2_s_probabilities(mm, name):
    """predict() (views built from resized uint8 clips, batches of 3 views that split a video's
    views, the combination the spec says) = the adapter's ``probabilities`` on all the video's
    views at once: TSN's consensus over every frame of every crop (the softmax of the views'
    mean logits), TSM's groups of 8 segments, TSM-SSv2's 2 samplings x 3 crops, X3D's clips x
    crops."""
    torch.manual_seed(0)
    x3d = name == "mm_x3d_m"
    three = x3d or name == "mm_tsm_r50_ssv2"  # ThreeCrop: the crop spans the short side
    cfg = small(mm, name, side=32, crop=32 if three else 28, clips=2 if x3d else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-weights warning
        model = build_model(cfg.model, "pooled_logits")
    p = model.spec.pipeline
    assert p.two_d is (not x3d) and model.spec.num_frames == p.frames_per_view
    assert p.clips_per_video * p.crops == {"mm_tsn_r50": 10, "mm_tsm_r50": 10,
                                           "mm_tsm_r50_ssv2": 6, "mm_x3d_m": 6}[name]
    clips = torch.randint(0, 256, (p.clips_per_video, 3, p.frames_per_view, 32, 43),
                          dtype=torch.uint8)  # the loader's resized frames (views, C, T, H, W)
    views = mm.views(clips, model.spec, p.crops)[0]
    assert views.shape == (p.clips_per_video * p.crops, 3, p.frames_per_view, p.crop_size,
                           p.crop_size)
    with torch.no_grad():  # logits that only the views' differences make (~3 apart), so that
        # the mean of softmax and the softmax of the mean logits differ
        head = model.module.cls_head
        fc = head.fc_cls if hasattr(head, "fc_cls") else head.fc2
        seen = []
        hook = fc.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
        model.module(views)
        hook.remove()
        f = torch.cat(seen).mean(0)
        fc.weight.sub_(torch.outer(fc.weight @ f, f) / f.dot(f))  # W f_mean = 0
        fc.bias.zero_()
        fc.weight.mul_(3 / model.module(views).std())
    ((_, got),) = list(predict(model.module, [("v", clips)], model.spec, p.crops, 3,
                               torch.device("cpu"), "fp32",
                               spatial=frameworks.spatial("mmaction2")))
    want = mm.probabilities(model.module, views, views.shape[0], p)[0]
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert model.spec.views_mean == ("logits" if name == "mm_tsn_r50" else "softmax")
    with torch.no_grad():
        per_view = model.module(views)
    other = (per_view.softmax(-1).mean(0) if model.spec.views_mean == "logits"
             else per_view.mean(0).softmax(-1))
    assert (other - want).abs().max() > 1e-3  # the combination matters here
    # eval.channels_last (on by default): NDHWC views and 5-D weights, rank-4 buffers left be.
    # eval.fuse=all: the adapter declares no rewrite (bn and relu know pytorchvideo's blocks
    # only and stem pads plain nn.Conv3d only, where mmcv's ConvModule holds its own Conv3d
    # class: all three would change nothing), the run records fuse none, and the
    # probabilities stay the plain model's.
    assert frameworks.get("mmaction2").rewrites() == {}
    every = frameworks.get("pytorchvideo").rewrites()
    assert fuse.applied(fuse.fused(model.module, ("bn", "stem", "relu"), every)) == ()
    runner = prepare_model(model.module, torch.device("cpu"), channels_last=True, compile=False,
                           fuse=("bn", "stem", "relu"), adapter=frameworks.get("mmaction2"))
    assert fuse.applied(runner) == ()
    stem = next(m for m in runner.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    layouts = []
    stem.register_forward_hook(lambda m, args, out: layouts.append(args[0].is_contiguous(
        memory_format=torch.channels_last if p.two_d else torch.channels_last_3d)))
    ((_, fast),) = list(predict(runner, [("v", clips)], model.spec, p.crops, 3,
                                torch.device("cpu"), "fp32", channels_last=True,
                                spatial=frameworks.spatial("mmaction2")))
    assert torch.allclose(fast, want, atol=1e-5), (fast - want).abs().max()
    # the stem sees channels-last input (before: NCDHW views, converted in every convolution);
    # a 2D model's frames as NHWC images, not copied back to NCHW
    assert layouts and all(layouts), layouts


def test_settings_name_the_key_for_crops_and_segments_the_config_cannot_take(mm, tmp_path):
    with pytest.raises(SettingsError, match=r"^views.crops: 3 \(ThreeCrop\) needs"):
        check_settings(compose_eval("model=mm_tsn_r50", "views.crops=3"))
    with pytest.raises(SettingsError, match="^views.crops: the mmaction2 protocol takes 1, 3 or 10"):
        check_settings(compose_eval("model=mm_x3d_m", "views.crops=2"))
    check_settings(compose_eval("model=mm_tsn_r50"))  # 25x10 under protocol mmaction2
    cfg = compose_eval("model=mm_tsn_r50")
    assert (cfg.protocol.name, cfg.views.clips, cfg.views.crops) == ("mmaction2", 25, 10)
    spec = build_model(small(mm, "mm_tsm_r50").model).spec
    video = type("V", (), {})()  # cut_clips refuses before it reads a frame
    with pytest.raises(ValueError, match="views.clips=3: this 2D model's view is its 8 segments"):
        mm.cut_clips(video, spec, 3, "mmaction2")
    cfg = compose_eval("model=mm_tsm_r50_ssv2")  # 8x3: 8 segments x ThreeCrop, sampled twice
    check_settings(cfg)
    assert (cfg.protocol.name, cfg.views.clips, cfg.views.crops) == ("mmaction2", 8, 3)


def test_a_config_that_disagrees_with_model_input_is_refused_in_one_line(mm):
    from benchmark.run.models import WeightsError

    cfg = compose_eval("model=mm_x3d_m", "model.input.side_size=224")
    with pytest.raises(WeightsError, match=r"^model.input.side_size=224 but the mmaction2 "
                                           r"config's test_pipeline gives 256 \(recognition/x3d"):
        build_model(cfg.model)


def test_cli_evaluates_x3d_as_mmaction2_s_own_pipeline_and_test_step_do(mm, tmp_path):
    """``python -m benchmark.eval model=mm_x3d_m data=sample`` offline: random init with the
    loud warning, protocol mmaction2, and the video's probabilities those of mmaction2's own
    Compose of the config's test_pipeline (1 clip, ThreeCrop) + ``model.test_step`` on the
    same random weights (seed 0)."""
    from mmengine.dataset import pseudo_collate

    out = tmp_path / "run"
    result = run_eval("model=mm_x3d_m", "data=sample", "data.limit=1", "views=1x3",
                      "device=cpu", "cost.throughput_iters=0", "cost.flops=false",
                      f"hydra.run.dir={out}", f"results_dir={tmp_path / 'results'}")
    assert "RANDOM WEIGHTS: no checkpoint for mm_x3d_m" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["model"], metrics["protocol"], metrics["weights"]) == (
        "mm_x3d_m", "mmaction2", "random-init")
    assert (metrics["clips"], metrics["crops"], metrics["videos_evaluated"]) == (1, 3, 1)
    assert metrics["channels_last"] is True and metrics["versions"]["mmaction2"] == "1.2.0"
    assert metrics["fuse"] == "none"  # eval.fuse=auto's bn+relu: pytorchvideo's blocks only
    row = pd.read_parquet(out / "predictions.parquet").iloc[0]
    ours = torch.tensor(row.probs, dtype=torch.float32)

    torch.manual_seed(0)  # the run's seed: the same random weights
    cfg = compose_eval("model=mm_x3d_m", "model.weights=random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mm.build(cfg.model)
    data = mm.reference_pipeline(cfg.model, clips=1)(mm.reference_input(row.path))
    with torch.no_grad():
        theirs = model.test_step(pseudo_collate([data]))[0].pred_score
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


@pytest.mark.slow
def test_cli_evaluates_tsm_ssv2_as_mmaction2_s_own_pipeline_and_test_step_do(mm, tmp_path):
    """Full-size TSM-SSv2 (174 classes) through ``python -m benchmark.eval`` offline on one
    sample video at its own 8x3 views: twice_sample's 2 x 3 = 6 views, each video's
    probabilities those of mmaction2's own Compose of the config's test_pipeline +
    ``model.test_step`` on the same random weights (seed 0)."""
    from mmengine.dataset import pseudo_collate

    out = tmp_path / "run"
    result = run_eval("model=mm_tsm_r50_ssv2", "data=sample", "data.limit=1", "device=cpu",
                      "cost.throughput_iters=0", "cost.flops=false", f"hydra.run.dir={out}",
                      f"results_dir={tmp_path / 'results'}")
    assert "RANDOM WEIGHTS: no checkpoint for mm_tsm_r50_ssv2" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["clips"], metrics["crops"], metrics["protocol"]) == (8, 3, "mmaction2")
    row = pd.read_parquet(out / "predictions.parquet").iloc[0]
    ours = torch.tensor(row.probs, dtype=torch.float32)
    assert ours.shape == (174,)

    torch.manual_seed(0)  # the run's seed: the same random weights
    cfg = compose_eval("model=mm_tsm_r50_ssv2", "model.weights=random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mm.build(cfg.model)
    data = mm.reference_pipeline(cfg.model)(mm.reference_input(row.path))
    assert data["inputs"].shape == (3 * 16, 3, 256, 256)  # ThreeCrop x (8 centres + 8 starts)
    with torch.no_grad():
        theirs = model.test_step(pseudo_collate([data]))[0].pred_score
    print("max |CLI - test_step|:", float((ours - theirs).abs().max()))
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("name", MM_MODELS)
def test_every_full_size_model_evaluates_a_sample_video(name, tmp_path):
    """Each of the nine configs through the CLI on one sample video, one clip (a 2D model: its
    segments) and one crop: it builds offline, runs under protocol mmaction2 and predicts."""
    cfg = compose_eval(f"model={name}")
    clips = cfg.views.clips if name in TWO_D else 1  # 2D: all its segments
    out = tmp_path / "run"
    run_eval(f"model={name}", "data=sample", "data.limit=1", f"views.clips={clips}",
             "views.crops=1", "device=cpu", "cost.throughput_iters=0", "cost.flops=false",
             f"hydra.run.dir={out}", f"results_dir={tmp_path / 'results'}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos_evaluated"] == 1 and metrics["protocol"] == "mmaction2"


def test_protocol_mmaction2_for_another_framework_s_model_is_the_slowfast_config_s_pipeline(mm):
    """``make protocols``' toy SlowFast under protocol mmaction2: the SlowFast R50 config's
    test_pipeline (conf/protocol/mmaction2.yaml says so) with the model's own sizes."""
    cfg = compose_eval("model=slowfast_toy", "protocol=mmaction2")
    check_settings(cfg)
    spec = build_model(cfg.model).spec
    sf = compose_eval("model=mm_slowfast_r50_4x16")
    pipe = [dict(s) for s in mm.load_config(sf.model).test_pipeline]
    for s in pipe:
        if s["type"] == "SampleFrames":
            s.update(clip_len=spec.num_frames, frame_interval=spec.sampling_rate, num_clips=1)
        if s["type"] == "Resize":
            s["scale"] = (-1, spec.side_size)
        if s["type"] == "ThreeCrop":
            s["crop_size"] = spec.crop_size
    builder = {**OmegaConf.to_container(sf.model.builder), "overrides": {"test_pipeline": pipe}}
    theirs = mm.pipeline({"builder": builder, "name": "x"})
    ours = mm.default_pipeline(spec)
    assert ours == type(ours)(**{**theirs.__dict__, "mean": ours.mean, "std": ours.std})
    assert ours.mean == pytest.approx(tuple(255 * m for m in spec.mean))


def test_flops_rows_match_a_metafile_figure_to_its_own_digits():
    from benchmark.results.tables import flops_row

    spec = type("S", (), {"num_frames": 32, "crop_size": 256, "alpha": None})()
    counts = {"gflops": 36.01, "gflops_with_norm": 36.5, "gflops_framework": 36.33}
    row = flops_row("mm_slowfast_r50_4x16", spec, "10x3", counts, 34.48,
                    {"gflops": 36.3, "params_m": 34.5, "top1": 75.55, "top5": 92.35})
    assert row["flops_match"] == "yes: framework's counter" and row["gflops_framework"] == 36.33
    assert (row["published_top1"], row["published_top5"]) == (75.55, 92.35)
    row = flops_row("mm_x3d_m", spec, "10x3", {**counts, "gflops_framework": 6.40}, 3.79,
                    {"gflops": 6.49})
    assert row["flops_match"] == "no"
    row = flops_row("mm_swin_t", spec, "4x3", {**counts, "gflops_framework": 88.06}, 28.16,
                    {"gflops": 88.0, "params_m": 28.2})  # the metafile's "88G", "28.2M"
    assert (row["flops_match"], row["params_match"]) == ("yes: framework's counter", "yes")
    row = flops_row("slowfast_r50", spec, "10x3", {**counts, "gflops": 65.71}, 34.57,
                    {"gflops": 65.7, "params_m": 34.56})  # two digits stay two
    assert (row["flops_match"], row["params_match"]) == ("yes: conv + linear", "no")


@pytest.mark.slow
def test_x3d_m_s_metafile_gflops_are_mmcv_1_s_hook_counter_at_256_px(mm):
    """The metafile's 6490866832 for X3D-M is mmaction2 0.x's get_flops.py: mmcv 1.x's hook
    counter (mmcv/cnn/utils/flops_counter.py, restated: conv multiply-adds + one per output
    element for a bias, batch norm 2 per element, ReLU 1, pooling 1 per input element, linear)
    on backbone + head at 256 px; the 1.x tool (mmengine's counter, extract_feat) gives 6.40."""
    import numpy as np
    from torch import nn

    model = mm.build_architecture(compose_eval("model=mm_x3d_m").model)
    total = [0]

    def conv(m, i, o):
        n = o.shape[0] * int(np.prod(o.shape[2:]))
        total[0] += int(np.prod(m.kernel_size)) * m.in_channels * (m.out_channels // m.groups) * n
        total[0] += m.out_channels * n if m.bias is not None else 0

    hooks = {nn.modules.conv._ConvNd: conv,
             nn.ReLU: lambda m, i, o: total.__setitem__(0, total[0] + o.numel()),
             (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
              nn.modules.pooling._AdaptiveAvgPoolNd):
                 lambda m, i, o: total.__setitem__(0, total[0] + i[0].numel()),
             nn.modules.batchnorm._BatchNorm:
                 lambda m, i, o: total.__setitem__(0, total[0] + i[0].numel() * (1 + m.affine)),
             nn.Linear: lambda m, i, o: total.__setitem__(0, total[0] + i[0].numel() * o.shape[-1])}
    for m in model.modules():
        for kind, hook in hooks.items():
            if isinstance(m, kind):
                m.register_forward_hook(hook)
    with torch.no_grad():
        model.cls_head(model.backbone(torch.randn(1, 3, 16, 256, 256)))
    assert total[0] == 6490866832
