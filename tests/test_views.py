from fractions import Fraction

import pytest
import torch
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler

from benchmark.decode import decode_video
from benchmark.reference import reference_views
from benchmark.views import clip_starts, make_views, sample_clips

from conftest import TINY_SPEC


@pytest.mark.parametrize("duration", [Fraction(10), Fraction(301, 30), Fraction(3, 2)])
def test_pytorchvideo_spacing_equals_the_pinned_sampler(duration):
    clip = Fraction(64, 30)
    sampler = ConstantClipsPerVideoSampler(clip, clips_per_video=10)
    expected = [sampler(0, duration, {}).clip_start_sec for _ in range(10)]
    assert clip_starts(duration, clip, 10, "pytorchvideo_0.1.5") == expected


def test_default_spacing_runs_from_start_to_end():
    clip = Fraction(64, 30)
    starts = clip_starts(Fraction(10), clip, 10)
    assert starts[0] == 0 and starts[-1] + clip == 10
    assert all(b - a == (10 - clip) / 9 for a, b in zip(starts, starts[1:]))
    assert clip_starts(Fraction(1), clip, 10) == [0] * 10  # shorter than a clip: all at 0
    assert clip_starts(Fraction(10), clip, 1) == [0]


@pytest.mark.parametrize("name", ["landscape", "portrait", "short"])
@pytest.mark.parametrize("clips, crops, spacing", [(10, 3, "to_end"), (4, 1, "pytorchvideo_0.1.5")])
def test_views_equal_the_reference_pipeline(videos, name, clips, crops, spacing):
    """Decode once + timestamp picks + batched transforms == get_clip per clip + card transforms."""
    decoded = decode_video(videos[name])
    views = make_views(sample_clips(decoded, TINY_SPEC, clips, spacing), TINY_SPEC, crops)
    reference = list(reference_views(videos[name], TINY_SPEC, clips, crops, spacing))
    assert len(reference) == clips * crops == views[0].shape[0]
    for i, ref in enumerate(reference):
        for ours, theirs in zip(views, ref):
            assert ours[i].shape == theirs[0].shape
            torch.testing.assert_close(ours[i], theirs[0], atol=1e-5, rtol=0)
    assert [v.shape[2] for v in views] == [2, 8]  # slow = fast / alpha frames


def test_crops_differ_and_follow_the_long_side(videos):
    """Landscape crops move left to right, portrait crops top to bottom; 1 crop is the centre."""
    for name in ("landscape", "portrait"):
        clips = sample_clips(decode_video(videos[name]), TINY_SPEC, 1)
        three = make_views(clips, TINY_SPEC, 3)[1]
        one = make_views(clips, TINY_SPEC, 1)[1]
        assert not torch.equal(three[0], three[2])
        torch.testing.assert_close(one[0], three[1])
