"""Nothing lost at scale: concurrent table writers, decoders that die or hang, preemption,
which copy of the data was evaluated, and the pre-run scan (``python -m benchmark.check``)."""

import multiprocessing

import pandas as pd

from benchmark.report import EVAL_COLUMNS, EVAL_KEY, eval_row, upsert_table

from test_report import PUBLISHED, metrics_json


def _upsert_rows(stem, writer: int, start) -> None:
    start.wait()  # all eight writers begin together
    for i in range(25):
        row = eval_row(metrics_json(model=f"m{writer}_{i}"), PUBLISHED)
        upsert_table(stem, row, EVAL_KEY, EVAL_COLUMNS)


def test_eight_processes_upserting_at_once_keep_all_200_rows(tmp_path):
    stem = tmp_path / "evaluations"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(8)
    writers = [context.Process(target=_upsert_rows, args=(stem, w, start)) for w in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [w.exitcode for w in writers] == [0] * 8
    table = pd.read_csv(stem.with_suffix(".csv"))
    assert sorted(table.model) == sorted(f"m{w}_{i}" for w in range(8) for i in range(25))
    assert list(table.columns) == EVAL_COLUMNS
    assert stem.with_suffix(".md").read_text().count("\n| m") == 200
