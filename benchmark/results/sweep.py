"""Sweeps: one combined table for a Hydra multirun, written when the sweep ends.

``python -m benchmark.eval -m model=slowfast_r50,slowfast_r101 device=cpu,cuda`` runs every
combination; this callback then reads each job's dir (status.json, metrics.json, .hydra/config.yaml)
so it works the same whichever launcher ran the jobs (local, SLURM), and writes sweep.csv/.md in
the sweep dir and under ``results/sweeps/`` (``results_dir``; a generated data set's:
``outputs/results/sweeps/``). Jobs skipped because their device is not on the
machine are rows that say so; any failed job makes the sweep exit non-zero.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from benchmark.results.tables import cell, tables_dir, to_markdown, write_table

log = logging.getLogger(__name__)

SWEEP_COLUMNS = ["job", "model", "depth", "device", "precision", "views", "protocol", "status",
                 "reason", "videos", "found", "data_fingerprint", "top1", "top5", "gflops", "params_m",
                 "views_per_s", "videos_per_s"]
# The table for people (sweep.md); sweep.csv keeps SWEEP_COLUMNS.
SWEEP_SHOWN = [
    ("job", "job"), ("model", "model"), ("device, precision", cell("{device} {precision}")),
    ("views", "views"), ("protocol", "protocol"),
    ("status", cell("{status}", "{reason}", sep=": ")),
    ("videos evaluated/listed, found, fingerprint",
     cell("{videos}", "found {found}", "{data_fingerprint}")),
    ("top-1 %", "top1"), ("top-5 %", "top5"), ("GFLOPs/view", "gflops"), ("params M", "params_m"),
    ("views/s", "views_per_s"), ("videos/s", "videos_per_s"),
]


def sweep_note(sweep_dir: Path, overrides: list[str]) -> str:
    return (f"Rows: one per job of the sweep {sweep_dir} (`python -m benchmark.eval -m "
            f"{' '.join(overrides)}`); sweep.csv holds every column. status skipped: the job's "
            "device is not on the machine; failed: the reason. top-1/top-5 in %; GFLOPs per view "
            "(fvcore conv + linear); views/s: model only; videos/s: end to end.")


def _job_row(job_dir: Path) -> dict:
    config = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    name = str(config.model.name)
    depth = re.search(r"_r(\d+)", name)
    row = {"job": job_dir.name, "model": name, "depth": depth.group(1) if depth else "",
           "device": str(config.device.type), "precision": str(config.precision),
           "views": f"{config.views.clips}x{config.views.crops}",
           "protocol": str(config.protocol.name)}
    try:
        status = json.loads((job_dir / "status.json").read_text())
    except (OSError, ValueError):
        status = {"status": "failed", "reason": "the job ended without a status (crashed?)"}
    row.update(status)
    if status["status"] == "ok":
        metrics = json.loads((job_dir / "metrics.json").read_text())
        row["device"] = metrics["device"]  # device=auto: what it resolved to
        row["videos"] = f"{metrics['videos_evaluated']}/{metrics['videos_listed']}"  # coverage
        if "videos_found" in metrics:  # which copy of the data (benchmark/report.py data_copy)
            row["found"] = f"{metrics['videos_found']}/{metrics['videos_listed']}"
            row["data_fingerprint"] = str(metrics["data_fingerprint"])[:12]
        for key in ("top1", "top5"):
            row[key] = None if metrics[key] is None else round(100 * metrics[key], 2)
        for key in ("gflops", "params_m", "views_per_s", "videos_per_s"):
            row[key] = None if metrics[key] is None else float(f"{metrics[key]:.4g}")
    return row


def sweep_table(sweep_dir: Path) -> pd.DataFrame:
    """A row per job dir (numbered subfolders holding a .hydra config) of ``sweep_dir``."""
    jobs = sorted((d for d in sweep_dir.iterdir() if (d / ".hydra" / "config.yaml").exists()),
                  key=lambda d: (len(d.name), d.name))
    return pd.DataFrame([_job_row(d) for d in jobs], columns=SWEEP_COLUMNS)


class SweepTable(Callback):
    """Hydra callback (conf/eval.yaml, hydra.callbacks) writing the sweep's table at its end."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = sweep_table(sweep_dir)
        note = sweep_note(sweep_dir, list(OmegaConf.select(config, "hydra.overrides.task",
                                                           default=[]) or []))
        write_table(sweep_dir / "sweep", table, note, SWEEP_SHOWN)
        name = "_".join(sweep_dir.parts[-2:])  # multirun/DATE/TIME -> DATE_TIME
        write_table(tables_dir(config) / "sweeps" / name, table, note, SWEEP_SHOWN)
        print(to_markdown(table, shown=SWEEP_SHOWN))
        print(f"sweep table: {sweep_dir / 'sweep.md'}")
        failed = table[table.status == "failed"]
        if len(failed):
            raise SystemExit(f"error: {len(failed)} of {len(table)} sweep jobs failed: "
                             + "; ".join(f"job {r.job}: {r.reason}" for r in failed.itertuples()))
