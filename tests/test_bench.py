"""End to end: ``python -m benchmark.bench`` with a tiny model on small generated videos."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import REPO

# The regression check's trained toy SlowFast on the toy set's videos (generated into the cache
# on first use, shared with the check): its answers follow the views (a view fault flips them,
# below), so the reference and the harness agreeing means something. A random tiny model's
# near-uniform output agreed even with channels swapped or frames reversed (max difference
# 1.7e-5, top-1 agreement 1.0).
TOY = ["data=toy", "model=slowfast_toy",
       f"model.weights={REPO / 'results' / 'regression' / 'toy_slowfast.pt'}",
       "views.clips=2", "precision=fp32", "device=cpu", "bench.matmul_size=256",
       "bench.transformers=[]"]


def bench(tmp: Path, *overrides: str, base=TOY) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.bench", *base, *overrides,
         f"results_dir={tmp / 'results'}", f"hydra.run.dir={tmp / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# A session fixture: a module fixture is made again when an xdist worker comes back to the module.
@pytest.fixture(scope="session")
def bench_run(tmp_path_factory, tiny_videomae):
    """The toy SlowFast's rows, then a transformers row (bench.transformers): the tiny VideoMAE
    (its config overridden through bench.transformers_overrides) on the same videos."""
    tmp = tmp_path_factory.mktemp("bench")
    overrides = [a for a in tiny_videomae_args(tiny_videomae)[3:10]] + ["views.clips=2"]
    return tmp, bench(tmp, "bench.videos=2", "bench.harness_videos=5", "bench.rss_videos=3",
                      "bench.transformers=[videomae_base_k400]",
                      "bench.transformers_overrides=[" + ",".join(f"'{o}'" for o in overrides)
                      + "]")


def test_the_agreement_sees_a_view_fault(tmp_path):
    """Channels swapped in the harness's clips only: its answers leave the reference's (so the
    agreement asserted below can fail)."""
    bench(tmp_path, "views.fault=bgr", "bench.videos=1", "bench.rss_videos=0",
          "bench.compare_fuse=false")
    agreement = json.loads((tmp_path / "out" / "bench.json").read_text())["agreement"]
    assert agreement["top1_agree"] == 0.0 and agreement["max_abs_prob_diff"] > 0.1


def test_bench_times_both_pipelines_and_they_agree(bench_run):
    tmp, result = bench_run
    bench = json.loads((tmp / "out" / "bench.json").read_text())
    for key in ("data_speedup", "model_speedup", "total_speedup", "model_peak_fraction"):
        assert bench[key] > 0
    # The harness cycles through the reference's 2 videos 2.5 times.
    assert bench["harness"]["videos"] == 5 and bench["harness"]["distinct_videos"] == 2
    for name in ("reference", "harness"):
        side = bench[name]
        assert side["videos"] == (2 if name == "reference" else 5)
        assert side["views_per_video"] == 6  # 2 clips x 3 crops
        assert side["data_s"] > 0 and side["total_s"] > side["model_s"] > 0
        assert side["gmacs_per_s"] > 0 and side["peak_rss_mb"] > 0 and side["peak_fraction"] > 0
    assert 0 <= bench["harness"]["data_wait_fraction"] < 1
    assert bench["reference"]["precision"] == "fp32" and bench["reference"]["batch_views"] == 1
    assert bench["matmul_gmacs_per_s"]["fp32"] > 0
    # Same weights, same videos: the harness predicts what the model card's pipeline does.
    assert bench["agreement"]["top1_agree"] == 1.0
    assert bench["agreement"]["max_abs_prob_diff"] < 1e-4
    assert "data_speedup" in result.stdout
    # bench.compare_fuse: the harness also ran with eval.fuse=none first; same answers.
    assert (bench["harness"]["fuse"], bench["harness_unfused"]["fuse"]) == ("bn+relu", "none")
    assert bench["harness_unfused"]["videos"] == 5 and bench["fuse_model_speedup"] > 0
    assert bench["fuse_agreement"]["top1_agree"] == 1.0
    assert bench["fuse_agreement"]["max_abs_prob_diff"] < 1e-4
    assert "eval.fuse=bn+relu against none" in result.stdout


def test_bench_rss_check_and_tables(bench_run):
    tmp, _ = bench_run
    rss = json.loads((tmp / "out" / "bench.json").read_text())["rss_check"]
    assert rss["videos"] == 3 and rss["summary"]["videos"] == 3
    samples = rss["summary"]["rss_samples"]  # after the first video and after the last
    assert samples[0]["video"] == 1 and samples[-1]["video"] == 3
    assert all(s["rss_mb"] > 0 for s in samples)
    table = pd.read_csv(tmp / "results" / "bench-cpu.csv")
    table = table[table.model != "videomae_base_k400"]  # bench.transformers' rows: below
    assert sorted(table.pipeline) == ["harness", "harness", "harness (RSS check)", "reference"]
    harness = table[table.pipeline == "harness"]
    assert sorted(harness.fuse) == ["bn+relu", "none"]
    assert (harness.total_speedup > 0).all() and (harness.precision == "fp32").all()
    shown = (tmp / "results" / "bench-cpu.md").read_text()
    assert shown.startswith("Rows: `make bench`")
    header = next(line for line in shown.splitlines() if line.startswith("| pipeline"))
    assert header.count("|") - 1 == 14 and "| reference" in shown
    # Combined cells: how each ran, and the fused and unfused harness rows apart.
    assert "| fp32, batch 1, NCDHW, workers 0 " in shown
    assert "fuse bn+relu" in shown and "fuse none" in shown


# --- the transformers row: the card pipeline (video processor + model per clip) ----------------

@pytest.fixture(scope="session")
def tiny_videomae(tmp_path_factory) -> Path:
    """A tiny VideoMAE (the full model's code paths) with seeded random weights, saved as
    save_pretrained does: its config.json gives the architecture. Weights drawn wide
    (initializer_range 1) so the answers follow the views, and 10 classes, so a top-5 means
    something (std 0.02 gives near-uniform output that any view fault leaves in place)."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("videomae") / "ckpt"
    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, num_labels=10,
        initializer_range=1.0)
    transformers.VideoMAEForVideoClassification(config).save_pretrained(path)
    return path


def tiny_videomae_args(path: Path) -> list[str]:
    return ["data=toy", "model=videomae_base_k400", "protocol=videomae_processor",
            f"model.weights={path}",
            "model.num_classes=10", "model.input.num_frames=4", "model.input.side_size=32",
            "model.input.crop_size=32", "model.builder.preprocessor.shortest_edge=32",
            "model.builder.preprocessor.crop_size=[32,32]", "views.clips=2", "precision=fp32",
            "device=cpu", "bench.matmul_size=256", "bench.rss_videos=0",
            "bench.compare_fuse=false", "bench.transformers=[]"]


def test_bench_transformers_row_agrees_with_the_card_pipeline(tiny_videomae, tmp_path):
    """model=videomae_base_k400: the reference is the card's pipeline (PyAV per clip, the
    video processor, the model per view at batch 1), the harness runs VideoMAE's own protocol
    (its frames, its crops, (B, T, C, H, W) views); same weights, same videos: the same top-5
    per video, probabilities within float rounding; a row per pipeline in the table."""
    result = bench(tmp_path, "bench.videos=3", base=tiny_videomae_args(tiny_videomae))
    out = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert out["model"] == "videomae_base_k400" and out["weights"].startswith("ckpt@")
    assert out["harness"]["views_per_video"] == out["reference"]["views_per_video"] == 6
    assert out["harness"]["channels_last"] is False  # (B, T, C, H, W): as evaluate runs it
    assert out["gflops_per_view"] > 0 and out["total_speedup"] > 0
    assert out["agreement"]["top5_agree"] == 1.0 and out["agreement"]["top1_agree"] == 1.0
    assert out["agreement"]["max_abs_prob_diff"] < 1e-4
    table = pd.read_csv(tmp_path / "results" / "bench-cpu.csv")
    assert sorted(table.pipeline) == ["harness", "reference"]
    assert set(table.model) == {"videomae_base_k400"}
    assert "data_speedup" in result.stdout


def test_the_transformers_agreement_sees_a_view_fault(tiny_videomae, tmp_path):
    """Channels swapped in the harness's clips only: its top-5 leaves the card pipeline's."""
    bench(tmp_path, "bench.videos=3", "views.fault=bgr", base=tiny_videomae_args(tiny_videomae))
    agreement = json.loads((tmp_path / "out" / "bench.json").read_text())["agreement"]
    assert agreement["top5_agree"] < 1.0 and agreement["max_abs_prob_diff"] > 0.05


def test_bench_transformers_rows_follow_the_main_rows(bench_run):
    """bench.transformers: after the toy SlowFast's rows, each named transformers model as a
    bench of its own (its bench.json in a folder of the run dir, its rows in the same table),
    under its authors' protocol; same top-5 as its card pipeline, no RSS check, no fuse pair."""
    tmp, result = bench_run
    row = json.loads((tmp / "out" / "bench.json").read_text())["transformers"]["videomae_base_k400"]
    assert row["weights"].startswith("ckpt@") and row["total_speedup"] > 0
    assert row["agreement"]["top5_agree"] == 1.0 and row["agreement"]["max_abs_prob_diff"] < 1e-4
    assert row["harness"]["views_per_video"] == 6 and row["harness"]["precision"] == "fp32"
    own = json.loads((tmp / "out" / "videomae_base_k400" / "bench.json").read_text())
    assert own["rss_check"] is None and "harness_unfused" not in own
    assert own["harness"]["videos"] == 5 and own["reference"]["videos"] == 2
    table = pd.read_csv(tmp / "results" / "bench-cpu.csv")
    assert sorted(table[table.model == "videomae_base_k400"].pipeline) == ["harness", "reference"]
    assert "videomae_base_k400: card pipeline" in result.stdout


@pytest.mark.slow
def test_bench_row_against_mmaction2_s_own_loop_counts_a_2d_model_s_views(tmp_path):
    """The row against mmaction2's own test loop (its Compose of the config's test_pipeline with
    decord, then ``model.test_step``) on TSM, 8 segments x TenCrop (a ResNet-18 backbone for
    speed): the same top-5 on both sides, and a 2D model's view is one crop's 8 segments, so
    both sides count 10 views a video (the harness counted clips x crops = 80 before)."""
    pytest.importorskip("mmaction", reason="mmaction2 is not installed (the mmaction extra)")
    bench(tmp_path, "model=mm_tsm_r50", "model.weights=random", "bench.videos=1",
          "+model.builder.overrides={model.backbone.depth:18,model.cls_head.in_channels:512}",
          "bench.rss_videos=0", "bench.compare_fuse=false", "bench.transformers=[]",
          "precision=fp32", "device=cpu", "bench.matmul_size=256", base=[])
    result = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert result["reference"]["pipeline"] == "reference (own loop)"
    assert result["reference"]["views_per_video"] == result["harness"]["views_per_video"] == 10
    assert result["agreement"]["top5_same"] == 1.0
    assert result["agreement"]["max_abs_prob_diff"] < 1e-5
    rows = pd.read_csv(tmp_path / "results" / "bench-cpu.csv")
    assert set(rows.pipeline) == {"reference (mmaction2)", "harness"}
