"""The regression check behind ``python -m benchmark.regression`` (``make regression``, part of CI).

Evaluates a model through the real entry point (``python -m benchmark.eval``: CSV, decode, views,
model, metrics) and compares with a recorded baseline. First the data: a generated set's files
must be the bytes the baseline was measured on (their SHA-256), else it stops with "the
generated set differs from the baseline's" (exit 2), never reported as a regression. Then each
video's answer (its top-1 class and that class's probability), top-1, top-5, mean and
per-class accuracy, and the FLOPs and parameters of reference models, each within the
baseline's stated tolerance. Exit 0 and a table when all hold; exit 1 and what moved
otherwise, naming the videos (exit 2 when the evaluation itself fails). By default that is the
committed toy SlowFast on the toy set's held-out split, a model that really learned something,
so a broken pipeline loses accuracy.

``--record`` measures and writes a new baseline (``make regression-baseline``); it is the only
way a baseline changes, and it prints what moved. The baseline keeps the Hydra overrides it was
measured with, so any model and data set can have its own (see README).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

# fvcore and pytorchvideo call torch.jit.script at import time; its deprecation notice is noise.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)

import pandas as pd  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from benchmark import CONF_DIR  # noqa: E402

from benchmark.results import cost  # noqa: E402
from benchmark.run.record import versions  # noqa: E402
from benchmark.run.models import build_model, compose_for_model  # noqa: E402
from benchmark.results.tables import run_class_names  # noqa: E402
from benchmark.data.files import atomic_write  # noqa: E402
from benchmark.data.synthetic import ActionSetSpec, ensure_action_set, set_sha256  # noqa: E402

BASELINE = "results/regression/baseline.json"
# What --record evaluates unless told otherwise: the committed toy model, the toy set's held-out
# split, the model zoo's 10x3 views under the zoo protocol (pinned: another clip formula is a
# change the check must see), on the CPU in fp32 (cost is checked separately, below). All 30
# views of a video in one forward pass: many tiny passes crawl on a busy 2-core CPU.
TOY_OVERRIDES = [
    "data=toy", "model=slowfast_toy", "model.weights=results/regression/toy_slowfast.pt",
    "protocol=zoo", "views=10x3", "device=cpu", "precision=fp32", "eval.batch_views=30",
    "cost.flops=false", "cost.throughput_iters=0",
]
COST_MODELS = ["slowfast_r50", "slowfast_r101"]
# Stated tolerances (absolute, fractions), written into each new baseline, which then rules. The
# toy split has 48 videos (6 per class): one video is 0.021 of top-1 and 0.167 of a class, so
# one video may change its answer (a near-tie, below) and no more. FLOPs and parameters are
# exact counts: they must not move (beyond float printing).
# Per video (what the aggregates can hide: protocol=pytorchvideo instead of zoo changes no answer
# of 48, so every aggregate holds): the probability of the baseline's top-1 class may move by
# top1_probability, and the top-1 class may change only where the baseline's margin to the
# second class is below near_tie_margin = 2 x top1_probability (two probabilities moving that
# much, in opposite directions). Measured on the toy set in fp32 on the CPU, the same evaluation
# moves probabilities by at most 1.2e-7 (eval.fuse none against auto), 2.1e-7 (eval.batch_views
# 1 against 30), 4.7e-9 (2 threads against 1): 1e-4 is ~500x that, for another CPU's kernels. A
# protocol change is far above it (pytorchvideo: 32 of 48 videos beyond 1e-4, up to 4.0e-3;
# pytorchvideo_main: all 48, up to 3.1e-2), and so is bf16 (up to 1.5e-3, 36 videos): a bf16
# or GPU baseline states its own (docs/regression.md). The generated set itself is the same
# bytes on every run (lossless x264, benchmark/data/synthetic.py), checked first by SHA-256.
TOLERANCE = {"top1": 0.03, "top5": 0.03, "mean_class_accuracy": 0.03, "per_class": 0.17,
             "gflops": 1e-6, "params": 0, "top1_probability": 1e-4, "near_tie_margin": 2e-4}
ACCURACY_KEYS = ("top1", "top5", "mean_class_accuracy")


class CheckError(RuntimeError):
    """The check could not run (the evaluation failed, a bad run dir); the message says why."""


def merge_overrides(base: list[str], extra: list[str]) -> list[str]:
    """``base`` with each of ``extra`` replacing the override of the same key (or added)."""
    def key(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")
    replaced = {key(o) for o in extra}
    return [o for o in base if key(o) not in replaced] + list(extra)


def run_eval(overrides: list[str], run_dir: Path) -> dict:
    """Run ``python -m benchmark.eval`` in a fresh ``run_dir``; accuracy as a baseline keeps it."""
    if run_dir.exists():
        if any(run_dir.iterdir()) and not (run_dir / ".hydra").is_dir():
            raise CheckError(f"--run-dir {run_dir}: exists and is not an earlier run dir (no "
                             ".hydra/ in it); it is replaced on each run, so choose another")
        shutil.rmtree(run_dir)
    # Every video afresh (never resuming another run), and the toy rows kept out of the
    # project's results tables.
    command = [sys.executable, "-m", "benchmark.eval", *overrides, "resume=false",
               f"hydra.run.dir={run_dir}", f"results_dir={run_dir / 'results'}"]
    # One CPU thread unless OMP_NUM_THREADS says otherwise: as fast for the tiny toy model, and
    # immune to a busy machine, where two spinning threads made the same run 25x slower
    # (58 s against 2.2 s for the 48 toy videos while another job held one of 2 cores).
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise CheckError(f"the evaluation failed: {' '.join(command)}\nexited "
                         f"{result.returncode}:\n{result.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    hits = predictions.top5.map(lambda top: int(top[0])) == predictions.label
    per_class = hits.groupby(predictions.label).mean()
    names = run_class_names(metrics)

    def name(i) -> str:
        return names[i] if i < len(names) else str(i)

    return {
        "weights": metrics["weights"], "dataset": metrics["dataset"],
        "views": f"{metrics['clips']}x{metrics['crops']}",
        "videos": metrics["videos_evaluated"], "videos_failed": metrics["videos_failed"],
        **{k: metrics[k] for k in ACCURACY_KEYS},
        "per_class": {name(i): float(a) for i, a in per_class.items()},
        # Each video's probabilities by class name (for the check; a baseline keeps answers).
        "probs": {row.video_id: {name(i): float(p) for i, p in enumerate(row.probs)}
                  for row in predictions.sort_values("video_id").itertuples()},
        "labels": {row.video_id: name(row.label) for row in predictions.itertuples()},
    }


def generated_set(overrides: list[str]) -> dict[str, str] | None:
    """SHA-256 of each file of the generated set the evaluation with ``overrides`` reads (made
    first if it is not in the cache), or None when its data set is not a generated one."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            data = compose("eval", overrides=overrides).data
        if not data.get("synthetic"):
            return None
        csv = ensure_action_set(Path(data.root), ActionSetSpec(**data.synthetic))
    except (HydraException, OmegaConfBaseException) as err:
        raise CheckError(f"the overrides {' '.join(overrides)}: {err}") from None
    return set_sha256(Path(csv).parent)


def differing_files(old: dict[str, str], now: dict[str, str]) -> list[str]:
    """The files whose SHA-256 differs, or that only one of the two sets has."""
    return sorted(name for name in set(old) | set(now) if old.get(name) != now.get(name))


def compare_generated_set(baseline: dict, now: dict[str, str] | None, path: Path) -> None:
    """Stop before evaluating when the generated set is not the bytes the baseline was measured
    on: its answers would move for the data's sake, which is no model regression."""
    if now is None:
        return
    if baseline.get("generated_set") is None:
        raise CheckError(f"{path}: holds no SHA-256 of the generated set it was measured on "
                         "(\"generated_set\"); record it again with --record")
    differ = differing_files(baseline["generated_set"], now)
    if differ:
        shown = ", ".join(differ[:3]) + (", ..." if len(differ) > 3 else "")
        raise CheckError(f"the generated set differs from the baseline's ({len(differ)} files: "
                         f"{shown}); its generator or spec changed, so record a new baseline "
                         "(make regression-baseline) if that was meant")


def answers(probs: dict[str, dict[str, float]], labels: dict[str, str]) -> dict:
    """What a baseline keeps of each video: its label, top-1 class, that class's probability and
    the margin to the second class (how near a tie the answer is)."""
    kept = {}
    for video, by_class in probs.items():
        ranked = sorted(by_class.items(), key=lambda item: -item[1])
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        kept[video] = {"label": labels.get(video), "top1": ranked[0][0],
                       "p_top1": round(ranked[0][1], 8), "margin": round(ranked[0][1] - second, 8)}
    return kept


def compare_videos(baseline: dict, probs: dict[str, dict[str, float]],
                   tolerance: dict) -> pd.DataFrame:
    """One row per video: its baseline answer, the now top-1 class and the probability of the
    baseline's class, and why it moved ("" when it holds)."""
    rows = []
    for video in sorted(set(baseline) | set(probs)):
        old, now = baseline.get(video), probs.get(video)
        row = {"video": video, "label": (old or {}).get("label"),
               "baseline": old and f"{old['top1']} p={old['p_top1']:.6f} "
                                   f"margin={old['margin']:.6f}"}
        if old is None or now is None:
            rows.append({**row, "now": now and max(now, key=now.get), "p change": None,
                         "moved": "not in the baseline" if old is None else "not evaluated now"})
            continue
        top1 = max(now, key=now.get)
        change = now.get(old["top1"], float("nan")) - old["p_top1"]
        why = []
        if top1 != old["top1"] and old["margin"] >= tolerance["near_tie_margin"]:
            why.append(f"top-1 changed (margin {old['margin']:.6f} >= "
                       f"{tolerance['near_tie_margin']:g})")
        if not abs(change) <= tolerance["top1_probability"]:
            why.append(f"p moved beyond {tolerance['top1_probability']:g}")
        rows.append({**row, "now": f"{top1} p={now[top1]:.6f}", "p change": change,
                     "moved": "; ".join(why)})
    return pd.DataFrame(rows)


def measure_cost(model_names: list[str]) -> dict:
    """GFLOPs per view (model zoo convention) and parameter count of each named model config."""
    result = {}
    for name in model_names:
        model = build_model(compose_for_model(name).model)
        result[name] = {
            "gflops": round(cost.gflops_per_view(model.module, model.spec.example(1)), 6),
            "params": sum(p.numel() for p in model.module.parameters()),
        }
    return result


def compare(baseline: dict, now: dict, tolerance: dict) -> pd.DataFrame:
    """One row per checked value: baseline, now, change, tolerance and whether it holds."""
    rows = []

    def check(name, old, new, tol):
        change = None if old is None or new is None else new - old
        ok = change is not None and abs(change) <= tol
        rows.append({"check": name, "baseline": old, "now": new, "change": change,
                     "tolerance": tol, "ok": ok})

    old_acc, new_acc = baseline["accuracy"], now["accuracy"]
    check("videos evaluated", old_acc["videos"], new_acc["videos"], 0)
    for key in ACCURACY_KEYS:
        check(key, old_acc[key], new_acc[key], tolerance[key])
    for name in sorted(set(old_acc["per_class"]) | set(new_acc["per_class"])):
        check(f"class {name}", old_acc["per_class"].get(name), new_acc["per_class"].get(name),
              tolerance["per_class"])
    for model, old in baseline.get("cost", {}).items():
        new = now.get("cost", {}).get(model, {})
        for key in ("gflops", "params"):
            check(f"{model} {key}", old[key], new.get(key), tolerance[key])
    return pd.DataFrame(rows)


def show(table: pd.DataFrame) -> str:
    shown = table.assign(ok=table.ok.map({True: "ok", False: "MOVED"}))
    return shown.to_markdown(index=False, floatfmt=".10g")


def check_baseline(path: Path, extra: list[str], run_dir: Path) -> int:
    baseline = json.loads(path.read_text())
    if "videos" not in baseline:
        raise CheckError(f"{path}: holds no per-video answers (\"videos\"; recorded before the "
                         "check compared each video); record it again with --record")
    overrides = merge_overrides(baseline["overrides"], extra)
    print(f"baseline: {path} (recorded {baseline['recorded']}, {baseline['accuracy']['weights']} "
          f"on {baseline['accuracy']['dataset']}, {baseline['accuracy']['views']})")
    compare_generated_set(baseline, generated_set(overrides), path)
    print(f"evaluating: python -m benchmark.eval {' '.join(overrides)}")
    now = {"accuracy": run_eval(overrides, run_dir),
           "cost": measure_cost(list(baseline.get("cost", {})))}
    tolerance = {**TOLERANCE, **baseline["tolerance"]}
    table = compare(baseline, now, tolerance)
    videos = compare_videos(baseline["videos"], now["accuracy"]["probs"], tolerance)
    print(show(table))
    moved, changed = table[~table.ok], videos[videos.moved != ""]
    if moved.empty and changed.empty:
        print(f"regression check passed: {len(table)} values and the answers of {len(videos)} "
              f"videos within tolerance (top-1 class, its probability within "
              f"{tolerance['top1_probability']:g})")
        return 0
    print(f"\nREGRESSION: {len(moved)} of {len(table)} values and {len(changed)} of "
          f"{len(videos)} videos moved beyond tolerance (run files: {run_dir}):")
    if not moved.empty:
        print(show(moved))
    if not changed.empty:
        print(changed.to_markdown(index=False, floatfmt=".3g"))
        flipped = changed[changed.moved.str.contains("top-1 changed|not ")]
        print(f"videos whose top-1 class changed ({len(flipped)}): "
              f"{', '.join(flipped.video) or 'none'}")
        print(f"videos that moved ({len(changed)}): {', '.join(changed.video)}")
    return 1


def record_baseline(path: Path, extra: list[str], run_dir: Path, cost_models: list[str]) -> int:
    """Measure and write a new baseline; show what moved against the old one, if any."""
    old = json.loads(path.read_text()) if path.exists() else None
    overrides = merge_overrides(TOY_OVERRIDES, extra)
    files = generated_set(overrides)
    accuracy = run_eval(overrides, run_dir)
    probs, labels = accuracy.pop("probs"), accuracy.pop("labels")
    # The same model with one clip from the start and the centre crop: how much the views matter.
    single = run_eval(merge_overrides(overrides, ["views=1x1"]),
                      run_dir.with_name(run_dir.name + "_1x1"))
    baseline = {
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmark.regression --record", *extra]),
        "overrides": overrides,
        # An old baseline's tolerances rule; the keys it lacks come from TOLERANCE.
        "tolerance": {**TOLERANCE, **(old["tolerance"] if old else {})},
        "accuracy": accuracy,
        "single_view": {k: single[k] for k in ("views", "top1", "top5", "mean_class_accuracy")},
        "cost": measure_cost(cost_models),
        "versions": versions(),
        "videos": answers(probs, labels),
        # The bytes the answers were measured on (null for a real data set): compared first.
        "generated_set": files,
    }
    if old:
        print(f"changes against the previous baseline ({old['recorded']}):")
        if files is not None and old.get("generated_set") is not None:
            differ = differing_files(old["generated_set"], files)
            print(f"generated set: {len(differ)} of {len(files)} files differ from the previous's")
        print(show(compare(old, baseline, baseline["tolerance"])))
        if "videos" in old:
            videos = compare_videos(old["videos"], probs, baseline["tolerance"])
            print(f"videos that moved: {', '.join(videos.video[videos.moved != ''])or 'none'}")
    print(f"top1 {accuracy['views']} {accuracy['top1']:.4f}, "
          f"{single['views']} {single['top1']:.4f}; wrote {path}")
    atomic_write(path, lambda p: p.write_text(json.dumps(baseline, indent=2) + "\n"))
    return 0
