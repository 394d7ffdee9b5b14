"""Nothing lost at scale: concurrent table writers, decoders that die or hang, preemption,
which copy of the data was evaluated, and the pre-run scan (``python -m benchmark.check``)."""

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from benchmark.loader import HANG_ON, KILL_ON
from benchmark.report import EVAL_COLUMNS, EVAL_KEY, eval_row, upsert_table

from conftest import REPO
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


# ---- loader workers that die or hang ----------------------------------------------------------

def loader_overrides(root: Path, run_dir: Path, *extra):
    return ["model=slowfast_tiny", "model.num_classes=4", "model.weights=random",
            "data=kinetics400", f"data.csv={root / 'validate.csv'}", f"data.root={root}",
            f"data.class_names={root / 'kinetics_classnames.json'}", "device=cpu",
            "views.clips=2", "eval.batch_views=1", "cost.flops=false", "cost.throughput_iters=0",
            f"results_dir={run_dir.parent / 'results'}", f"hydra.run.dir={run_dir}",
            f"eval.resume_search=[{run_dir.parent}/*]", *extra]


def video_ids(root: Path) -> list[str]:
    rows = pd.read_csv(root / "validate.csv")
    return [f"{r.youtube_id}_{r.time_start:06d}_{r.time_end:06d}" for r in rows.itertuples()]


def eval_process(overrides, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmark.eval", *overrides], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_video_that_kills_its_decoder_is_a_failure_and_the_run_goes_on(action_set, tmp_path):
    ids = video_ids(action_set)
    run = eval_process(loader_overrides(action_set, tmp_path / "run", "data.workers=2"),
                       **{KILL_ON: ids[1]})
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    assert (out + err).count("loader worker died (signal 11 (SIGSEGV))") == 2  # first try, then alone
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert failures.video_id.tolist() == [ids[1]]
    assert failures.reason[0] == "decoder process died: signal 11 (SIGSEGV)"
    assert failures.kind[0] == "crash"
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert predictions.video_id.tolist() == [i for i in ids if i != ids[1]]  # in order


def test_a_stuck_decode_is_ended_from_the_main_process(action_set, tmp_path):
    """The hook blocks SIGALRM, so only the main process's limit can end it."""
    ids = video_ids(action_set)
    started = time.monotonic()
    run = eval_process(loader_overrides(action_set, tmp_path / "run", "data.decode_timeout_s=3"),
                       **{HANG_ON: ids[2]})
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    assert f"test hook: blocking on {ids[2]}" in err
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert failures.video_id.tolist() == [ids[2]]
    assert "took longer than 3 s (data.decode_timeout_s); its stuck decoder" in failures.reason[0]
    assert pd.isna(failures.kind[0])  # transient: a resumed run may try it again
    assert len(pd.read_parquet(tmp_path / "run" / "predictions.parquet")) == len(ids) - 1
    assert time.monotonic() - started < 120
