"""End to end: the real entry point on generated videos with a tiny SlowFast."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.run.models import build_model
from benchmark.frameworks.pytorchvideo.reference import reference_views

# kinetics_run (a finished run of the real CLI) is a session fixture in conftest, shared with
# test_report.py; REPO and run_eval stay importable from here.
from conftest import REPO, TINY_SPEC, compose_eval, run_eval  # noqa: F401


def test_run_writes_metrics_predictions_failures_and_table(kinetics_run, action_set):
    tmp, _, result = kinetics_run
    metrics = json.loads((tmp / "out" / "metrics.json").read_text())
    assert metrics["videos_listed"] == 5 and metrics["videos_evaluated"] == 4
    assert metrics["videos_failed"] == 1
    assert (metrics["model"], metrics["dataset"], metrics["device"], metrics["precision"]) == (
        "slowfast_tiny", "kinetics400", "cpu", "fp32")
    assert (metrics["clips"], metrics["crops"]) == (4, 3)
    assert metrics["weights"].startswith("tiny.pyth@")
    for key in ("top1", "top5", "mean_class_accuracy"):
        assert 0 <= metrics[key] <= 1
    assert metrics["gflops"] > 0 and metrics["params_m"] > 0
    assert metrics["views_per_s"] > 0 and metrics["videos_per_s"] > 0
    assert set(metrics["versions"]) >= {"torch", "pytorchvideo", "av", "benchmark_source"}
    # What was evaluated and how (the table key has them): the CSV's hash, limit, TF32.
    assert len(metrics["csv_sha256"]) == 64 and metrics["limit"] is None
    assert metrics["tf32"] is False and "protocol" in metrics

    predictions = pd.read_parquet(tmp / "out" / "predictions.parquet")
    assert len(predictions) == 4 and predictions.video_id.is_unique
    for row in predictions.itertuples():
        probs = torch.tensor(row.probs)
        assert probs.shape == (4,) and abs(probs.sum().item() - 1) < 1e-5
        assert list(row.top5) == probs.topk(4).indices.tolist()
    # top-1 in metrics.json is the share of argmax hits in predictions.parquet
    hits = [int(list(r.top5)[0] == r.label) for r in predictions.itertuples()]
    assert metrics["top1"] == pytest.approx(sum(hits) / 4)

    failures = pd.read_csv(tmp / "out" / "failures.csv")
    assert failures.video_id.tolist() == ["notthere_000000_000010"]
    assert "file not found" in failures.reason[0]

    table = pd.read_csv(tmp / "results" / "evaluations.csv")
    assert len(table) == 1 and table.views[0] == "4x3" and table.videos[0] == "4/5"
    assert table.protocol[0] == metrics["protocol"] == "pytorchvideo"
    assert table.top1[0] == pytest.approx(round(100 * metrics["top1"], 2))
    assert "| slowfast_tiny" in (tmp / "results" / "evaluations.md").read_text()
    assert "slowfast_tiny" in result.stdout  # the table is printed


def test_predictions_equal_the_reference_pipeline(kinetics_run, tiny_checkpoint):
    """Per-video probabilities = mean softmax of the model over the reference pipeline's views,
    for every video, though the run's view batches (5 views) span videos (12 views each)."""
    tmp, overrides, _ = kinetics_run
    assert "eval.batch_views=5" in overrides
    predictions = pd.read_parquet(tmp / "out" / "predictions.parquet")
    assert json.loads((tmp / "out" / "metrics.json").read_text())["batch_views"] == 5
    cfg = compose_eval("model=slowfast_tiny", "model.num_classes=4",
                       f"model.weights={tiny_checkpoint}")
    model = build_model(cfg.model).module
    assert len(predictions) == 4
    for row in predictions.itertuples():
        with torch.inference_mode():
            probs = torch.stack([model(view).softmax(-1)[0]
                                 for view in reference_views(row.path, TINY_SPEC, 4, 3)]).mean(0)
        torch.testing.assert_close(torch.tensor(row.probs, dtype=torch.float32), probs,
                                   atol=1e-5, rtol=0)


def test_rerun_replaces_its_table_row(kinetics_run):
    tmp, overrides, _ = kinetics_run
    run_eval(*overrides[:-1], f"hydra.run.dir={tmp / 'out2'}", "cost.flops=false",
             "cost.throughput_iters=0")
    table = pd.read_csv(tmp / "results" / "evaluations.csv")
    assert len(table) == 1 and pd.isna(table.gflops[0])


@pytest.mark.parametrize("override, message", [
    ("device=cuda", "error: device=cuda: CUDA is not available"),
    ("views.crops=4", "error: views.crops: must be 1, 2 or 3"),
    ("data.limit=-1", "error: data.limit: must be >= 0"),
    ("eval.batch_views=many", "error: eval.batch_views: must be auto or >= 1, got many"),
    ("data.workers=-2", "error: data.workers: must be auto or >= 0, got -2"),
    ("model=nonsense", "error: model=nonsense: no conf/model/nonsense.yaml; one of c2d_r50,"),
    ("protocol=nonsense", "error: protocol=nonsense: no conf/protocol/nonsense.yaml"),
    ("protocol.head=mean", "error: protocol.head: must be one of pooled_logits, softmax_per_location"),
    ("protocol=videomae", "error: protocol: videomae is transformers's but the model slowfast_tiny is "
                          "pytorchvideo's"),
])
def test_bad_settings_give_one_clear_line(tmp_path, override, message):
    result = run_eval("model=slowfast_tiny", "data=kinetics400", f"data.csv={tmp_path}/x.csv",
                      override, f"hydra.run.dir={tmp_path}", f"results_dir={tmp_path}", check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_sample_set_runs_offline_and_writes_nothing_outside_outputs(tmp_path):
    """The default data set needs nothing but the package: generated on first use, then reused.
    A run on it, as a new user tries the harness, writes nothing but outputs/ where it runs:
    its table goes to outputs/results/ (results_dir=auto), never into the committed results/."""
    clone = tmp_path / "clone"
    clone.mkdir()
    overrides = ["model=slowfast_tiny", "views=1x1", "cost.flops=false", "cost.throughput_iters=0",
                 f"cache_dir={tmp_path / 'cache'}"]
    result = subprocess.run([sys.executable, "-m", "benchmark.eval", *overrides], cwd=clone,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in clone.iterdir()] == ["outputs"]
    (run,) = [p.parent for p in (clone / "outputs").glob("*/*/metrics.json")]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == "sample" and metrics["videos_failed"] == 0
    assert metrics["protocol"] == "zoo"  # the protocol of the zoo's published numbers
    assert metrics["videos_evaluated"] == metrics["videos_listed"] >= 2
    assert len(list((tmp_path / "cache" / "sample").glob("validate-*/validate.csv"))) == 1
    table = pd.read_csv(clone / "outputs" / "results" / "evaluations.csv")
    assert table.dataset.tolist() == ["sample"]
    assert f"table: {clone / 'outputs' / 'results' / 'evaluations.md'}" in result.stdout
    assert "never into results/" in result.stdout  # the user is told where it went


def test_results_dir_auto_is_results_for_real_data_and_an_explicit_one_wins(tmp_path):
    from benchmark.results.tables import tables_dir

    assert tables_dir(compose_eval()) == Path.cwd() / "outputs" / "results"  # data=sample
    assert tables_dir(compose_eval("data=toy")) == Path.cwd() / "outputs" / "results"
    assert tables_dir(compose_eval("data=kinetics400")) == Path.cwd() / "results"
    assert tables_dir(compose_eval(f"results_dir={tmp_path}")) == tmp_path
