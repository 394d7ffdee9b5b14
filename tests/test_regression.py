"""The regression check: passes with the committed toy model, fails when the pipeline breaks."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.run.settings import SettingsError, check_settings
from benchmark.run.models import build_model
from benchmark.regression import main
from benchmark.run.regression import TOLERANCE, answers, compare, compare_videos, merge_overrides
from benchmark.frameworks.views import FAULTS

from conftest import compose_eval

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "results" / "regression" / "baseline.json"


def regression(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.regression", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def moved(stdout: str) -> list[str]:
    """The checks and videos listed under REGRESSION (the diff a failing run prints)."""
    assert "REGRESSION" in stdout, stdout
    lines = stdout.split("REGRESSION", 1)[1].splitlines()
    return [line.split("|")[1].strip() for line in lines
            if line.startswith("|") and not line.startswith(("| check ", "| video ", "|:"))]


def named_videos(stdout: str, kind: str = "that moved") -> list[str]:
    """The videos a failing run names on its line ``videos <kind> (n): a, b``."""
    line = next(line for line in stdout.splitlines() if line.startswith(f"videos {kind} ("))
    return [] if line.endswith(": none") else line.split(": ", 1)[1].split(", ")


def test_the_committed_baseline_shows_that_the_views_matter():
    baseline = json.loads(BASELINE.read_text())
    accuracy, single = baseline["accuracy"], baseline["single_view"]
    assert (accuracy["views"], single["views"]) == ("10x3", "1x1")
    assert accuracy["dataset"] == "toy" and accuracy["videos_failed"] == 0
    assert accuracy["top1"] >= 0.9 and accuracy["top1"] - single["top1"] >= 0.15
    assert len(accuracy["per_class"]) == 8
    # Each video's answer, and the protocol pinned (another clip formula is a change to see).
    assert len(baseline["videos"]) == accuracy["videos"] == 48
    assert sum(v["top1"] == v["label"] for v in baseline["videos"].values()) == 48 * accuracy["top1"]
    assert all(0 < v["margin"] <= v["p_top1"] <= 1 for v in baseline["videos"].values())
    assert "protocol=zoo" in baseline["overrides"]
    # The bytes it was measured on: the 48 videos, the CSV and the class names.
    assert len(baseline["generated_set"]) == 48 + 2 and "validate.csv" in baseline["generated_set"]
    assert baseline["tolerance"]["near_tie_margin"] == 2 * baseline["tolerance"]["top1_probability"]
    assert set(baseline["cost"]) == {"slowfast_r50", "slowfast_r101"}
    # The checkpoint is committed with the recipe that made it, and is the one measured.
    weights = REPO / dict(o.split("=", 1) for o in baseline["overrides"])["model.weights"]
    recipe = json.loads(weights.with_suffix(".json").read_text())
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert recipe["sha256"] == sha and accuracy["weights"] == f"{weights.name}@{sha[:8]}"
    assert weights.stat().st_size < 5e6 and recipe["config"]["seed"] is not None


# The cost part builds slowfast_r50 and r101 full size: make test-slow (and CI's make regression).
@pytest.mark.parametrize("cost", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_the_check_passes_on_the_committed_model(tmp_path, accuracy_baseline, cost):
    baseline = [] if cost else ["--baseline", str(accuracy_baseline)]
    result = regression(*baseline, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "regression check passed" in result.stdout and "the answers of 48 videos" in result.stdout
    costs = ("slowfast_r50 gflops", "slowfast_r101 params")
    for check in ("top1", "class growing", *(costs if cost else ())):
        assert f"| {check} " in result.stdout
    assert cost or not any(f"| {check} " in result.stdout for check in costs)


@pytest.fixture(scope="module")
def accuracy_baseline(tmp_path_factory) -> Path:
    """The committed baseline without its cost part (the faults change accuracy only)."""
    path = tmp_path_factory.mktemp("baseline") / "accuracy.json"
    path.write_text(json.dumps({**json.loads(BASELINE.read_text()), "cost": {}}))
    return path


# The command's main() in this process (its exit status is main's return value, as the test
# above shows through the real CLI); the evaluation inside is still the real entry point.
# make test: one temporal and one colour fault (each a full 48-video check); what every fault
# does to the views: tests/test_views.py::test_each_fault_breaks_the_views_it_names (make test);
# the other two checks: make test-slow.
QUICK_FAULTS = ("clips_from_start", "bgr")


@pytest.mark.parametrize("fault", [f if f in QUICK_FAULTS else pytest.param(f, marks=pytest.mark.slow)
                                   for f in FAULTS])
def test_a_broken_pipeline_fails_the_check(accuracy_baseline, tmp_path, capsys, monkeypatch,
                                           fault):
    monkeypatch.chdir(REPO)  # the baseline names the checkpoint relative to the repository
    status = main(["--baseline", str(accuracy_baseline), "--run-dir", str(tmp_path / "run"),
                   f"views.fault={fault}"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "top1" in moved(out)
    assert len(named_videos(out, "whose top-1 class changed")) >= 5
    # A broken run is labelled as such and never takes a real run's table row.
    table = pd.read_csv(tmp_path / "run" / "results" / "evaluations.csv")
    assert table.views.tolist() == [f"10x3 fault={fault}"]


def test_another_protocol_fails_the_check_naming_the_videos(accuracy_baseline, tmp_path, capsys,
                                                             monkeypatch):
    """pytorchvideo 0.1.5's clip formula instead of the zoo's changes no answer of 48 (the
    aggregates all hold) but moves most videos' probabilities: only the per-video check sees it."""
    monkeypatch.chdir(REPO)
    status = main(["--baseline", str(accuracy_baseline), "--run-dir", str(tmp_path / "run"),
                   "protocol=pytorchvideo"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert named_videos(out, "whose top-1 class changed") == []
    assert "REGRESSION: 0 of 12 values" in out  # videos, top-1, top-5, mean, 8 classes: all hold
    changed = named_videos(out)
    baseline = json.loads(accuracy_baseline.read_text())["videos"]
    assert len(changed) >= 20 and set(changed) <= set(baseline)
    assert all(f"| {video} " in out for video in changed)


def test_a_generated_set_of_other_bytes_stops_the_check_before_evaluating(
        accuracy_baseline, tmp_path, capsys, monkeypatch):
    """Another generator's set would move the answers for the data's sake: one line of its own
    (exit 2), never a model regression, and no evaluation run."""
    monkeypatch.chdir(REPO)
    baseline = json.loads(accuracy_baseline.read_text())
    files = dict(baseline["generated_set"])
    changed = sorted(files)[:4]
    files.update({name: "0" * 64 for name in changed})
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({**baseline, "generated_set": files}))
    status = main(["--baseline", str(path), "--run-dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: the generated set differs from the baseline's (4 files: "
                          f"{changed[0]}, {changed[1]}, {changed[2]}, ...)")
    assert "REGRESSION" not in out and not (tmp_path / "run").exists()


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
    assert len(recorded["videos"]) == 8 and "protocol=zoo" in recorded["overrides"]
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


def test_each_videos_answer_may_change_only_as_a_near_tie():
    probs = {"a": {"up": 0.6, "down": 0.3, "left": 0.1},        # margin 0.3
             "b": {"up": 0.40005, "down": 0.39995, "left": 0.2},  # margin 1e-4: a near-tie
             "c": {"up": 0.5, "down": 0.25, "left": 0.25}}
    baseline = answers(probs, {"a": "up", "b": "down", "c": "up"})
    assert baseline["b"] == {"label": "down", "top1": "up", "p_top1": 0.40005, "margin": 0.0001}
    assert (compare_videos(baseline, probs, TOLERANCE).moved == "").all()
    now = {"a": {"up": 0.45, "down": 0.46, "left": 0.09},      # flips: moved
           "b": {"up": 0.39999, "down": 0.40001, "left": 0.2},  # flips within the noise: ok
           "c": {"up": 0.50002, "down": 0.24999, "left": 0.24999}}
    table = compare_videos(baseline, now, TOLERANCE).set_index("video")
    assert table.moved.to_dict() == {
        "a": "top-1 changed (margin 0.300000 >= 0.0002); p moved beyond 0.0001", "b": "", "c": ""}
    # The same class with its probability moved beyond the tolerance; a video gone; a new one.
    now = {"a": probs["a"], "c": {"up": 0.5002, "down": 0.2499, "left": 0.2499},
           "d": probs["a"]}
    table = compare_videos(baseline, now, TOLERANCE).set_index("video")
    assert table.moved.to_dict() == {"a": "", "b": "not evaluated now",
                                     "c": "p moved beyond 0.0001", "d": "not in the baseline"}


def test_a_baseline_without_answers_per_video_is_refused(tmp_path, capsys):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(BASELINE.read_text()).items()
                                if k != "videos"}))
    assert main(["--baseline", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "holds no per-video answers" in capsys.readouterr().err


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
