"""``python -m benchmark.report RUN_OR_SWEEP_DIR...`` (``make report``): rebuild the tables and
plots of finished runs from their files (benchmark/results/tables.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from benchmark.results.tables import (EVAL_SHOWN, ReportError, find_runs, read_metrics, report_run,
                                      run_min_coverage, run_published, to_markdown)

log = logging.getLogger("benchmark.report")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.report",
        description="Rebuild the tables and plots of finished runs from their files "
                    "(metrics.json, predictions.parquet, .hydra/config.yaml); evaluates nothing.")
    parser.add_argument("folders", nargs="+", type=Path, metavar="RUN_OR_SWEEP_DIR",
                        help="a run folder (holding metrics.json) or a folder of runs (a sweep)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="where evaluations.csv/.md and the cross-run plots go (default: "
                             "results)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rows = []
        for run in find_runs(args.folders):
            published = run_published(run, read_metrics(run)["model"])
            rows.append(report_run(run, published, args.results_dir,
                                   min_coverage=run_min_coverage(run)))
            log.info("%s: report.md, per_class.md, confusions.md, plots", run)
    except ReportError as err:
        sys.exit(f"error: {err}")
    print(to_markdown(pd.DataFrame(rows), shown=EVAL_SHOWN))
    print(f"table: {args.results_dir / 'evaluations.md'}")


if __name__ == "__main__":
    main()
