"""What a run reports is what it computed: no empty 'ok' runs, no NaN counted as a miss, no
class ids that are not the model's."""

import pandas as pd
import pytest
import torch

from benchmark.run.record import NothingEvaluated, StrictFailure, record_prediction
from benchmark.data.manifest import Manifest, ManifestError, Video, check_class_count
from benchmark.run.store import RunStore

from conftest import run_eval


def planted(tiny_checkpoint, folder, value: float):
    """The tiny checkpoint with its first conv's weights all ``value`` (signs kept)."""
    state = torch.load(tiny_checkpoint, weights_only=True)
    first = next(k for k in state["model_state"] if k.endswith("conv.weight"))
    state["model_state"][first] = state["model_state"][first].sign() * value
    path = folder / "planted.pyth"
    torch.save(state, path)
    return path, first


@pytest.fixture(scope="module")
def nan_checkpoint(tiny_checkpoint, tmp_path_factory):
    """(file, parameter): the first conv's weights NaN."""
    return planted(tiny_checkpoint, tmp_path_factory.mktemp("nan"), float("nan"))


@pytest.fixture(scope="module")
def overflow_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The first conv's weights 1e38, finite: the activations after it overflow to inf, and
    every output is NaN (as an fp16 overflow would make it)."""
    return planted(tiny_checkpoint, tmp_path_factory.mktemp("overflow"), 1e38)[0]


def planted_overrides(kinetics_run, checkpoint, out):
    """The kinetics run's settings (the defaults: eval.fuse=auto) with ``checkpoint``."""
    _, overrides, _ = kinetics_run
    keep = [o for o in overrides if not o.startswith(("model.weights=", "results_dir=",
                                                      "hydra.run.dir=", "views.clips="))]
    return [*keep, f"model.weights={checkpoint}", "views.clips=1", "cost.flops=false",
            "cost.throughput_iters=0", f"results_dir={out / 'results'}"]


def test_a_checkpoint_with_nan_weights_is_refused_under_the_defaults(kinetics_run,
                                                                     nan_checkpoint, tmp_path):
    """Refused before any work, naming the file and the parameter (eval.fuse=auto's fused
    conv + ReLU would have turned the NaN into 0 and counted finite, wrong answers)."""
    path, parameter = nan_checkpoint
    result = run_eval(*planted_overrides(kinetics_run, path, tmp_path),
                      f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {path}: refused: non-finite weights (NaN or inf) in {parameter}")
    assert not (tmp_path / "run" / "predictions.parquet").exists()
    assert not (tmp_path / "results" / "evaluations.csv").exists()


def test_a_run_with_no_video_evaluated_is_an_error(kinetics_run, overflow_checkpoint, tmp_path):
    """Every video NaN (and one not on disk), under the defaults: non-zero with one line, the
    reasons in failures.csv, no metrics.json and no table row; in a sweep the job is failed."""
    result = run_eval(*planted_overrides(kinetics_run, overflow_checkpoint, tmp_path),
                      f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no video could be evaluated: 5 of 5 listed failed"), last
    failures = pd.read_csv(tmp_path / "run" / "failures.csv").set_index("video_id").reason
    assert failures.pop("notthere_000000_000010").startswith("file not found")
    assert len(failures) == 4 and all(r.startswith("non-finite probabilities") for r in failures)
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "results" / "evaluations.csv").exists()

    sweep = run_eval("-m", *planted_overrides(kinetics_run, overflow_checkpoint, tmp_path),
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    assert sweep.returncode != 0
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table.status.tolist() == ["failed"]
    assert table.reason[0].startswith("no video could be evaluated")
    assert not (tmp_path / "results" / "evaluations.csv").exists()


def test_a_mistyped_data_root_stops_before_any_work(kinetics_run, tmp_path):
    _, overrides, _ = kinetics_run
    keep = [o for o in overrides if not o.startswith(("data.root=", "hydra.run.dir="))]
    result = run_eval(*keep, f"data.root={tmp_path / 'typo'}", f"hydra.run.dir={tmp_path / 'r'}",
                      check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: data.root: {tmp_path / 'typo'} is not a folder")
    assert not (tmp_path / "r" / "parts").exists()


def test_nan_or_inf_probabilities_are_a_failure_with_the_reason(tmp_path):
    store = RunStore(tmp_path, {})
    video = Video("v1", None, 1, "b")
    assert record_prediction(store, video, torch.tensor([0.5, 0.5, 0.0]), strict=False)
    bad = torch.tensor([float("nan"), float("inf"), 0.0])
    assert not record_prediction(store, Video("v2", None, 1, "b"), bad, strict=False)
    assert [r["video_id"] for r in store.predictions] == ["v1"]
    assert store.failures[0]["reason"].startswith("non-finite probabilities: 1 NaN and 1 inf of 3")
    with pytest.raises(StrictFailure, match="non-finite"):
        record_prediction(store, Video("v3", None, 1, "b"), bad, strict=True)
    with pytest.raises(NothingEvaluated):
        from benchmark.run.record import check_some_evaluated

        check_some_evaluated(RunStore(tmp_path / "empty", {}), 0, [])


def manifest(names, source, labels) -> Manifest:
    return Manifest("kinetics400", [Video(f"v{i}", None, l, "") for i, l in enumerate(labels)],
                    list(names), source)


def test_a_class_name_list_without_the_models_classes_is_refused():
    model = 400  # the model's classes
    subset = manifest(["bowling", "cooking egg"], "sorted CSV labels", [0, 1])
    with pytest.raises(ManifestError, match=r"data.class_names: 2 class names \(sorted CSV labels\) "
                                            r"but the model has 400 classes"):
        check_class_count(subset, model, generated=False)
    check_class_count(manifest([str(i) for i in range(400)], "names.json", [3]), model, False)
    integers = manifest(["0", "1", "2"], "integer labels", [2])  # the ids are the model's
    check_class_count(integers, model, False)
    assert len(integers.class_names) == 400
    check_class_count(subset, model, generated=True)  # the built-in sample: its own classes
    with pytest.raises(ManifestError, match="labels go beyond the model's 2 classes"):
        check_class_count(manifest(["a", "b", "c"], "x", [2]), 2, True)
