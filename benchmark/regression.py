"""``python -m benchmark.regression [overrides]`` (``make regression``; ``--record``:
``make regression-baseline``): the check itself is benchmark/run/regression.py."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from benchmark.run import regression
from benchmark.run.regression import (BASELINE, COST_MODELS, CheckError, check_baseline,
                                      record_baseline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.regression", description=regression.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for benchmark.eval, on top of the baseline's")
    parser.add_argument("--baseline", type=Path, default=Path(BASELINE))
    parser.add_argument("--record", action="store_true",
                        help="measure and write a new baseline instead of checking")
    parser.add_argument("--cost-models", default=",".join(COST_MODELS),
                        type=lambda names: [n for n in names.split(",") if n],
                        help="with --record: model configs (comma-separated) whose GFLOPs and "
                             "params the baseline holds; empty for none")
    parser.add_argument("--run-dir", type=Path, default=Path("outputs/regression/last"),
                        help="where the evaluation's run files go (replaced each time)")
    args = parser.parse_args(argv)
    try:
        if args.record:
            return record_baseline(args.baseline, args.overrides, args.run_dir, args.cost_models)
        if not args.baseline.is_file():
            print(f"error: {args.baseline}: no baseline; record one with --record "
                  "(make regression-baseline)", file=sys.stderr)
            return 2
        return check_baseline(args.baseline, args.overrides, args.run_dir)
    except CheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # The FLOPs count's forward passes too run on one thread unless OMP_NUM_THREADS is set.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sys.exit(main())
