"""The Python API, for notebooks and other tools: ``evaluate`` takes the CLI's names and
overrides (or an ``nn.Module`` with an explicit protocol and input spec) and returns the
metrics and the per-video predictions as a DataFrame.

It runs the same loop as ``python -m benchmark.eval`` (benchmark/run/evaluate.py) and writes
nothing outside the run directory it is given: the run's files there, its table row under
``<run_dir>/results`` and generated data sets under ``<run_dir>/cache`` (unless the overrides
say ``results_dir=`` or ``cache_dir=``). Like every program, nothing in the package imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from benchmark import CONF_DIR
from benchmark.run.evaluate import evaluate as run_evaluation
from benchmark.run.schema import config_error_line


@dataclass
class Evaluation:
    """A finished run: metrics.json's record and predictions.parquet (one row a video: id,
    path, label, top-5 ids, the probabilities in the data set's class order)."""

    metrics: dict
    predictions: pd.DataFrame
    run_dir: Path


def evaluate(*overrides: str, run_dir: str | Path, module: nn.Module | None = None,
             protocol: str | None = None, input: dict | None = None,
             num_classes: int | None = None) -> Evaluation:
    """Evaluate as ``python -m benchmark.eval *overrides`` does, into ``run_dir``.

    ``module``: a model of one's own, used as given (it takes the protocol's views as a list
    of pathway tensors, or a tensor for one pathway, and returns logits in the data set's class
    order); then ``protocol`` (a conf/protocol name), ``input`` (model.input's keys:
    num_frames, sampling_rate, frames_per_second, side_size, crop_size, mean, std, alpha) and
    ``num_classes`` are required. A bad name or key raises ValueError with the CLI's one line.
    """
    run_dir = Path(run_dir).resolve()
    first = [f"results_dir={run_dir / 'results'}", f"cache_dir={run_dir / 'cache'}",
             "eval.resume_search=[]"]
    if module is not None:
        if protocol is None or input is None or num_classes is None:
            raise ValueError("evaluate(module=...): pass protocol=, input= and num_classes= too")
        first += ["model=module", f"protocol={protocol}"]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose("eval", overrides=[*first, *overrides])
    except Exception as err:
        line = config_error_line(err)
        if line is None:
            raise
        raise ValueError(line) from None
    if module is not None:
        cfg.model.framework = cfg.protocol.framework
        cfg.model.num_classes = int(num_classes)
        cfg.model.input = OmegaConf.merge(cfg.model.input, input)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_evaluation(cfg, run_dir, list(overrides), module)
    return Evaluation(metrics, pd.read_parquet(run_dir / "predictions.parquet"), run_dir)
