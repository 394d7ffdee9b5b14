"""Nothing lost: awkward inputs are all accounted for, and interrupted runs resume exactly."""

import json
import signal
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from benchmark.data.synthetic import ActionSetSpec, render_action, write_video

from conftest import make_video
from test_eval_cli import REPO, run_eval


def encode_all(path: Path, codec: str, rate: int, frames, time_base: Fraction | None = None,
               **stream_settings) -> Path:
    """Encode ``frames`` (PyAV frames with their pts set) into a new ``path``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        for name, value in stream_settings.items():
            setattr(stream, name, value)
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for frame in [*frames, None]:  # None flushes the encoder
            for packet in stream.encode(frame):
                container.mux(packet)
    return path


def write_vfr(path: Path) -> Path:
    """Frame intervals alternating 20 ms and 50 ms."""
    arrays = render_action("moving right", ActionSetSpec(seconds=2, width=96, height=64),
                           np.random.default_rng(5))
    frames, t = [], 0
    for i, array in enumerate(arrays):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts, frame.time_base = t, Fraction(1, 1000)
        frames.append(frame)
        t += 20 if i % 2 else 50
    return encode_all(path, "libx264", 30, frames, width=96, height=64, pix_fmt="yuv420p",
                      time_base=Fraction(1, 1000))


def write_audio_only(path: Path) -> Path:
    frames = []
    for i in range(20):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 44100, i * 1024
        frames.append(frame)
    return encode_all(path, "aac", 44100, frames)


def set_rotation_90(path: Path) -> Path:
    """Write a 90 degree display matrix into the mp4's track header (PyAV has no muxer option)."""
    data = bytearray(path.read_bytes())
    matrix = data.index(b"tkhd") + 4 + 40  # version/flags .. volume + reserved = 40 bytes
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


# name -> (what is expected: "ok" or a phrase of the failure reason)
EXPECTED = {
    "zero_byte": "cannot open as a video",
    "cut_half": "cannot open as a video",
    "random_bytes": "cannot open as a video",
    "audio_only": "no video stream",
    "not_on_disk": "file not found",
    "one_frame": "ok",  # the frame repeats to fill the clip (UniformTemporalSubsample)
    "half_second": "ok",  # shorter than a clip: every clip starts at 0, frames repeat
    "vfr": "ok",  # frames are picked by timestamp
    "rotation_tag": "ok",  # frames used as stored, like the reference pipeline
    "odd_341x255": "ok",
    "portrait": "ok",
    "grayscale_ffv1": "ok",  # no duration in the header: the last frame's time is used
    "full_hd": "ok",
    "mpeg4_part2": "ok",
    "vp9_webm": "ok",
    "corrupt_first_packets": "ok",  # bad packets are skipped; the later keyframes decode
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """Awkward files in the official layout, listed in one CSV with the class 'moving left'."""
    root = tmp_path_factory.mktemp("corpus")
    folder = root / "moving left"
    folder.mkdir()

    def name(key, ext=".mp4"):
        return folder / f"{key}_000000_000010{ext}"

    good = make_video(root / "good.mp4", 96, 64, 2.0)
    name("zero_byte").write_bytes(b"")
    name("cut_half").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    name("random_bytes").write_bytes(np.random.default_rng(0).bytes(20000))
    write_audio_only(name("audio_only"))
    write_video(name("one_frame"), render_action("moving left", ActionSetSpec(
        seconds=1, width=96, height=64), np.random.default_rng(3))[:1], fps=30)
    make_video(name("half_second"), 96, 64, 0.5)
    write_vfr(name("vfr"))
    set_rotation_90(make_video(name("rotation_tag"), 96, 64, 1.0))
    make_video(name("odd_341x255"), 341, 255, 1.0, pix_fmt="yuv444p")
    make_video(name("portrait"), 64, 96, 1.0)
    gray = render_action("moving left", ActionSetSpec(seconds=1, width=96, height=64),
                         np.random.default_rng(1)).mean(axis=3).astype(np.uint8)
    with av.open(str(name("grayscale_ffv1", ".mkv")), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "gray"
        for array in gray:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    make_video(name("full_hd"), 1920, 1080, 0.5, options={"preset": "ultrafast"})
    make_video(name("mpeg4_part2"), 96, 64, 1.0, codec="mpeg4")
    make_video(name("vp9_webm", ".webm"), 96, 64, 1.0, codec="libvpx-vp9")
    corrupt = make_video(name("corrupt_first_packets"), 96, 64, 2.0,
                         options={"x264-params": "keyint=15:min-keyint=15"})
    data = bytearray(corrupt.read_bytes())
    start = data.index(b"mdat") + 4 + 200  # keep the first NAL header, garble what follows
    data[start:start + 1500] = np.random.default_rng(2).bytes(1500)
    corrupt.write_bytes(bytes(data))

    csv = root / "corpus.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
        f'"moving left",{key},0,10,val\n' for key in EXPECTED))
    (root / "names.json").write_text(json.dumps({'"moving left"': 0, '"moving right"': 1}))
    return csv, root


def corpus_overrides(corpus, out: Path, *extra):
    csv, root = corpus
    return ["model=slowfast_tiny", "model.num_classes=2", "data=kinetics400", f"data.csv={csv}",
            f"data.root={root}", f"data.class_names={root / 'names.json'}", "views.clips=2",
            "device=cpu", "cost.flops=false", "cost.throughput_iters=0",
            f"results_dir={out / 'results'}", f"hydra.run.dir={out / 'run'}", *extra]


def test_every_awkward_video_is_accounted_for(corpus, tmp_path):
    run_eval(*corpus_overrides(corpus, tmp_path))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert metrics["videos_listed"] == len(EXPECTED) == (
        metrics["videos_evaluated"] + metrics["videos_failed"])
    outcome = {row.video_id.split("_0000")[0]: "ok" for row in predictions.itertuples()}
    outcome.update({row.video_id.split("_0000")[0]: row.reason for row in failures.itertuples()})
    for key, expected in EXPECTED.items():
        assert expected in outcome[key], (key, outcome[key])


def test_strict_stops_at_the_first_failure_with_path_and_reason(corpus, tmp_path):
    result = run_eval(*corpus_overrides(corpus, tmp_path, "strict=true"), check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "zero_byte_000000_000010.mp4: cannot open" in last


def test_slow_decoding_is_a_failure_not_a_hang(corpus, tmp_path):
    # At 1 ms every video fails, so the run itself is an error; failures.csv has the reasons.
    result = run_eval(*corpus_overrides(corpus, tmp_path, "data.limit=13",
                                        "data.decode_timeout_s=0.001"), check=False)
    assert result.returncode != 0 and "no video could be evaluated" in result.stderr
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert "full_hd_000000_000010" in failures.video_id.tolist()
    assert any("took longer than 0.001 s" in r for r in failures.reason)


def test_unwritable_output_is_refused_before_any_work(corpus, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_eval(*corpus_overrides(corpus, tmp_path, f"results_dir={blocker / 'sub'}"),
                      check=False)
    assert result.returncode != 0
    assert f"error: {blocker / 'sub'}: cannot write there" in result.stderr
    assert not (tmp_path / "run" / "parts").exists()


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory) -> Path:
    from benchmark.data.synthetic import ensure_action_set

    root = tmp_path_factory.mktemp("many") / "set"
    ensure_action_set(root, ActionSetSpec(videos_per_class=2, classes=4, seconds=1.5, width=128,
                                          height=96, seed=7))
    return root


def kill_overrides(root: Path, run_dir: Path, *extra):
    return ["model=slowfast_tiny", "model.num_classes=4", "model.weights=random", "data=kinetics400",
            f"data.csv={root / 'validate.csv'}", f"data.root={root}",
            f"data.class_names={root / 'kinetics_classnames.json'}", "device=cpu", "views=5x1",
            "eval.batch_views=1", "eval.flush_every=2", "cost.flops=false",
            "cost.throughput_iters=0", f"results_dir={run_dir.parent / 'results'}",
            f"hydra.run.dir={run_dir}", f"eval.resume_search=[{run_dir.parent}/*]", *extra]


def test_killed_run_resumes_to_the_same_result(many_videos, tmp_path):
    first = tmp_path / "a"
    env_cmd = [sys.executable, "-m", "benchmark.eval", *kill_overrides(many_videos, first)]
    process = subprocess.Popen(env_cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (first / "parts" / "part-r0-000001.parquet").exists():
        assert process.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (first / "metrics.json").exists(), "the run finished before it was killed"
    done_before = sum(len(pd.read_parquet(p)) for p in (first / "parts").glob("part-*.parquet"))
    assert 4 <= done_before < 8

    # Another config never resumes into it: in the same dir it refuses, elsewhere it starts fresh.
    refused = run_eval(*kill_overrides(many_videos, first, "views.clips=2"), check=False)
    assert refused.returncode != 0
    assert "holds an unfinished run of another config (views differ)" in refused.stderr
    fresh = run_eval(*kill_overrides(many_videos, tmp_path / "c", "views.clips=2"))
    assert "not resuming unfinished runs of other configs" in fresh.stdout + fresh.stderr
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["resumed_from"] is None

    # The same command again (a new run dir, as Hydra's default gives) picks up where it stopped.
    resumed = run_eval(*kill_overrides(many_videos, tmp_path / "b"))
    assert (f"resuming {first}: {done_before} of 8 videos already done"
            in resumed.stdout + resumed.stderr)
    whole = run_eval(*kill_overrides(many_videos, tmp_path / "d", "resume=false"))
    assert "resuming" not in whole.stdout + whole.stderr
    got = pd.read_parquet(tmp_path / "b" / "predictions.parquet")
    want = pd.read_parquet(tmp_path / "d" / "predictions.parquet")
    assert got.video_id.tolist() == want.video_id.tolist() and got.video_id.is_unique
    assert len(got) == 8
    np.testing.assert_allclose(np.stack(got.probs), np.stack(want.probs), atol=1e-6)
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in "bd"]
    for key in ("videos_listed", "videos_evaluated", "videos_failed", "top1", "top5",
                "mean_class_accuracy"):
        assert metrics[0][key] == metrics[1][key], key
