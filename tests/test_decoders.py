"""The decoder backends (benchmark/data/decoders.py) against PyAV on the six real videos, under
the loader's supervision and through the real entry point; the protocol proofs under each
backend are in tests/test_protocols.py (``test_protocols_hold_under_each_decoder``)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.data.decoders import FFMPEG_HINT, decode
from benchmark.data.loader import KILL_ON
from benchmark.data.manifest import Video
from benchmark.data.synthetic import ActionSetSpec, ensure_action_set
from benchmark.frameworks import timing
from benchmark.frameworks.views import sample_clips
from benchmark.run.decoder_compare import compare_frames, frame_rows
from benchmark.run.batches import predict
from benchmark.run.clip_loader import VideoClipsDataset

from conftest import REAL_NAMES, REPO, SHARED_VIDEOS, TINY_SPEC, compose_eval, real_video_missing
from test_reliability import eval_process, loader_overrides, video_ids

OTHERS = ["torchcodec", "decord"]
AVI = "xvid_packed_bframes.avi"


@functools.lru_cache(maxsize=None)
def decoded(name: str, backend: str):
    """A real video decoded by ``backend`` (once per test session), with all its RGB frames."""
    path = SHARED_VIDEOS / name
    if not path.is_file():
        pytest.skip(real_video_missing(name))
    video = decode(path, backend, threads=1)
    return video, video.rgb(list(range(len(video.frames))))


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("name", [n for n in REAL_NAMES if n != AVI])
def test_each_backend_gives_pyavs_frames_and_timestamps(name, backend):
    ref, ref_rgb = decoded(name, "pyav")
    video, rgb = decoded(name, backend)
    assert video.pts == ref.pts and video.decoded_pts == ref.pts
    assert (video.time_base, video.start_pts, video.end_pts, video.header_duration) == \
        (ref.time_base, ref.start_pts, ref.end_pts, ref.header_duration)
    assert torch.equal(rgb, ref_rgb)
    assert video.notes == []


def test_on_the_packed_b_frame_avi_each_backend_records_how_it_differs():
    """The file where the backends legitimately differ: PyAV labels the B-frames with the AVI's
    packet times, so sorted by pts two frames in every three swap places; torchcodec and decord
    give the decoder's display order (the same pictures, each pair swapped back); torchcodec's
    index lists 164 frames and the last fails; decord has no timestamps for the file. Each says
    so in its notes, which a run records with the video's prediction."""
    ref, ref_rgb = decoded(AVI, "pyav")
    assert len(ref.pts) == 164 and ref.pts[:3] == [1, 2, 3] and ref.notes == []
    tc, tc_rgb = decoded(AVI, "torchcodec")
    assert tc.pts == ref.pts[:-1]  # stops one frame early
    assert tc.notes == ["torchcodec decoded 163 of the 164 frames its index lists (Requested "
                        "next frame while there are no more frames left to decode.)",
                        "torchcodec gave 163 distinct frames, the header lists 164"]
    diff = compare_frames(ref.pts, ref_rgb, tc.pts, tc_rgb)
    assert diff["pts_only_pyav"] == 1 and diff["pts_only_this"] == 0
    assert diff["frames_differing"] == diff["frames_moved"] == 108  # 2 of every 3 frames
    assert diff["moved_by"] == "-1 +1"
    de, de_rgb = decoded(AVI, "decord")
    assert de.notes == ["decord gives no timestamps for this file: frame i is taken at "
                        "start + i / 25 fps"]
    assert de.pts == list(range(164))  # from the rate, from the start: one tick before PyAV's
    assert torch.equal(de_rgb[:163], tc_rgb)  # the same pictures as torchcodec's, in its order


def test_make_decoders_frame_rows_say_what_each_backend_decoded():
    """``make decoders``' per-video rows (one timing round here): PyAV is its own yardstick, the
    short file is identical under every backend, the AVI's differences are in its rows."""
    paths = [SHARED_VIDEOS / "short_1s.mp4", SHARED_VIDEOS / AVI]
    if not all(p.is_file() for p in paths):
        pytest.skip(real_video_missing(AVI))
    rows = pd.DataFrame(frame_rows(paths, repeats=1)).set_index(["video", "decoder"])
    assert len(rows) == 6 and (rows.xs("pyav", level="decoder").decode_vs_pyav == 1).all()
    short = rows.xs("short_1s.mp4")
    assert (short.frames == 32).all() and (short.max_pixel_diff == 0).all()
    assert (short.notes == "").all() and (short.decode_cpu_s > 0).all()
    avi = rows.xs(AVI)
    assert avi.frames.tolist() == [164, 163, 164] and avi.pts_only_pyav.tolist() == [0, 1, 1]
    assert avi.frames_moved["torchcodec"] == 108 and "163 of the 164" in avi.notes["torchcodec"]
    assert "no timestamps" in avi.notes["decord"]


def test_the_loader_records_a_backends_notes_with_the_video(tmp_path):
    path = SHARED_VIDEOS / AVI
    if not path.is_file():
        pytest.skip(real_video_missing(AVI))
    videos = [Video("avi", path, 0, "a")]
    items = {b: VideoClipsDataset(videos, [0], TINY_SPEC, 2, timing("pytorchvideo_0.1.5"), 1, None,
                                  decoder=b)[0] for b in ["pyav", *OTHERS]}
    assert items["pyav"].note is None and items["pyav"].failure is None
    assert "no timestamps" in items["decord"].note
    assert "163 of the 164 frames" in items["torchcodec"].note
    assert all(item.clips.shape == items["pyav"].clips.shape for item in items.values())


@pytest.fixture(scope="module")
def sample_paths() -> list[Path]:
    """The built-in sample set (data=sample), generated on first use."""
    data = compose_eval("data=sample").data
    csv = ensure_action_set(Path(data.root), ActionSetSpec(**data.synthetic))
    return sorted(Path(csv).parent.rglob("*.mp4"))


@pytest.mark.parametrize("backend", OTHERS)
def test_each_backend_decodes_the_lossless_generated_set_as_pyav_does(sample_paths, backend):
    """The generated sets are lossless H.264 (x264 qp 0, High 4:4:4 Predictive) in yuv420p mp4,
    chosen so every decoder reads them: the same frames and timestamps from each."""
    for path in sample_paths:
        ref, video = decode(path, "pyav", threads=1), decode(path, backend, threads=1)
        frames = list(range(len(ref.frames)))
        assert len(video.frames) == len(frames) == 120 and video.pts == ref.pts
        assert torch.equal(video.rgb(frames), ref.rgb(frames)) and video.notes == []


def test_every_backend_gives_the_sample_set_the_same_top5(sample_paths, tiny_model):
    """What the issue asks of each backend: the sample set evaluated with PyAV's top-5 (here the
    tiny model in process, 2 clips x 3 crops, through evaluate's ``predict``)."""
    top5 = {}
    for backend in ["pyav", *OTHERS]:
        clips = [(i, sample_clips(decode(p, backend, threads=1), tiny_model.spec, 2,
                                  timing("pytorchvideo_0.1.5"))) for i, p in enumerate(sample_paths)]
        probs = dict(predict(tiny_model.module, clips, tiny_model.spec, 3, 6,
                             torch.device("cpu"), "fp32"))
        top5[backend] = [probs[i].topk(4).indices.tolist() for i in range(len(sample_paths))]
    assert len(top5["pyav"]) == 3
    assert top5["torchcodec"] == top5["pyav"] and top5["decord"] == top5["pyav"]


def test_a_decord_worker_that_dies_is_recorded_like_a_pyav_one(action_set, tmp_path):
    """The loader's crash isolation holds whichever library decodes (the test hook kills the
    worker as a decoder segfault would); the run's identity and table row name the decoder."""
    ids = video_ids(action_set)
    run = eval_process(loader_overrides(action_set, tmp_path / "run", "data.workers=1",
                                        "decoder=decord", "data.limit=2"), **{KILL_ON: ids[1]})
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert failures.video_id.tolist() == [ids[1]]
    assert (failures.reason[0], failures.kind[0]) == ("decoder process died: signal 11 (SIGSEGV)",
                                                      "crash")
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert predictions.video_id.tolist() == [ids[0]]
    assert predictions.decoder_note.isna().all()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["decoder"], metrics["decoder_version"]) == ("decord", "0.6.0")
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert "decord" in json.dumps(progress)
    table = pd.read_csv(tmp_path / "results" / "evaluations.csv")
    assert table.decoder.tolist() == ["decord"]
    assert "decoder decord" in (tmp_path / "results" / "evaluations.md").read_text()


def test_torchcodec_without_ffmpeg_stops_the_run_with_one_line(tmp_path):
    """FFmpeg's libraries hidden (unloadable files of their names first on the library path):
    one line saying what to install, before any work."""
    hidden = tmp_path / "libs"
    hidden.mkdir()
    for major in range(56, 62):
        (hidden / f"libavutil.so.{major}").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.eval", "decoder=torchcodec", "model=slowfast_tiny",
         "model.num_classes=4", "model.weights=random", "device=cpu",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True,
        timeout=300, env={**os.environ, "LD_LIBRARY_PATH": str(hidden)})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"error: decoder=torchcodec: {FFMPEG_HINT}", result.stderr[-2000:]
