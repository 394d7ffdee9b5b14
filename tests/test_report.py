"""Reports: tables and plots from finished runs, the report CLI, the FLOPs table, the model zoo."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
import matplotlib.image
import pandas as pd
import pytest
import torch

from benchmark import flops
from benchmark.data.decode import decode_video
from benchmark.run.settings import SettingsError, check_settings
from benchmark.run.models import build_model
from benchmark.report import main
from benchmark.results.tables import (EVAL_COLUMNS, EVAL_KEY, EVAL_NOTE, EVAL_SHOWN, FLOPS_SHOWN,
                                      MAX_SHOWN_COLUMNS, eval_row, report_run, to_markdown,
                                      upsert_table, zoo_published)
from benchmark import frameworks
from benchmark.frameworks.views import make_views, sample_clips

from conftest import REPO, compose_eval

REPORT_FILES = ["report.md", "per_class.csv", "per_class.md", "confusions.csv", "confusions.md",
                "accuracy_vs_gflops.png", "views_per_s.png"]
PUBLISHED = {"top1": 76.94, "top5": 92.69, "gflops": 65.71, "params_m": 34.57}


def metrics_json(**changes) -> dict:
    metrics = {
        "model": "slowfast_r50", "weights": "official", "dataset": "kinetics400", "device": "cpu",
        "precision": "fp32", "protocol": "zoo", "clips": 10, "crops": 3, "videos_listed": 8,
        "videos_evaluated": 8,
        "videos_failed": 0, "top1": 0.5, "top5": 0.875, "mean_class_accuracy": 0.5,
        "class_names": "", "gflops": 65.7084, "params_m": 34.566488, "views_per_s": 0.41,
        "videos_per_s": 0.0123, "versions": {"torch": "2", "pytorchvideo": "0.1.5", "av": "18"},
        "finished": "2025-01-01T00:00:00+00:00",
    }
    return {**metrics, **changes}


def squeezed(markdown: str) -> str:
    """A Markdown table without the padding before each ``|``: ``| 75.0 |``."""
    return re.sub(r" +\|", " |", markdown)


def is_png(path: Path) -> bool:
    image = matplotlib.image.imread(path)
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 100


@pytest.fixture
def hand_run(tmp_path) -> Path:
    """A finished run made by hand: 8 videos of 3 named classes, predictions chosen so the
    per-class and confusion tables are known."""
    run = tmp_path / "run"
    run.mkdir()
    names = tmp_path / "names.json"
    names.write_text(json.dumps({'"abseiling"': 0, '"bowling"': 1, '"cooking egg"': 2}))
    # (label, top-1 prediction): abseiling 2/3 right, bowling 0/2 (both -> cooking egg),
    # cooking egg 2/3 right (one -> abseiling).
    pairs = [(0, 0), (0, 0), (0, 1), (1, 2), (1, 2), (2, 2), (2, 2), (2, 0)]
    rows = []
    for i, (label, predicted) in enumerate(pairs):
        probs = [0.2, 0.2, 0.2]
        probs[predicted] = 0.6
        rows.append({"video_id": f"v{i}", "path": f"/v{i}.mp4", "label": label,
                     "top5": [predicted], "probs": probs})
    pd.DataFrame(rows).to_parquet(run / "predictions.parquet", index=False)
    (run / "metrics.json").write_text(json.dumps(metrics_json(class_names=str(names))))
    return run


def test_eval_row_puts_published_and_delta_beside_measured():
    row = eval_row(metrics_json(), PUBLISHED, {"top1": (0.4, 0.6), "top5": (0.75, 1.0)})
    assert (row["top1"], row["top1_ci95"], row["published_top1"], row["top1_delta"]) == (
        50.0, 10.0, 76.94, -26.94)
    assert (row["top5"], row["top5_ci95"], row["top5_delta"]) == (87.5, 12.5, -5.19)
    assert (row["gflops"], row["gflops_delta"], row["params_m"], row["params_delta"]) == (
        65.71, 0.0, 34.57, 0.0)
    bare = eval_row(metrics_json(top1=None, top5=None, gflops=None), {})
    assert bare["top1_ci95"] is None and bare["top1_delta"] is None and bare["gflops_delta"] is None
    markdown = to_markdown(pd.DataFrame([row]), shown=EVAL_SHOWN)
    assert "| 50.0 +-10.0 (76.94, -26.94) " in markdown and "top1_ci95" not in markdown
    assert "| 87.5 +-12.5 (92.69, -5.19) " in markdown and "| cpu fp32 " in markdown
    # No interval, no published number: the bare value; a positive delta carries its sign.
    bare_md = to_markdown(pd.DataFrame([{**row, "top1": None, "top5_ci95": None,
                                         "published_top5": 1, "top5_delta": 1.5}]),
                          shown=EVAL_SHOWN)
    assert "| 87.5 (1, +1.5) " in bare_md and "+-" not in bare_md and "76.94" not in bare_md


# The evaluations table's key before the data copy and how the model ran joined it.
OLD_EVAL_KEY = ["model", "weights", "dataset", "data", "limit", "protocol", "device", "precision",
                "tf32", "views"]


def test_upsert_keeps_one_row_per_key_and_old_tables_gain_the_new_columns(tmp_path):
    stem = tmp_path / "evaluations"
    old = eval_row(metrics_json(), PUBLISHED)
    pd.DataFrame([{k: old[k] for k in EVAL_KEY + ["videos", "top1"]}]).to_csv(
        stem.with_suffix(".csv"), index=False)  # a table from before this report existed
    upsert_table(stem, eval_row(metrics_json(top1=0.25), PUBLISHED), EVAL_KEY, EVAL_COLUMNS,
                 shown=EVAL_SHOWN)
    upsert_table(stem, eval_row(metrics_json(precision="bf16"), PUBLISHED), EVAL_KEY,
                 EVAL_COLUMNS, shown=EVAL_SHOWN)
    table = pd.read_csv(stem.with_suffix(".csv"))
    assert list(table.columns) == EVAL_COLUMNS
    assert table.precision.tolist() == ["bf16", "fp32"] and table.top1.tolist() == [50.0, 25.0]
    assert table.top1_delta.tolist() == [-26.94, -51.94]


def test_a_table_from_before_the_new_key_columns_is_read_and_its_rows_kept(tmp_path):
    """An evaluations.csv written under the old key (no root, no data fingerprint, nothing on
    how the model ran) is read, not refused: a new run adds its own row and never replaces an
    old one, which nothing says measured the same thing."""
    from benchmark.results.tables import check_eval_table

    stem = tmp_path / "evaluations"
    old = eval_row(metrics_json(top1=0.75), PUBLISHED)
    pd.DataFrame([{k: old[k] for k in OLD_EVAL_KEY + ["videos", "top1"]}]).to_csv(
        stem.with_suffix(".csv"), index=False)
    check_eval_table(tmp_path)  # a run may start
    new = metrics_json(root="/k400/val", videos_found=8, data_fingerprint="f" * 64, fuse="none",
                       compile=False, batch_views=3, channels_last=True)
    table = upsert_table(stem, eval_row(new, PUBLISHED), EVAL_KEY, EVAL_COLUMNS, shown=EVAL_SHOWN)
    assert sorted(table.top1.tolist()) == ["50.0", "75.0"]
    assert table.set_index("top1").root.fillna("").to_dict() == {"50.0": "/k400/val", "75.0": ""}
    shown = squeezed(stem.with_suffix(".md").read_text())
    assert "| 75.0 |" in shown and "| 50.0 (76.94, -26.94) |" in shown
    assert "batch 3, channels_last, fuse none" in shown


# The copy's columns the table gained with issue 26 (split, subset, found fraction, ...).
COPY_COLUMNS = ["split", "subset", "decodable", "found_fraction", "min_found_fraction",
                "found_below_threshold", "leakage", "subset_sha256"]


def test_a_table_from_before_the_copy_columns_is_read_and_a_subset_run_is_a_row_of_its_own(tmp_path):
    """An evaluations.csv without the copy's columns is read; a run on a subset list (or another
    split) is another measurement: its own row, keyed by the list's name and hash, flagged
    FOUND TOO FEW where it found too few; the old row stays, its new columns empty."""
    stem = tmp_path / "evaluations"
    old = eval_row(metrics_json(top1=0.75), PUBLISHED)
    pd.DataFrame([{k: v for k, v in old.items() if k not in COPY_COLUMNS}]).to_csv(
        stem.with_suffix(".csv"), index=False)
    copy = {"videos_found": 7, "data_fingerprint": "f" * 64, "videos_decodable": 7,
            "subset": "copy-19761.txt", "subset_sha256": "ab" * 32, "split": None,
            "leakage": None, "found_fraction": 0.875, "min_found_fraction": 0.98,
            "found_below_threshold": True}
    table = upsert_table(stem, eval_row(metrics_json(videos_evaluated=7, **copy), PUBLISHED),
                         EVAL_KEY, EVAL_COLUMNS, shown=EVAL_SHOWN)
    assert len(table) == 2 and list(table.columns) == EVAL_COLUMNS
    rows = table.set_index("top1").fillna("")
    assert rows.loc["50.0", "subset"] == "copy-19761.txt@abababab"
    assert rows.loc["50.0", ["decodable", "found_below_threshold"]].tolist() == ["7/8", "True"]
    assert rows.loc["75.0", COPY_COLUMNS].tolist() == [""] * len(COPY_COLUMNS)
    shown = squeezed(stem.with_suffix(".md").read_text())
    assert "| **FOUND TOO FEW: 87.5% < 98%**, kinetics400, subset copy-19761.txt@abababab," in shown
    assert shown.count("FOUND TOO FEW: ") == 1  # the old row is not flagged
    # The same run on split 2 of a data set is a row of its own, not a replacement.
    table = upsert_table(stem, eval_row(metrics_json(videos_evaluated=7, **{**copy, "split": 2}),
                                        PUBLISHED), EVAL_KEY, EVAL_COLUMNS, shown=EVAL_SHOWN)
    assert sorted(table.split.fillna("").tolist()) == ["", "", "2"]


def test_a_table_from_before_the_decoder_joined_the_key_is_pyavs(tmp_path):
    """Every run decoded with PyAV before `decoder` joined the key: a PyAV rerun of an old row's
    measurement replaces it; another decoder's run is a row of its own."""
    stem = tmp_path / "evaluations"
    old = eval_row(metrics_json(top1=0.75, decoder="pyav"), PUBLISHED)
    pd.DataFrame([{k: v for k, v in old.items() if k != "decoder"}]).to_csv(
        stem.with_suffix(".csv"), index=False)
    table = upsert_table(stem, eval_row(metrics_json(decoder="pyav"), PUBLISHED), EVAL_KEY,
                         EVAL_COLUMNS, shown=EVAL_SHOWN)
    assert table.top1.tolist() == ["50.0"] and table.decoder.tolist() == ["pyav"]
    table = upsert_table(stem, eval_row(metrics_json(decoder="decord"), PUBLISHED), EVAL_KEY,
                         EVAL_COLUMNS, shown=EVAL_SHOWN)
    assert sorted(table.decoder.tolist()) == ["decord", "pyav"]


def test_published_numbers_of_another_data_set_compare_only_on_it():
    """An SSv2 model's published accuracy (published.dataset: ssv2) stands beside an SSv2 run
    (with its delta when comparable) and never beside a Kinetics-400 one."""
    ssv2 = {"dataset": "ssv2", "top1": 61.68, "top5": 86.92, "views": "1x3", "protocol": "zoo"}
    row = eval_row(metrics_json(dataset="ssv2", clips=1, crops=3), ssv2)
    assert (row["published_top1"], row["top1_delta"]) == (61.68, -11.68)
    other = eval_row(metrics_json(clips=1, crops=3), ssv2)
    assert other["published_top1"] is None and other["top1_delta"] is None
    assert "dataset kinetics400, published on ssv2" in other["no_delta_because"]


def test_report_files_from_a_hand_built_run(hand_run, tmp_path):
    results = tmp_path / "results"
    report_run(hand_run, PUBLISHED, results)
    per_class = pd.read_csv(hand_run / "per_class.csv")
    assert per_class["class"].tolist() == ["bowling", "abseiling", "cooking egg"]  # worst first
    assert per_class.top1.tolist() == [0.0, 66.67, 66.67]
    assert per_class.videos.tolist() == [2, 3, 3]
    assert per_class.most_confused_with.tolist() == ["cooking egg", "bowling", "abseiling"]
    confusions = pd.read_csv(hand_run / "confusions.csv")
    assert list(zip(confusions["true"], confusions.predicted, confusions.videos,
                    confusions.share)) == [("bowling", "cooking egg", 2, 100.0),
                                           ("abseiling", "bowling", 1, 33.33),
                                           ("cooking egg", "abseiling", 1, 33.33)]
    report = (hand_run / "report.md").read_text()
    assert "| top-1 (%)" in report and "76.94" in report and "-26.94" in report
    assert "bowling" in report and "8 evaluated of 8 listed" in report
    table = pd.read_csv(results / "evaluations.csv")
    assert len(table) == 1 and table.top1[0] == 50.0 and table.published_top1[0] == 76.94
    assert 0 < table.top1_ci95[0] <= 50  # 8 videos: a wide interval, but an interval
    shown = squeezed((results / "evaluations.md").read_text())
    assert "| 50.0 +-" in shown and "(76.94, -26.94)" in shown and "| 8/8 (100%) |" in shown
    for name in REPORT_FILES:
        assert (hand_run / name).stat().st_size > 0
    for folder in (hand_run, results):
        assert is_png(folder / "accuracy_vs_gflops.png") and is_png(folder / "views_per_s.png")


def test_evaluate_writes_the_run_report(kinetics_run):
    tmp, _, _ = kinetics_run
    for name in REPORT_FILES:
        assert (tmp / "out" / name).stat().st_size > 0, name
    per_class = pd.read_csv(tmp / "out" / "per_class.csv")
    # Class names from the run's class-name file; every evaluated video counted once.
    assert set(per_class["class"]) <= {"moving left", "moving right", "moving up", "moving down"}
    assert per_class.videos.sum() == 4
    table = pd.read_csv(tmp / "results" / "evaluations.csv")
    assert {"top1_ci95", "top1_delta", "published_top1"} <= set(table.columns)


def test_report_cli_rebuilds_runs_and_sweeps_without_evaluating(kinetics_run, tmp_path):
    tmp, _, _ = kinetics_run
    sweep = tmp_path / "sweep"
    for i in range(2):
        run = sweep / str(i)
        shutil.copytree(tmp / "out", run)
        for name in REPORT_FILES:
            (run / name).unlink()
    # The second run in another precision (its own table row), the first with published
    # numbers in its saved config: the rebuilt row puts them beside the measured ones.
    metrics = json.loads((sweep / "1" / "metrics.json").read_text())
    (sweep / "1" / "metrics.json").write_text(json.dumps({**metrics, "precision": "bf16"}))
    # The first as if official weights on the whole list in the published views: comparable.
    (sweep / "0" / "metrics.json").write_text(json.dumps({**metrics, "weights": "official"}))
    saved = sweep / "0" / ".hydra" / "config.yaml"
    cfg = saved.read_text().replace(
        "published: {}", "published:\n    top1: 50.0\n    gflops: 0.01\n    views: 4x3\n"
        "    protocol: pytorchvideo")  # the fixture run's protocol
    # 4 of 5 listed videos evaluated: comparable only under the run's own lower threshold.
    assert "min_coverage: 0.95" in cfg
    saved.write_text(cfg.replace("min_coverage: 0.95", "min_coverage: 0.8"))
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}

    result = subprocess.run([sys.executable, "-m", "benchmark.report", str(sweep),
                             "--results-dir", str(tmp_path / "results")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(p.read_bytes() == data for p, data in before.items())  # run files untouched
    for run in (sweep / "0", sweep / "1"):
        for name in REPORT_FILES:
            assert (run / name).stat().st_size > 0, (run, name)
    table = pd.read_csv(tmp_path / "results" / "evaluations.csv").set_index("precision")
    assert len(table) == 2 and pd.isna(table.top1_delta["bf16"])
    assert table.top1["fp32"] == pytest.approx(round(100 * metrics["top1"], 2))
    assert table.published_top1["fp32"] == 50.0
    assert table.top1_delta["fp32"] == pytest.approx(round(100 * metrics["top1"] - 50, 2))
    assert pd.isna(table.published_top1["bf16"])
    assert is_png(tmp_path / "results" / "accuracy_vs_gflops.png")
    assert "slowfast_tiny" in result.stdout


def test_report_cli_errors_name_the_folder_or_file(tmp_path, hand_run):
    with pytest.raises(SystemExit, match=f"error: {tmp_path / 'nope'}: no such folder"):
        main([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="empty: no finished run in it"):
        main([str(tmp_path / "empty")])
    # An evaluations.csv that is empty or not a table: one line, not a pandas traceback.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "evaluations.csv").write_bytes(b"")
    with pytest.raises(SystemExit) as caught:
        main([str(hand_run), "--results-dir", str(tmp_path / "bad")])
    assert str(caught.value) == (f"error: {tmp_path / 'bad' / 'evaluations.csv'}: the file is "
                                 "empty, not a table; move it away or set results_dir")
    (hand_run / "predictions.parquet").write_bytes(b"not parquet")
    with pytest.raises(SystemExit, match="predictions.parquet: cannot read the run's predictions"):
        main([str(hand_run), "--results-dir", str(tmp_path / "results")])


# ---- the model zoo --------------------------------------------------------------------------

# The pytorchvideo Kinetics-400 model configs with published numbers (torchvision's:
# tests/test_torchvision.py; the SSv2 ones, published.dataset ssv2: tests/test_datasets.py).
ZOO = [m for m in zoo_published().model
       if "framework: pytorchvideo" in (REPO / "conf" / "model" / f"{m}.yaml").read_text()
       and "dataset: ssv2" not in (REPO / "conf" / "model" / f"{m}.yaml").read_text()]


def test_zoo_has_the_pytorchvideo_kinetics_models():
    assert set(ZOO) >= {
        "slowfast_r50", "slowfast_r101", "slowfast_r50_4x16", "slowfast_16x8_r101_50_50",
        "slow_r50", "slow_r50_4x16", "c2d_r50", "i3d_r50", "csn_r101", "r2plus1d_r50", "x3d_xs",
        "x3d_s", "x3d_m", "x3d_l", "mvit_base_16x4"}


@pytest.mark.parametrize("name", ZOO)
def test_zoo_configs_compose_with_their_official_views(name):
    cfg = compose_eval(f"model={name}")
    hydra.utils.get_method(cfg.model.builder._target_)  # the builder exists in pytorchvideo
    assert set(cfg.model.published) - {"views"} == {"top1", "top5", "gflops", "params_m"}
    assert cfg.model.checkpoint_url.startswith("https://dl.fbaipublicfiles.com/pytorchvideo/")
    views = (cfg.views.clips, cfg.views.crops)
    assert views == ((5, 1) if name == "mvit_base_16x4" else (10, 3))
    assert cfg.model.published.get("views", "10x3") == f"{views[0]}x{views[1]}"  # the deltas'
    assert (cfg.model.input.alpha is None) == (not name.startswith("slowfast"))
    check_settings(cfg)
    if name == "mvit_base_16x4":  # the command line still chooses
        assert compose_eval(f"model={name}", "views=10x3").views.crops == 3


def test_unknown_model_output_is_a_settings_error():
    with pytest.raises(SettingsError, match="model.output: must be one of logits, probs"):
        check_settings(compose_eval("model=x3d_xs", "model.output=prob"))


def test_single_pathway_probability_head_model_on_real_views(videos):
    """x3d_xs takes a tensor and its hub head ends in Softmax: through the harness it takes the
    views' list and returns logits whose softmax is exactly the hub model's own output."""
    torch.manual_seed(0)
    cfg = compose_eval("model=x3d_xs", "model.weights=random")
    model = build_model(cfg.model)
    hub = hydra.utils.instantiate(cfg.model.builder).eval()
    hub.load_state_dict(model.module.state_dict())  # same names: the adaptation adds none
    clips = sample_clips(decode_video(videos["landscape"]), model.spec, 1,
                         frameworks.timing("pytorchvideo_0.1.5"))
    views = make_views(clips, model.spec, 1)
    assert len(views) == 1 and views[0].shape == (1, 3, 4, 182, 182)
    with torch.inference_mode():
        probs = model.module(list(views)).softmax(-1)
        expected = hub(views[0])
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)
    assert probs.shape == (1, 400)


def test_make_flops_matches_the_zoo_for_small_models(tmp_path):
    """`make flops` on the two smallest models: params to 0.01 M, GFLOPs in the zoo's convention."""
    flops.main(["--models", "x3d_xs", "x3d_s", "--results-dir", str(tmp_path)])
    table = pd.read_csv(tmp_path / "flops.csv").set_index("model")
    assert table.params_m.tolist() == [3.79, 3.79] and (table.params_match == "yes").all()
    assert table.gflops_with_norm.tolist() == [0.91, 2.96]
    assert table.published_gflops.tolist() == [0.91, 2.96]
    assert (table.flops_match == "yes: with norm layers").all()
    assert table.gflops["x3d_xs"] == 0.84 and table.gflops_delta["x3d_xs"] == -0.07
    assert table.input["x3d_s"] == "13x182x182" and table.views["x3d_s"] == "10x3"
    assert "fvcore" in (tmp_path / "flops.md").read_text()


def test_make_flops_takes_a_model_without_published_numbers(tmp_path):
    flops.main(["--models", "slowfast_tiny", "--results-dir", str(tmp_path)])
    row = pd.read_csv(tmp_path / "flops.csv").iloc[0]
    assert row.model == "slowfast_tiny" and row.params_m > 0
    assert pd.isna(row.published_gflops) and pd.isna(row.flops_match)
    with pytest.raises(SystemExit, match="error: --models nonsense: no conf/model/nonsense.yaml"):
        flops.main(["--models", "nonsense", "--results-dir", str(tmp_path)])
    # Measuring another model keeps this one's row (and says so).
    flops.main(["--models", "slowfast_toy", "--results-dir", str(tmp_path)])
    table = pd.read_csv(tmp_path / "flops.csv")
    assert table.model.tolist() == ["slowfast_tiny", "slowfast_toy"]
    assert table.params_m[0] == row.params_m
    assert "Measured then: slowfast_toy; the other rows are kept" in (
        tmp_path / "flops.md").read_text()


def test_published_deltas_only_beside_comparable_runs():
    """Official weights, the published views and protocol, the whole list with at least
    report.min_coverage of it evaluated: else no delta, and the row says why."""
    ci = {"top1": (0.4, 0.6), "top5": (0.75, 1.0)}
    assert eval_row(metrics_json(), PUBLISHED, ci)["top1_delta"] == -26.94
    for change in [{"weights": "random-init"}, {"weights": "mine.pth@1234abcd"},
                   {"clips": 1, "crops": 1}, {"limit": 100}, {"protocol": "pytorchvideo_main"},
                   {"fault": "bgr"}, {"videos_evaluated": 12, "videos_listed": 19881}]:
        row = eval_row(metrics_json(**change), PUBLISHED, ci)
        assert row["top1_delta"] is None and row["top5_delta"] is None, change
        # Another checkpoint than the published number's: no published accuracy beside it.
        mine = "weights" in change
        assert row["published_top1"] == (None if mine else 76.94), change
        assert row["gflops_delta"] is not None  # the architecture's cost: still shown
        assert row["no_delta_because"], change
    # A model from a source has no published numbers: said so, not compared with defaults.
    assert eval_row(metrics_json(), {}, ci)["no_delta_because"] == (
        f"no published numbers for {metrics_json()['model']}")
    mvit = eval_row(metrics_json(clips=5, crops=1), {**PUBLISHED, "views": "5x1"}, ci)
    assert mvit["top1_delta"] == -26.94


def test_no_delta_below_the_coverage_threshold_and_coverage_in_every_row(tmp_path):
    """12 of 19,881 listed videos evaluated: the top-1 printed beside the zoo's has no delta
    (it measured nothing about the zoo's number); coverage is shown in every row; the threshold
    is report.min_coverage (0.95 by default, inclusive)."""
    few = metrics_json(videos_evaluated=12, videos_listed=19881)
    row = eval_row(few, PUBLISHED)
    assert row["top1_delta"] is None and row["top5_delta"] is None
    assert row["published_top1"] == 76.94 and row["coverage"] == 0.0006
    assert row["no_delta_because"] == ("12 of 19881 listed videos evaluated, below "
                                       "report.min_coverage 0.95")
    assert eval_row(few, PUBLISHED, min_coverage=0.0)["top1_delta"] == -26.94
    at = metrics_json(videos_evaluated=19, videos_listed=20)
    assert eval_row(at, PUBLISHED)["top1_delta"] == -26.94  # 0.95 of the list: compares
    assert eval_row(metrics_json(videos_evaluated=18, videos_listed=20),
                    PUBLISHED)["top1_delta"] is None
    stem = tmp_path / "evaluations"
    upsert_table(stem, row, EVAL_KEY, EVAL_COLUMNS, shown=EVAL_SHOWN)
    upsert_table(stem, eval_row({**at, "precision": "bf16"}, PUBLISHED), EVAL_KEY, EVAL_COLUMNS,
                 shown=EVAL_SHOWN)
    shown = squeezed(stem.with_suffix(".md").read_text())
    assert "| 12/19881 (0.06%) |" in shown and "| 19/20 (95%) |" in shown
    assert "| 50.0 (76.94) |" in shown and "| 50.0 (76.94, -26.94) |" in shown
    assert "report.min_coverage, 0.95 by default" in EVAL_NOTE  # the table's note states the rule
    with pytest.raises(SettingsError, match="report.min_coverage: must be a share"):
        check_settings(compose_eval("report.min_coverage=1.5"))


def test_one_row_one_measurement(tmp_path):
    """Everything that changes the result or the speed is in the key: data.limit, another CSV,
    the same CSV over another data copy (root, fingerprint), the protocol, TF32, eval.fuse,
    compile, batch_views and channels_last each make a row of their own; a rerun of any of
    them replaces its own row only."""
    stem = tmp_path / "evaluations"
    full = metrics_json(csv="/k400/val.csv", csv_sha256="ab" * 32, root="/k400/val", limit=None,
                        videos_found=8, data_fingerprint="0f" * 32, fuse="bn+relu",
                        compile=False, batch_views=3, channels_last=True)

    def upsert(metrics):
        return upsert_table(stem, eval_row(metrics, PUBLISHED), EVAL_KEY, EVAL_COLUMNS,
                            shown=EVAL_SHOWN)

    changes = [{"limit": 100, "top1": 0.9},
               {"csv_sha256": "cd" * 32},  # the same file name, other content
               {"root": "/mnt/copy2/val"},  # the same CSV over another copy ...
               {"data_fingerprint": "1e" * 32},  # ... or the same root, other files
               {"protocol": "pytorchvideo"}, {"tf32": True}, {"fuse": "none"},
               {"compile": True}, {"batch_views": 30}, {"channels_last": False}]
    upsert(full)
    for change in changes:
        upsert({**full, **change})
    table = upsert({**full, "top1": 0.25})  # a rerun of the full list: its own row only
    assert len(table) == 1 + len(changes)
    row = table[(table.data == "val.csv@abababab") & (table.limit == "")
                & (table.root == "/k400/val") & (table.data_fingerprint == "0f" * 6)
                & (table.protocol == "zoo") & (table.tf32 == "False") & (table.fuse == "bn+relu")
                & (table.compile == "False") & (table.batch_views == "3")
                & (table.channels_last == "True")]
    assert row.top1.tolist() == ["25.0"]
    assert table[table.limit == "100"].top1.tolist() == ["90.0"]
    # The Markdown tells the rows apart too: the data copy and how the model ran are shown.
    shown = squeezed(stem.with_suffix(".md").read_text())
    assert "/mnt/copy2/val" in shown and "1e1e1e1e1e1e" in shown
    for ran in ("batch 3, channels_last, fuse bn+relu |", "fuse none", "compiled", "batch 30,",
                "no channels_last"):
        assert ran in shown, ran


def markdown_columns(text: str) -> list[int]:
    """The column count of every Markdown table in ``text`` (from its header lines)."""
    lines = text.splitlines()
    return [line.count("|") - 1 for i, line in enumerate(lines[:-1])
            if line.startswith("|") and re.fullmatch(r"\|[-:| ]+\|", lines[i + 1])]


def committed_results(suffix: str) -> list[Path]:
    """The results files git tracks (not whatever a run left in the working tree: the tables of
    a try-out on the sample set go under outputs/, but a run with results_dir=results may not)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", "results"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    return sorted(REPO / name for name in listed.stdout.split("\0") if name.endswith(suffix))


def test_every_table_for_people_fits_a_screen():
    """At most MAX_SHOWN_COLUMNS columns: the writer's choices, the committed tables, and the
    writer refuses a wider one (the CSV keeps every column)."""
    from benchmark.run.bench import BENCH_COLUMNS, BENCH_SHOWN
    from benchmark.results.sweep import SWEEP_COLUMNS, SWEEP_SHOWN
    assert MAX_SHOWN_COLUMNS == 14
    for shown in (EVAL_SHOWN, FLOPS_SHOWN, BENCH_SHOWN, SWEEP_SHOWN):
        assert len(shown) <= MAX_SHOWN_COLUMNS
    assert len(BENCH_COLUMNS) > 14 and len(EVAL_COLUMNS) > 14 and len(SWEEP_COLUMNS) > 14
    committed = committed_results(".md")
    assert len(committed) >= 5
    for path in committed:
        counts = markdown_columns(path.read_text())
        assert counts and max(counts) <= MAX_SHOWN_COLUMNS, (path, counts)
    wide = pd.DataFrame([{f"c{i}": i for i in range(15)}])
    with pytest.raises(ValueError, match="15 columns in a table for people"):
        to_markdown(wide)
    assert markdown_columns(to_markdown(wide.iloc[:, :14])) == [14]


def test_committed_tables_say_what_made_their_rows():
    """Every committed results table opens with a note; none holds a random-init row on the
    generated sample set (it measures nothing a reader wants)."""
    for path in [REPO / "results" / n for n in ("bench-cpu.md", "bench-cuda.md", "flops.md",
                                                "protocols.md")]:
        note = path.read_text().split("\n|", 1)[0]
        assert "make " in note, path
    assert committed_results(".csv")
    for csv in committed_results(".csv"):
        table = pd.read_csv(csv, dtype=str)
        if "dataset" in table:
            assert not ((table.dataset == "sample") & (table.weights == "random-init")).any(), csv
