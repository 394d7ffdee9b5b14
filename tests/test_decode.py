import os

import pytest
from pytorchvideo.data.encoded_video import EncodedVideo

from benchmark.decode import DecodeError, decode_threads, decode_video, process_cores
from benchmark.evaluate import loader_workers


def test_decodes_every_frame_once_with_pytorchvideos_duration(videos):
    decoded = decode_video(videos["landscape"])
    reference = EncodedVideo.from_path(str(videos["landscape"]), decode_audio=False)
    assert decoded.duration == reference.duration
    assert len(decoded.pts) == 90 and decoded.pts == sorted(set(decoded.pts))
    frames = decoded.rgb([0, 89, 0])
    assert frames.shape == (3, 128, 170, 3) and frames.dtype.is_floating_point is False
    assert (frames[0] == frames[2]).all()


@pytest.mark.parametrize("content, reason", [
    (None, "file not found"),
    (b"", "cannot open as a video"),
    (b"\x00\x01garbage" * 1000, "cannot open as a video"),
])
def test_unreadable_files_give_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        decode_video(path)


def test_auto_decode_threads_leave_the_cores_to_the_model():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert decode_threads("auto", 0, "cpu") == cores  # the main process decodes between passes
    assert decode_threads("auto", 1, "cpu") == 1  # the model's threads take every core
    assert decode_threads("auto", 2, "cuda") == max(1, (cores - 1) // 2)
    assert decode_threads(3, 2, "cpu") == 3 and decode_threads("0", 1, "cpu") == 0


def test_processes_started_together_share_the_cores(monkeypatch):
    """torchrun's 8 processes on a 16-core machine: 2 cores each, so one loader worker each."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert process_cores() == 2 and loader_workers("auto", "cuda") == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert process_cores() == 16 and loader_workers("auto", "cuda") == 15
