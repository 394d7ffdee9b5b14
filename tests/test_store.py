"""The run store: what a resumed run adopts, tries again, and owns."""

import json

import pandas as pd
import pytest
import torch

from benchmark.run.record import NothingEvaluated, check_some_evaluated
from benchmark.run.store import RunStore

IDENTITY = {"model": "tiny", "views": "4x3"}


def store(run_dir, identity=IDENTITY) -> RunStore:
    return RunStore(run_dir, identity, flush_every=1)


def predict(s: RunStore, video_id: str) -> None:
    s.add_prediction(video_id, f"{video_id}.mp4", 0, torch.tensor([0.7, 0.3]))


def test_an_adopted_run_is_never_adopted_again(tmp_path):
    """A is killed, B adopts A's parts and finishes: a later run with the same fingerprint
    starts fresh instead of adopting A's stale parts a second time."""
    search = [str(tmp_path / "*")]
    a = store(tmp_path / "a")
    a.resume(search)
    predict(a, "v1"), predict(a, "v2")  # then killed: unfinished, two videos in its parts
    b = store(tmp_path / "b")
    assert b.resume(search) == {"v1", "v2"} and b.resumed_from == tmp_path / "a"
    predict(b, "v3")
    b.finish({"top1": 1.0}, order=["v1", "v2", "v3"])
    progress = json.loads((tmp_path / "a" / "progress.json").read_text())
    assert progress["superseded_by"] == str(tmp_path / "b") and not progress["finished"]
    c = store(tmp_path / "c")
    assert c.resume(search) == set() and c.resumed_from is None


def test_transient_failures_are_tried_again_on_resume(tmp_path):
    a = store(tmp_path / "a")
    a.resume([])
    predict(a, "v1")
    a.add_failure("v2", None, "file not found: looked for v2.mp4", transient=True)
    a.add_failure("v3", "v3.mp4", "cannot open as a video")  # permanent: not tried again
    a.add_failure("v4", "v4.mp4", "decoding took longer than 1 s", transient=True)
    b = store(tmp_path / "b")
    assert b.resume([str(tmp_path / "*")]) == {"v1", "v3"}
    predict(b, "v2")
    b.add_failure("v4", "v4.mp4", "decoding took longer than 1 s", transient=True)
    b.finish({}, order=["v1", "v2", "v3", "v4"])
    assert pd.read_parquet(tmp_path / "b" / "predictions.parquet").video_id.tolist() == ["v1", "v2"]
    failures = pd.read_csv(tmp_path / "b" / "failures.csv")
    assert failures.video_id.tolist() == ["v3", "v4"]  # v4 once, though it failed twice

    # Resuming in place (the same run dir): a video that failed transiently, then succeeded, is
    # a prediction, not the stale failure still in the older part.
    c = store(tmp_path / "c")
    c.resume([])
    c.add_failure("v5", None, "file not found", transient=True)
    predict(c, "v5")  # a retry in the same dir, after its own resume
    again = store(tmp_path / "c")
    assert again.resume([]) == {"v5"} and again.failures == []


def test_resume_false_owns_its_run_dir(tmp_path):
    """An unfinished run of another config left progress.json and parts: a run that does not
    resume clears the parts and writes its own progress.json before any work."""
    other = store(tmp_path / "run", {"model": "other"})
    other.resume([])
    predict(other, "old")
    fresh = store(tmp_path / "run")
    fresh.start_fresh()
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["fingerprint"] == fresh.print != other.print and not progress["finished"]
    assert not list((tmp_path / "run" / "parts").glob("*.parquet"))
    predict(fresh, "new")
    assert store(tmp_path / "run").resume([]) == {"new"}


def test_the_run_marks_a_missing_file_transient(kinetics_run):
    """evaluate records "file not found" as transient in the parts (a resume tries it again)."""
    tmp, _, _ = kinetics_run
    parts = pd.concat(map(pd.read_parquet, sorted((tmp / "out" / "parts").glob("*.parquet"))))
    assert parts.set_index("video_id").transient.to_dict() == {
        **{v: False for v in parts.video_id if v != "notthere_000000_000010"},
        "notthere_000000_000010": True}


def test_a_run_that_evaluated_nothing_leaves_no_verdict_to_adopt(tmp_path):
    """Every video failed (the root held a wrong copy: "cannot open", crashed decoders): the
    next run with the same fingerprint, in place or in another dir, tries them all again."""
    a = store(tmp_path / "a")
    a.resume([])
    a.add_failure("v1", "v1.mp4", "cannot open as a video: Invalid data found")
    a.add_failure("v2", "v2.mp4", "decoder process died: signal 11 (SIGSEGV)", kind="crash")
    with pytest.raises(NothingEvaluated):
        check_some_evaluated(a, 2, ["v1", "v2"])
    again = store(tmp_path / "b")
    assert again.resume([str(tmp_path / "*")]) == set() and again.resumed_from is None
    assert store(tmp_path / "a").resume([]) == set()
