"""Results tables under ``results/``: one row per evaluation, CSV for tools and Markdown for people.

Rows are keyed by what identifies an evaluation (model, weights, dataset, device, precision,
views), so a rerun replaces its row instead of piling up duplicates. Published numbers sit in
their own columns beside the measured ones, never in their place.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.store import atomic_write

EVAL_KEY = ["model", "weights", "dataset", "device", "precision", "views"]
EVAL_COLUMNS = EVAL_KEY + [
    "videos", "top1", "top5", "mean_class_accuracy", "published_top1", "published_top5",
    "gflops", "published_gflops", "params_m", "published_params_m", "views_per_s",
    "videos_per_s", "torch", "pytorchvideo", "av", "finished",
]


def eval_row(metrics: dict, published: dict) -> dict:
    """A table row from a run's metrics.json (accuracies in percent, as the zoo prints them)."""
    def pct(x):
        return None if x is None else round(100 * x, 2)
    return {
        "model": metrics["model"], "weights": metrics["weights"], "dataset": metrics["dataset"],
        "device": metrics["device"], "precision": metrics["precision"],
        "views": f"{metrics['clips']}x{metrics['crops']}",
        "videos": f"{metrics['videos_evaluated']}/{metrics['videos_listed']}",
        "top1": pct(metrics["top1"]), "top5": pct(metrics["top5"]),
        "mean_class_accuracy": pct(metrics["mean_class_accuracy"]),
        "published_top1": published.get("top1"), "published_top5": published.get("top5"),
        "gflops": _round(metrics.get("gflops")), "published_gflops": published.get("gflops"),
        "params_m": _round(metrics.get("params_m")),
        "published_params_m": published.get("params_m"),
        "views_per_s": _round(metrics.get("views_per_s"), 3),
        "videos_per_s": _round(metrics.get("videos_per_s"), 4),
        "torch": metrics["versions"]["torch"], "pytorchvideo": metrics["versions"]["pytorchvideo"],
        "av": metrics["versions"]["av"], "finished": metrics["finished"],
    }


def _round(x, digits=2):
    """``digits`` decimals, but never rounding a small number (a tiny model's GFLOPs) to 0."""
    if x is None:
        return None
    return round(x, digits) if abs(x) >= 10 ** (1 - digits) else float(f"{x:.2g}")


def upsert_table(stem: Path, row: dict, key: list[str], columns: list[str]) -> pd.DataFrame:
    """Replace the row with ``row``'s key in ``stem``.csv (or add it); rewrite .csv and .md."""
    csv_path = stem.with_suffix(".csv")
    table = pd.read_csv(csv_path, dtype=str) if csv_path.exists() else pd.DataFrame(columns=columns)
    new = pd.DataFrame([{k: "" if v is None else str(v) for k, v in row.items()}], columns=columns)
    if not table.empty:
        same = (table[key].astype(str) == new[key].iloc[0]).all(axis=1)
        table = table[~same]
    table = pd.concat([table, new], ignore_index=True).sort_values(key, ignore_index=True)
    table = table.reindex(columns=columns)
    atomic_write(csv_path, lambda p: table.to_csv(p, index=False))
    atomic_write(stem.with_suffix(".md"),
                 lambda p: p.write_text(table.fillna("").to_markdown(index=False) + "\n"))
    return table
