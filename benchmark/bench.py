"""Entry point: ``python -m benchmark.bench [overrides]``: the reference pipeline against the
harness, one process, the same videos and weights (``benchmark/run/bench.py`` says how); prints
the rows and the speedups, writes ``bench.json`` and ``results/bench-<device>.csv`` / ``.md``."""

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

from benchmark.data.manifest import ManifestError  # noqa: E402
from benchmark.run.bench import bench  # noqa: E402
from benchmark.run.settings import SettingsError  # noqa: E402
from benchmark.run.models import WeightsError  # noqa: E402
from benchmark.run.schema import composed, hydra_cli  # noqa: E402

log = logging.getLogger("benchmark")


@hydra.main(version_base=None, config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    composed()  # from here on Hydra reports errors its way
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        result = bench(cfg, run_dir)
    except (ManifestError, WeightsError, SettingsError, OSError) as err:
        log.error("%s", err)
        sys.exit(f"error: {err}")
    names = ("reference", "harness_unfused", "harness")
    table = pd.DataFrame([{"pipeline": name, **{k: result[name].get(k) for k in (
        "precision", "batch_views", "channels_last", "fuse", "data_s", "model_s", "total_s",
        "views_per_s", "data_wait_fraction", "gmacs_per_s", "peak_fraction", "peak_rss_mb",
        "others_cpu")}} for name in names if name in result])
    print(table.to_markdown(index=False, floatfmt=".3g"))
    print(", ".join(f"{k} {result[k]:.2f}" for k in (
        "data_speedup", "model_speedup", "total_speedup", "model_peak_fraction")))
    if "fuse_model_speedup" in result:
        print(f"eval.fuse={result['harness']['fuse']} against none: model "
              f"{result['fuse_model_speedup']:.3f}x, total {result['fuse_total_speedup']:.3f}x, "
              f"probabilities within {result['fuse_agreement']['max_abs_prob_diff']:.1e}, "
              f"top-1 agreement {result['fuse_agreement']['top1_agree']:.2f}")
    if result["rss_check"]:
        rss = result["rss_check"]
        print(f"RSS check ({rss['model']}, {rss['videos']} videos): "
              f"{rss['summary']['rss_first_mb']:.0f} MB after the first video, "
              f"{rss['summary']['rss_last_mb']:.0f} MB after the last")
    for name, row in result.get("transformers", {}).items():
        print(f"{name}: card pipeline {row['reference']['views_per_s']:.3g} views/s "
              f"({row['reference']['precision']}, batch 1), harness "
              f"{row['harness']['views_per_s']:.3g} ({row['harness']['precision']}, batch "
              f"{row['harness']['batch_views']}): data {row['data_speedup']:.2f}x, model "
              f"{row['model_speedup']:.2f}x, total {row['total_speedup']:.2f}x; top-5 the same "
              f"for {row['agreement']['top5_agree']:.0%} of the videos, probabilities within "
              f"{row['agreement']['max_abs_prob_diff']:.1e}")
    table_path = Path(cfg.results_dir) / f"bench-{result['device']}.md"
    print(f"run files: {run_dir}\ntable: {table_path}")


if __name__ == "__main__":
    hydra_cli(main)  # a config that cannot be composed: one line, no traceback
