"""Nothing lost at scale: concurrent table writers, decoders that die or hang, preemption,
which copy of the data was evaluated, and the pre-run scan (``python -m benchmark.check``)."""

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from benchmark.data.decode import decode_video
from benchmark.data.loader import HANG_ON, KILL_ON
from benchmark.data.manifest import data_fingerprint, read_manifest
from benchmark.results.tables import EVAL_COLUMNS, EVAL_KEY, EVAL_SHOWN, eval_row, upsert_table
from benchmark import frameworks
from benchmark.frameworks import views
from benchmark.frameworks.views import decode_clips, sample_clips

from conftest import REPO, SHARED_VIDEOS, TINY_SPEC
from test_report import PUBLISHED, metrics_json


def _upsert_rows(stem, writer: int, start) -> None:
    start.wait()  # all eight writers begin together
    for i in range(25):
        row = eval_row(metrics_json(model=f"m{writer}_{i}"), PUBLISHED)
        upsert_table(stem, row, EVAL_KEY, EVAL_COLUMNS, shown=EVAL_SHOWN)


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
            "views.clips=2", "views.crops=1", "eval.batch_views=1", "cost.flops=false",
            "cost.throughput_iters=0",
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
    run = eval_process(loader_overrides(action_set, tmp_path / "run", "data.decode_timeout_s=10"),
                       **{HANG_ON: ids[2]})
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    assert f"test hook: blocking on {ids[2]}" in err
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert failures.video_id.tolist() == [ids[2]]
    assert "took longer than 10 s (data.decode_timeout_s); its stuck decoder" in failures.reason[0]
    assert pd.isna(failures.kind[0])  # transient: a resumed run may try it again
    assert len(pd.read_parquet(tmp_path / "run" / "predictions.parquet")) == len(ids) - 1
    assert time.monotonic() - started < 120


# ---- preemption --------------------------------------------------------------------------------

def test_sigterm_saves_every_finished_video_and_the_rerun_equals_an_uninterrupted_run(
        action_set, tmp_path):
    """SIGTERM while the loader is stuck on video 3 (so videos 0-2 are done, 1 of them a
    decoder crash, and nothing was flushed yet: flush_every is large); the rerun resumes, does
    not retry the crash, and predicts what an uninterrupted run predicts."""
    ids = video_ids(action_set)
    first = tmp_path / "a"
    big = ["eval.flush_every=1000", "eval.flush_seconds=1000"]
    run = eval_process(loader_overrides(action_set, first, *big),
                       **{KILL_ON: ids[0], HANG_ON: ids[3]})
    deadline = time.monotonic() + 200
    seen = ""
    while "test hook: blocking on" not in seen:
        assert run.poll() is None and time.monotonic() < deadline, "ended before the hang"
        seen += run.stderr.readline()
    time.sleep(3)  # the main process finishes the videos before the stuck one
    assert not (first / "parts").exists() or not list((first / "parts").iterdir())
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: stopped by SIGTERM: ") and "run the same command again" in last
    parts = pd.concat([pd.read_parquet(p) for p in (first / "parts").glob("part-*.parquet")])
    done = int(last.split("SIGTERM: ")[1].split(" of ")[0])
    # all three videos before the stuck one, the last still inside predict() when signalled
    assert len(parts) == done == 3 and set(parts.video_id) == set(ids[:done])
    assert parts.set_index("video_id").kind[ids[0]] == "crash"
    progress = json.loads((first / "progress.json").read_text())
    assert progress["interrupted"] == "SIGTERM" and not progress["finished"]

    resumed = subprocess.run([sys.executable, "-m", "benchmark.eval",
                              *loader_overrides(action_set, tmp_path / "b")],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {first}: {done} of {len(ids)} videos already done" in (
        resumed.stdout + resumed.stderr)
    failures = pd.read_csv(tmp_path / "b" / "failures.csv")
    assert failures.video_id.tolist() == [ids[0]] and failures.kind[0] == "crash"  # not retried
    whole = subprocess.run([sys.executable, "-m", "benchmark.eval",
                            *loader_overrides(action_set, tmp_path / "c", "resume=false")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    got = pd.read_parquet(tmp_path / "b" / "predictions.parquet")
    want = pd.read_parquet(tmp_path / "c" / "predictions.parquet").iloc[1:]  # less the crash
    assert got.video_id.tolist() == want.video_id.tolist() == ids[1:]
    np.testing.assert_allclose(np.stack(got.probs), np.stack(want.probs), atol=1e-6)


# ---- which copy of the data --------------------------------------------------------------------

def test_the_data_fingerprint_tells_copies_apart(action_set, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(action_set, copy)
    csv, names = copy / "validate.csv", copy / "kinetics_classnames.json"
    same = read_manifest(csv, copy, str(names))
    found, print_ = data_fingerprint(read_manifest(csv, action_set, str(names)).videos)
    assert data_fingerprint(same.videos) == (found, print_) and found == len(same.videos)
    missing = same.videos[0].path
    missing.unlink()
    fewer = data_fingerprint(read_manifest(csv, copy, str(names)).videos)
    assert fewer[0] == found - 1 and fewer[1] != print_
    reencoded = same.videos[1].path
    reencoded.write_bytes(reencoded.read_bytes() + b"\0")  # another size: another copy
    assert data_fingerprint(read_manifest(csv, copy, str(names)).videos)[1] not in (
        print_, fewer[1])


def test_metrics_report_and_table_say_which_copy(kinetics_run):
    tmp, _, _ = kinetics_run
    metrics = json.loads((tmp / "out" / "metrics.json").read_text())
    videos = read_manifest(tmp / "val.csv", metrics_root(tmp), None).videos
    assert (metrics["videos_listed"], metrics["videos_found"]) == (len(videos), len(videos) - 1)
    assert (metrics["videos_found"], metrics["data_fingerprint"]) == data_fingerprint(videos)
    short = metrics["data_fingerprint"][:12]
    assert f"{len(videos) - 1}/{len(videos)} listed files found, fingerprint {short}" in (
        tmp / "out" / "report.md").read_text()
    table = pd.read_csv(tmp / "results" / "evaluations.csv", dtype=str)
    assert (table.found[0], table.data_fingerprint[0]) == (f"{len(videos) - 1}/{len(videos)}", short)


def metrics_root(tmp: Path) -> Path:
    """The data root the kinetics_run fixture passed (from its saved config)."""
    return Path(OmegaConf.load(tmp / "out" / ".hydra" / "config.yaml").data.root)


# ---- python -m benchmark.check -----------------------------------------------------------------

def test_check_decodes_every_listed_video_and_strict_fails_on_any(action_set, tmp_path):
    ids = video_ids(action_set)
    csv = tmp_path / "val.csv"
    broken = action_set / "moving left" / "broken_000000_000010.mp4"
    broken.write_bytes(b"not a video")
    csv.write_text((action_set / "validate.csv").read_text()
                   + '"moving left",notthere,0,10,validate\n"moving left",broken,0,10,validate\n')
    overrides = ["data=kinetics400", f"data.csv={csv}", f"data.root={action_set}",
                 f"data.class_names={action_set / 'kinetics_classnames.json'}", "workers=2"]
    try:
        result = subprocess.run([sys.executable, "-m", "benchmark.check", *overrides,
                                 f"hydra.run.dir={tmp_path / 'a'}"], cwd=REPO, text=True,
                                capture_output=True, timeout=300, env={**os.environ, KILL_ON: ids[2]})
        strict = subprocess.run([sys.executable, "-m", "benchmark.check", *overrides, "strict=true",
                                 f"hydra.run.dir={tmp_path / 'b'}"], cwd=REPO, text=True,
                                capture_output=True, timeout=300)
        _, fingerprint = data_fingerprint(read_manifest(csv, action_set, None).videos)
    finally:
        broken.unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "a" / "check.csv")
    assert list(table.columns) == ["video_id", "path", "status", "reason", "duration_s", "fps",
                                   "frames", "width", "height", "codec", "bytes", "notes"]
    assert table.video_id.tolist() == ids + ["notthere_000000_000010", "broken_000000_000010"]
    reasons = dict(zip(table.video_id, table.reason.fillna("")))
    assert reasons[ids[2]] == "decoder process died: signal 11 (SIGSEGV)"
    assert reasons["notthere_000000_000010"].startswith("file not found")
    assert reasons["broken_000000_000010"].startswith("cannot open as a video")
    good = table[table.status == "ok"]
    assert len(good) == len(ids) - 1
    assert (good.width == 112).all() and (good.height == 64).all() and (good.codec == "h264").all()
    assert (good.frames == 75).all() and (good.duration_s == 2.5).all() and (good.fps == 30).all()
    assert f"data fingerprint: {fingerprint}" in result.stdout
    assert "      1  decoder process died" in result.stdout
    assert strict.returncode == 1 and "2 of" in strict.stderr.strip().splitlines()[-1]


def test_check_decodes_with_the_run_s_decoder_and_keeps_its_notes(tmp_path):
    """``decoder=decord``: the scan decodes as a decord run would, so the packed-B-frame AVI
    (HMDB51's layout and split file) has decord's note that it gives no timestamps, which PyAV
    does not need."""
    avi = SHARED_VIDEOS / "xvid_packed_bframes.avi"
    if not avi.is_file():
        pytest.skip(f"the shared videos are not here ({SHARED_VIDEOS})")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "wave_test_split1.txt").write_text("xvid.avi 2\n")
    (tmp_path / "root" / "wave").mkdir(parents=True)
    (tmp_path / "root" / "wave" / "xvid.avi").symlink_to(avi)
    tables = {}
    for decoder in ("pyav", "decord"):
        result = subprocess.run(
            [sys.executable, "-m", "benchmark.check", "data=hmdb51",
             f"data.csv={tmp_path / 'splits'}", f"data.root={tmp_path / 'root'}", "workers=1",
             f"decoder={decoder}", f"hydra.run.dir={tmp_path / decoder}"],
            cwd=REPO, text=True, capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"decoder {decoder}), {int(decoder == 'decord')} with decoder notes" in result.stdout
        tables[decoder] = pd.read_csv(tmp_path / decoder / "check.csv").iloc[0]
    assert pd.isna(tables["pyav"].notes) and tables["decord"].notes.startswith(
        "decord gives no timestamps for this file")
    assert (tables["pyav"].frames, tables["decord"].frames) == (164, 164)
    assert (tables["decord"].width, tables["decord"].height) == (320, 240)


# ---- memory: only the frames a clip may use are held while decoding ----------------------------

@pytest.mark.parametrize("clips, timing, fault", [
    (10, "pytorchvideo_0.1.0", None), (4, "pytorchvideo_0.1.5", None),
    (10, "pytorchvideo_main", None), (3, "pytorchvideo_0.1.0", "clips_from_start"),
    (2, "pytorchvideo_main", "reverse_frames"), (1, "pytorchvideo_0.1.5", None)])
def test_streamed_clips_equal_decoding_everything_first(videos, tmp_path, clips, timing, fault):
    from test_robustness import write_vfr

    steps = frameworks.timing(timing)

    paths = [*videos.values(), write_vfr(tmp_path / "vfr.mp4")]
    for path in paths:
        want = sample_clips(decode_video(path), TINY_SPEC, clips, steps, fault)
        got = decode_clips(path, TINY_SPEC, clips, steps, fault=fault)
        assert torch.equal(got, want) and got.stride() == want.stride(), path.name
    # ... and the files in order with a duration took the streamed path, not the fallback
    streamed = views._streamed_clips(videos["landscape"], TINY_SPEC, clips, steps, 0, fault)
    assert torch.equal(streamed, decode_clips(videos["landscape"], TINY_SPEC, clips, steps,
                                              fault=fault))


# ---- a live run is never taken over ------------------------------------------------------------

def wait_for_hang(run: subprocess.Popen, timeout_s: float = 200) -> str:
    """The run's stderr up to the test hook's line (the loader then blocks for ever)."""
    deadline, seen = time.monotonic() + timeout_s, ""
    while "test hook: blocking on" not in seen:
        assert run.poll() is None and time.monotonic() < deadline, "ended before the hang"
        seen += run.stderr.readline()
    return seen


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its loader workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def stop(runs: list[subprocess.Popen], workers: list[int]) -> None:
    """Kill -9 the runs and their loader workers (a worker holds its run's stderr open)."""
    workers = workers + [pid for run in runs for pid in children(run.pid)]
    for run in runs:
        run.kill()
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for run in runs:
        run.wait()
        run.stdout.close()
        run.stderr.close()


def test_a_live_run_is_refused_skipped_when_told_and_resumed_once_dead(action_set, tmp_path):
    """A run hangs in its decoder (alive, unfinished). The same config again refuses at once,
    naming the live run; with live_run=skip it starts fresh beside it; once the first is
    killed (-9), the same command resumes its work."""
    ids = video_ids(action_set)
    first = eval_process(loader_overrides(action_set, tmp_path / "a", "eval.flush_every=1"),
                         **{HANG_ON: ids[2]})
    workers, others = [], []
    try:
        wait_for_hang(first)
        workers = children(first.pid)
        second = eval_process(loader_overrides(action_set, tmp_path / "b"))
        others = [second]
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: {tmp_path / 'a'} is a live run of the same config "
                               f"(pid {first.pid} on {socket.gethostname()})"), last
        assert "live_run=skip" in last
        assert not (tmp_path / "b" / "parts").exists()
        progress = json.loads((tmp_path / "a" / "progress.json").read_text())
        assert progress["owner"]["pid"] == first.pid and not progress["finished"]
        # after the second: while alive, either would refuse to take the other over
        beside = eval_process(loader_overrides(action_set, tmp_path / "c", "live_run=skip"))
        others.append(beside)
        out, err = beside.communicate(timeout=120)
        assert beside.returncode == 0, err[-3000:]
        assert f"not resuming {tmp_path / 'a'}: a live run" in out + err and "resuming " not in (
            (out + err).replace("not resuming", ""))
        assert len(pd.read_parquet(tmp_path / "c" / "predictions.parquet")) == len(ids)
        assert "superseded_by" not in json.loads((tmp_path / "a" / "progress.json").read_text())
        assert first.poll() is None  # untouched
    finally:
        stop([first, *others], workers)
    third = subprocess.run([sys.executable, "-m", "benchmark.eval",
                            *loader_overrides(action_set, tmp_path / "d")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"resuming {tmp_path / 'a'}: " in third.stdout + third.stderr
    assert json.loads((tmp_path / "a" / "progress.json").read_text())["superseded_by"] == str(
        tmp_path / "d")


# ---- SIGTERM: nothing finished is lost ---------------------------------------------------------

def test_a_hung_run_flushes_on_time_and_a_sigterm_storm_keeps_every_finished_video(
        action_set, tmp_path):
    """Two runs hang in the decoder on video 2 (videos 0 and 1 finished). One flushes every
    second: its parts hold both while it hangs. The other flushes only at the end: SIGTERM every
    10 ms till it exits; the first stops it, none of the rest cuts its final flush, and both
    finished videos are saved."""
    ids = video_ids(action_set)
    never = ["eval.flush_every=1000", "resume=false"]  # resume=false: not each other's live run
    timed = eval_process(loader_overrides(action_set, tmp_path / "t", *never,
                                          "eval.flush_seconds=1"), **{HANG_ON: ids[2]})
    stormed = eval_process(loader_overrides(action_set, tmp_path / "s", *never,
                                            "eval.flush_seconds=1000"), **{HANG_ON: ids[2]})
    workers = []
    try:
        for run in (timed, stormed):
            wait_for_hang(run)
            workers += children(run.pid)
        deadline = time.monotonic() + 10
        while saved(tmp_path / "t") != set(ids[:2]):
            assert time.monotonic() < deadline, f"parts while hung: {saved(tmp_path / 't')}"
            time.sleep(0.2)
        assert saved(tmp_path / "s") == set()  # nothing flushed yet
        deadline = time.monotonic() + 60
        while stormed.poll() is None and time.monotonic() < deadline:
            stormed.send_signal(signal.SIGTERM)
            time.sleep(0.01)
        stormed.wait(timeout=60)
        assert saved(tmp_path / "s") == set(ids[:2])
        progress = json.loads((tmp_path / "s" / "progress.json").read_text())
        assert progress["interrupted"] == "SIGTERM" and not progress["finished"]
        timed.send_signal(signal.SIGTERM)
        out, err = timed.communicate(timeout=60)
        assert timed.returncode == 128 + signal.SIGTERM
        assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM: 2 of 4 videos")
    finally:
        stop([timed, stormed], workers)


def saved(run_dir: Path) -> set[str]:
    """The video ids in a run dir's parts."""
    parts = sorted((run_dir / "parts").glob("part-*.parquet"))
    return set(pd.concat(map(pd.read_parquet, parts)).video_id) if parts else set()
