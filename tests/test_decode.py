import os

import pytest
import torch
from pytorchvideo.data.encoded_video import EncodedVideo

from benchmark.decode import DecodeError, decode_video, threads_per_decoder


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


class _Threads(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, item):
        return threads_per_decoder("auto")


def test_auto_decode_threads_share_the_cores_among_the_workers():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads_per_decoder("auto") == cores  # data.workers=0: the main process decodes
    assert threads_per_decoder(3) == 3 and threads_per_decoder("0") == 0
    loader = torch.utils.data.DataLoader(_Threads(), batch_size=None, num_workers=2)
    assert set(loader) == {max(1, cores // 2)}
