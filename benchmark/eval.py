"""Entry point: ``python -m benchmark.eval [overrides]`` evaluates one model on one data set."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

# fvcore and pytorchvideo call torch.jit.script at import time; its deprecation notice is noise.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)

import hydra  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from benchmark.data.decode import DecodeError  # noqa: E402
from benchmark.run.distributed import rank_from_env  # noqa: E402
from benchmark.run.evaluate import evaluate  # noqa: E402
from benchmark.run.record import NothingEvaluated, StrictFailure  # noqa: E402
from benchmark.run.settings import DeviceUnavailable, SettingsError  # noqa: E402
from benchmark.run.signals import Preempted  # noqa: E402
from benchmark.data.manifest import ManifestError  # noqa: E402
from benchmark.run.models import WeightsError  # noqa: E402
from benchmark.results.tables import GENERATED_RESULTS, ReportError, tables_dir  # noqa: E402
from benchmark.run.schema import AUTO, composed, hydra_cli  # noqa: E402
from benchmark.data.files import atomic_write  # noqa: E402
from benchmark.run.store import ResumeError  # noqa: E402

log = logging.getLogger("benchmark")

# Errors with a message that says it all: one line, no traceback.
EXPECTED_ERRORS = (ManifestError, WeightsError, SettingsError, DecodeError, StrictFailure,
                   ResumeError, NothingEvaluated, ReportError, OSError)


def write_status(run_dir: Path, status: str, reason: str = "") -> None:
    """ok | skipped | failed, for the sweep table (benchmark/results/sweep.py)."""
    atomic_write(run_dir / "status.json",
                 lambda p: p.write_text(json.dumps({"status": status, "reason": reason}) + "\n"))


@hydra.main(version_base=None, config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    composed()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = evaluate(cfg, run_dir)
    except Preempted as err:  # in a sweep too: the job is being stopped, not the video
        log.error("%s", err)
        if in_sweep:
            write_status(run_dir, "failed", str(err))
        print(f"error: {err}", file=sys.stderr)
        sys.exit(128 + err.signum)
    except Exception as err:
        # In a sweep a job's failure is recorded and the sweep goes on; the sweep's end
        # (benchmark/results/sweep.py) writes the table and exits non-zero if a job failed.
        expected = isinstance(err, EXPECTED_ERRORS)
        if not in_sweep:
            if not expected:
                raise
            log.error("%s", err)
            sys.exit(f"error: {err}")
        skipped = isinstance(err, DeviceUnavailable)
        write_status(run_dir, "skipped" if skipped else "failed",
                     str(err) if expected else f"{type(err).__name__}: {err}")
        (log.warning if skipped else log.error)("%s", err, exc_info=not expected)
        return
    if metrics is None:  # a torchrun rank other than 0: rank 0 writes and reports
        return
    write_status(run_dir, "ok")
    shown = {k: metrics[k] for k in ("model", "weights", "dataset", "device", "precision",
                                     "videos_evaluated", "videos_failed", "top1", "top5",
                                     "mean_class_accuracy", "gflops", "params_m", "views_per_s",
                                     "videos_per_s")}
    print(pd.DataFrame([shown]).to_markdown(index=False, floatfmt=".4g"))
    tables = tables_dir(cfg)
    print(f"run files: {run_dir}\ntable: {tables / 'evaluations.md'}")
    if str(cfg.results_dir) == AUTO and cfg.data.synthetic is not None:
        print(f"  (a generated data set, {cfg.data.name}: its rows go under {GENERATED_RESULTS}/, "
              "never into results/; results_dir=DIR puts them elsewhere)")


if __name__ == "__main__":
    if rank_from_env() > 0:
        # One Hydra output dir per run: rank 0's. The other ranks log to a scratch dir and
        # write their shard's parts into rank 0's dir (broadcast in evaluate).
        sys.argv += ["hydra.output_subdir=null",
                     f"hydra.run.dir={tempfile.mkdtemp(prefix='benchmark-rank')}"]
    hydra_cli(main)  # a config that cannot be composed: one line, no traceback
