"""Entry point: ``python -m benchmark.eval [overrides]`` evaluates one model on one data set."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

# fvcore and pytorchvideo call torch.jit.script at import time; its deprecation notice is noise.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)

import hydra  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from benchmark.decode import DecodeError  # noqa: E402
from benchmark.evaluate import SettingsError, evaluate  # noqa: E402
from benchmark.manifest import ManifestError  # noqa: E402
from benchmark.models import WeightsError  # noqa: E402

log = logging.getLogger("benchmark")


@hydra.main(version_base=None, config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = evaluate(cfg, run_dir)
    except (ManifestError, WeightsError, SettingsError, DecodeError) as err:
        log.error("%s", err)
        sys.exit(f"error: {err}")
    shown = {k: metrics[k] for k in ("model", "weights", "dataset", "device", "precision",
                                     "videos_evaluated", "videos_failed", "top1", "top5",
                                     "mean_class_accuracy", "gflops", "params_m", "views_per_s",
                                     "videos_per_s")}
    print(pd.DataFrame([shown]).to_markdown(index=False, floatfmt=".4g"))
    print(f"run files: {run_dir}\ntable: {Path(cfg.results_dir) / 'evaluations.md'}")


if __name__ == "__main__":
    main()
