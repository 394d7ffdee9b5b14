"""End to end: ``python -m benchmark.bench`` with a tiny model on small generated videos."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

# The regression check's trained toy SlowFast on the toy set's videos (generated into the cache
# on first use, shared with the check): its answers follow the views (a view fault flips them,
# below), so the reference and the harness agreeing means something. A random tiny model's
# near-uniform output agreed even with channels swapped or frames reversed (max difference
# 1.7e-5, top-1 agreement 1.0).
TOY = ["data=toy", "model=slowfast_toy",
       f"model.weights={REPO / 'results' / 'regression' / 'toy_slowfast.pt'}",
       "views.clips=2", "precision=fp32", "device=cpu", "bench.matmul_size=256"]


def bench(tmp: Path, *overrides: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.bench", *TOY, *overrides,
         f"results_dir={tmp / 'results'}", f"hydra.run.dir={tmp / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    return tmp, bench(tmp, "bench.videos=2", "bench.harness_videos=5", "bench.rss_videos=3")


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
