"""The regression check behind ``python -m benchmark.regression`` (``make regression``, part of CI).

Evaluates a model through the real entry point (``python -m benchmark.eval``: CSV, decode, views,
model, metrics) and compares top-1, top-5, mean and per-class accuracy, and the FLOPs and
parameters of reference models, with a recorded baseline, each within the baseline's stated
tolerance. Exit 0 and a table when all hold; exit 1 and what moved otherwise (exit 2 when the
evaluation itself fails). By default that is the committed toy SlowFast on the toy set's
held-out split, a model that really learned something, so a broken pipeline loses accuracy.

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
import torch  # noqa: E402

from benchmark.results import cost  # noqa: E402
from benchmark.run.evaluate import versions  # noqa: E402
from benchmark.run.models import build_model, compose_for_model  # noqa: E402
from benchmark.results.tables import run_class_names  # noqa: E402
from benchmark.data.files import atomic_write  # noqa: E402

BASELINE = "results/regression/baseline.json"
# What --record evaluates unless told otherwise: the committed toy model, the toy set's held-out
# split, the model zoo's 10x3 views, on the CPU in fp32 (cost is checked separately, below). All
# 30 views of a video in one forward pass: many tiny passes crawl on a busy 2-core CPU.
TOY_OVERRIDES = [
    "data=toy", "model=slowfast_toy", "model.weights=results/regression/toy_slowfast.pt",
    "views=10x3", "device=cpu", "precision=fp32", "eval.batch_views=30", "cost.flops=false",
    "cost.throughput_iters=0",
]
COST_MODELS = ["slowfast_r50", "slowfast_r101"]
# Stated tolerances (absolute, fractions), written into each new baseline, which then rules. The
# toy split has 48 videos (6 per class): one video is 0.021 of top-1 and 0.167 of a class, so
# one video may change its answer (another machine's float rounding) and no more. FLOPs and
# parameters are exact counts: they must not move (beyond float printing).
TOLERANCE = {"top1": 0.03, "top5": 0.03, "mean_class_accuracy": 0.03, "per_class": 0.17,
             "gflops": 1e-6, "params": 0}
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
    return {
        "weights": metrics["weights"], "dataset": metrics["dataset"],
        "views": f"{metrics['clips']}x{metrics['crops']}",
        "videos": metrics["videos_evaluated"], "videos_failed": metrics["videos_failed"],
        **{k: metrics[k] for k in ACCURACY_KEYS},
        "per_class": {(names[i] if i < len(names) else str(i)): float(a)
                      for i, a in per_class.items()},
    }


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
    overrides = merge_overrides(baseline["overrides"], extra)
    print(f"baseline: {path} (recorded {baseline['recorded']}, {baseline['accuracy']['weights']} "
          f"on {baseline['accuracy']['dataset']}, {baseline['accuracy']['views']})")
    print(f"evaluating: python -m benchmark.eval {' '.join(overrides)}")
    now = {"accuracy": run_eval(overrides, run_dir),
           "cost": measure_cost(list(baseline.get("cost", {})))}
    table = compare(baseline, now, baseline["tolerance"])
    print(show(table))
    moved = table[~table.ok]
    if moved.empty:
        print(f"regression check passed: {len(table)} values within tolerance")
        return 0
    print(f"\nREGRESSION: {len(moved)} of {len(table)} values moved beyond tolerance "
          f"(run files: {run_dir}):\n{show(moved)}")
    return 1


def record_baseline(path: Path, extra: list[str], run_dir: Path, cost_models: list[str]) -> int:
    """Measure and write a new baseline; show what moved against the old one, if any."""
    old = json.loads(path.read_text()) if path.exists() else None
    overrides = merge_overrides(TOY_OVERRIDES, extra)
    accuracy = run_eval(overrides, run_dir)
    # The same model with one clip from the start and the centre crop: how much the views matter.
    single = run_eval(merge_overrides(overrides, ["views=1x1"]),
                      run_dir.with_name(run_dir.name + "_1x1"))
    baseline = {
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmark.regression --record", *extra]),
        "overrides": overrides,
        "tolerance": old["tolerance"] if old else TOLERANCE,
        "accuracy": accuracy,
        "single_view": {k: single[k] for k in ("views", "top1", "top5", "mean_class_accuracy")},
        "cost": measure_cost(cost_models),
        "versions": versions(),
    }
    if old:
        print(f"changes against the previous baseline ({old['recorded']}):")
        print(show(compare(old, baseline, baseline["tolerance"])))
    print(f"top1 {accuracy['views']} {accuracy['top1']:.4f}, "
          f"{single['views']} {single['top1']:.4f}; wrote {path}")
    atomic_write(path, lambda p: p.write_text(json.dumps(baseline, indent=2) + "\n"))
    return 0
