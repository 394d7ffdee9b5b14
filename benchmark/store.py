"""The run's files: predictions.parquet, failures.csv and metrics.json, written atomically.

Every file is written to a temporary name in the same folder and renamed into place, so a
crash never leaves a half-written file that a later reader trusts.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

PREDICTION_COLUMNS = ["video_id", "path", "label", "top5", "probs"]
FAILURE_COLUMNS = ["video_id", "path", "reason"]


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


@dataclass
class RunStore:
    """Predictions and failures of one run, kept in order and written to ``run_dir``."""

    run_dir: Path
    predictions: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def add_prediction(self, video_id: str, path, label: int, probs: torch.Tensor) -> None:
        top = probs.topk(min(5, probs.numel())).indices.tolist()
        self.predictions.append({"video_id": video_id, "path": str(path), "label": label,
                                 "top5": top, "probs": probs.float().tolist()})

    def add_failure(self, video_id: str, path, reason: str) -> None:
        self.failures.append({"video_id": video_id, "path": str(path or ""), "reason": reason})

    def probs_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.tensor([p["probs"] for p in self.predictions]).reshape(len(self.predictions), -1)
        labels = torch.tensor([p["label"] for p in self.predictions], dtype=torch.long)
        return probs, labels

    def write(self, metrics: dict) -> None:
        frame = pd.DataFrame(self.predictions, columns=PREDICTION_COLUMNS)
        atomic_write(self.run_dir / "predictions.parquet", lambda p: frame.to_parquet(p, index=False))
        failures = pd.DataFrame(self.failures, columns=FAILURE_COLUMNS)
        atomic_write(self.run_dir / "failures.csv", lambda p: failures.to_csv(p, index=False))
        atomic_write(self.run_dir / "metrics.json",
                     lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
