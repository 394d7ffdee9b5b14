"""The regression check: passes with the committed toy model, fails when the pipeline breaks."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.run.evaluate import SettingsError, check_settings
from benchmark.run.models import build_model
from benchmark.regression import main
from benchmark.run.regression import TOLERANCE, compare, merge_overrides
from benchmark.frameworks.views import FAULTS

from conftest import compose_eval

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "results" / "regression" / "baseline.json"


def regression(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.regression", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def moved(stdout: str) -> list[str]:
    """The checks listed under REGRESSION (the diff a failing run prints)."""
    assert "REGRESSION" in stdout, stdout
    lines = stdout.split("REGRESSION", 1)[1].splitlines()
    return [line.split("|")[1].strip() for line in lines[3:] if line.startswith("|")]


def test_the_committed_baseline_shows_that_the_views_matter():
    baseline = json.loads(BASELINE.read_text())
    accuracy, single = baseline["accuracy"], baseline["single_view"]
    assert (accuracy["views"], single["views"]) == ("10x3", "1x1")
    assert accuracy["dataset"] == "toy" and accuracy["videos_failed"] == 0
    assert accuracy["top1"] >= 0.9 and accuracy["top1"] - single["top1"] >= 0.15
    assert len(accuracy["per_class"]) == 8
    assert set(baseline["cost"]) == {"slowfast_r50", "slowfast_r101"}
    # The checkpoint is committed with the recipe that made it, and is the one measured.
    weights = REPO / dict(o.split("=", 1) for o in baseline["overrides"])["model.weights"]
    recipe = json.loads(weights.with_suffix(".json").read_text())
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert recipe["sha256"] == sha and accuracy["weights"] == f"{weights.name}@{sha[:8]}"
    assert weights.stat().st_size < 5e6 and recipe["config"]["seed"] is not None


def test_the_check_passes_on_the_committed_model(tmp_path):
    result = regression("--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "regression check passed" in result.stdout
    for check in ("top1", "class growing", "slowfast_r50 gflops", "slowfast_r101 params"):
        assert f"| {check} " in result.stdout


@pytest.fixture(scope="module")
def accuracy_baseline(tmp_path_factory) -> Path:
    """The committed baseline without its cost part (the faults change accuracy only)."""
    path = tmp_path_factory.mktemp("baseline") / "accuracy.json"
    path.write_text(json.dumps({**json.loads(BASELINE.read_text()), "cost": {}}))
    return path


# The command's main() in this process (its exit status is main's return value, as the test
# above shows through the real CLI); the evaluation inside is still the real entry point.
@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_pipeline_fails_the_check(accuracy_baseline, tmp_path, capsys, monkeypatch,
                                           fault):
    monkeypatch.chdir(REPO)  # the baseline names the checkpoint relative to the repository
    status = main(["--baseline", str(accuracy_baseline), "--run-dir", str(tmp_path / "run"),
                   f"views.fault={fault}"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "top1" in moved(out)
    # A broken run is labelled as such and never takes a real run's table row.
    table = pd.read_csv(tmp_path / "run" / "results" / "evaluations.csv")
    assert table.views.tolist() == [f"10x3 fault={fault}"]


def test_an_unknown_fault_is_refused_by_name():
    with pytest.raises(SettingsError, match="views.fault: must be null or one of reverse_frames"):
        check_settings(compose_eval("views.fault=upside_down"))


def test_recording_writes_a_baseline(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    path = tmp_path / "baseline.json"
    status = main(["--record", "--cost-models=", "--baseline", str(path),
                   "--run-dir", str(tmp_path / "run"), "data.limit=8"])
    assert status == 0, capsys.readouterr()
    recorded = json.loads(path.read_text())
    assert recorded["accuracy"]["videos"] == 8 and recorded["cost"] == {}
    assert recorded["overrides"][-1] == "data.limit=8" and recorded["tolerance"] == TOLERANCE
    assert recorded["single_view"]["views"] == "1x1"
    assert f"wrote {path}" in capsys.readouterr().out


def test_compare_lists_what_moved_beyond_its_tolerance():
    accuracy = {"videos": 48, "top1": 0.95, "top5": 1.0, "mean_class_accuracy": 0.95,
                "per_class": {"growing": 1.0, "shrinking": 0.9}}
    baseline = {"accuracy": accuracy, "cost": {"slowfast_r50": {"gflops": 65.7, "params": 100}}}
    now = {"accuracy": {**accuracy, "top1": 0.93, "per_class": {"growing": 0.5}},
           "cost": {"slowfast_r50": {"gflops": 65.7, "params": 101}}}
    table = compare(baseline, now, TOLERANCE)
    assert table[~table.ok].check.tolist() == ["class growing", "class shrinking",
                                               "slowfast_r50 params"]
    assert compare(baseline, baseline, TOLERANCE).ok.all()


def test_extra_overrides_replace_the_baselines_own():
    assert merge_overrides(["data=toy", "views=10x3", "device=cpu"], ["views=1x1", "+x=1"]) == [
        "data=toy", "device=cpu", "views=1x1", "+x=1"]


def test_the_training_script_writes_a_loadable_checkpoint_and_its_recipe(tmp_path):
    """A one-step smoke run of `make toy-model`'s script (the real training takes minutes)."""
    out = tmp_path / "toy.pt"
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.toy", f"cache_dir={tmp_path / 'cache'}",
         "data.synthetic.videos_per_class=1", "data.synthetic.seconds=2.0", "train.epochs=1",
         f"out={out}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    recipe = json.loads(out.with_suffix(".json").read_text())
    assert recipe["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert recipe["config"]["seed"] == 0 and len(recipe["history"]) == 1
    assert "train.epochs=1" in recipe["command"]
    cfg = compose_eval("model=slowfast_toy", f"model.weights={out}")
    assert build_model(cfg.model).weights == f"toy.pt@{recipe['sha256'][:8]}"
