"""The views' tensor work (scaling, crops, layouts, pathways) against pytorchvideo 0.1.5's own
pipeline (benchmark/frameworks/pytorchvideo/reference.py); where the clips fall is tests/test_protocols.py's business."""

import pytest
import torch

from benchmark import frameworks
from benchmark.data.decode import decode_video
from benchmark.frameworks.pytorchvideo.reference import reference_views
from benchmark.frameworks.views import make_views, sample_clips

from conftest import TINY_SPEC

TIMING = frameworks.timing("pytorchvideo_0.1.5")  # the clips of the reference pipeline


@pytest.mark.parametrize("name", ["landscape", "portrait", "short"])
@pytest.mark.parametrize("clips, crops", [(10, 3), (4, 1)])
def test_views_equal_the_reference_pipeline(videos, name, clips, crops):
    """Decode once + timestamp picks + batched transforms == a decode per clip + card transforms."""
    decoded = decode_video(videos[name])
    views = make_views(sample_clips(decoded, TINY_SPEC, clips, TIMING), TINY_SPEC, crops)
    reference = list(reference_views(videos[name], TINY_SPEC, clips, crops))
    assert len(reference) == clips * crops == views[0].shape[0]
    for i, ref in enumerate(reference):
        for ours, theirs in zip(views, ref):
            assert ours[i].shape == theirs[0].shape
            torch.testing.assert_close(ours[i], theirs[0], atol=1e-5, rtol=0)
    assert [v.shape[2] for v in views] == [2, 8]  # slow = fast / alpha frames


def test_crops_differ_and_follow_the_long_side(videos):
    """Landscape crops move left to right, portrait crops top to bottom; 1 crop is the centre."""
    for name in ("landscape", "portrait"):
        clips = sample_clips(decode_video(videos[name]), TINY_SPEC, 1, TIMING)
        three = make_views(clips, TINY_SPEC, 3)[1]
        one = make_views(clips, TINY_SPEC, 1)[1]
        assert not torch.equal(three[0], three[2])
        torch.testing.assert_close(one[0], three[1])


@pytest.mark.parametrize("fault", ["reverse_frames", "bgr", "clips_from_start", "centre_crop_only"])
def test_each_fault_breaks_the_views_it_names(videos, fault):
    """views.fault: the deliberate pipeline bugs the regression check must catch. Each fault's
    views (clips and crops as the run makes them) differ from the good views exactly as named."""
    decoded = decode_video(videos["landscape"])
    good = sample_clips(decoded, TINY_SPEC, 4, TIMING)
    bad = sample_clips(decoded, TINY_SPEC, 4, TIMING, fault=fault)
    expected = {"reverse_frames": good.flip(2), "bgr": good.flip(1),
                "clips_from_start": good[:1].expand_as(good), "centre_crop_only": good}[fault]
    assert torch.equal(bad, expected) and (fault == "centre_crop_only") == torch.equal(bad, good)
    slow, fast = make_views(bad, TINY_SPEC, 3, fault=fault)
    good_slow, good_fast = make_views(good, TINY_SPEC, 3)  # (clip, crop) = 3 * clip + crop
    assert not torch.equal(fast, good_fast)
    if fault == "reverse_frames":
        torch.testing.assert_close(fast, good_fast.flip(2), atol=1e-6, rtol=0)
    elif fault == "bgr":  # the same mean and std per channel: the channels swap
        torch.testing.assert_close(fast, good_fast.flip(1), atol=1e-6, rtol=0)
    elif fault == "clips_from_start":
        torch.testing.assert_close(fast, good_fast[:3].repeat(4, 1, 1, 1, 1), atol=1e-6, rtol=0)
        torch.testing.assert_close(slow, good_slow[:3].repeat(4, 1, 1, 1, 1), atol=1e-6, rtol=0)
    else:  # every crop is the centre one
        for crop in range(3):
            torch.testing.assert_close(fast[crop::3], good_fast[1::3], atol=0, rtol=0)
            torch.testing.assert_close(slow[crop::3], good_slow[1::3], atol=0, rtol=0)


@pytest.fixture(scope="module")
def native_video(tmp_path_factory):
    """Frames already at the scaled size (short side 32 = TINY_SPEC.side_size): no scaling."""
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("native") / "native.mp4", 44, 32, 2.0, seed=4)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("name", ["landscape", "portrait", "native"])
def test_views_in_either_layout_equal_the_reference(videos, native_video, name, layout):
    """The reordered float work (scale first or not at all, crop, then normalise in place) gives
    the reference's views in both layouts, with and without short-side scaling."""
    path = native_video if name == "native" else videos[name]
    views = make_views(sample_clips(decode_video(path), TINY_SPEC, 3, TIMING), TINY_SPEC, 3,
                       memory_format=layout)
    assert all(v.is_contiguous(memory_format=layout) for v in views)
    reference = list(reference_views(path, TINY_SPEC, 3, 3))
    for ours, theirs in zip(views, map(torch.cat, zip(*reference))):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_scaled_size_follows_pytorchvideo_rounding():
    """A long side whose float arithmetic comes out just short is one pixel shorter, as in
    pytorchvideo's short_side_scale, so the harness scales exactly where the reference does."""
    from pytorchvideo.transforms.functional import short_side_scale

    from benchmark.frameworks.views import scaled_size

    for h, w, side in [(256, 340, 256), (32, 44, 32), (240, 320, 256), (300, 171, 256),
                       (28, 61, 224)]:
        expected = short_side_scale(torch.zeros(1, 1, h, w), side).shape[-2:]
        assert scaled_size(h, w, side) == tuple(expected)
    assert scaled_size(28, 61, 224) == (224, 487)  # 61 * 224 / 28 is 488, the float 487.99...
    assert scaled_size(256, 340, 256) == (256, 340)  # a resized Kinetics frame: not scaled



def test_shared_view_functions_equal_pytorchvideos():
    """views.py restates three of pytorchvideo 0.1.5's transforms (the shared code imports no
    framework): each gives pytorchvideo's own result, bit for bit, on odd shapes and every index."""
    from pytorchvideo.transforms import functional as ptv

    from benchmark.frameworks import views as shared

    torch.manual_seed(0)
    for t, n in [(64, 8), (65, 32), (5, 8), (1, 4)]:
        x = torch.arange(t * 2).view(2, t, 1)
        assert torch.equal(shared.uniform_temporal_subsample(x, n, 1),
                           ptv.uniform_temporal_subsample(x, n, 1))
    for h, w in [(240, 320), (321, 240), (256, 256), (97, 131)]:
        frames = torch.rand(3, 4, h, w)
        assert torch.equal(shared.short_side_scale(frames, 112), ptv.short_side_scale(frames, 112))
        for k in (0, 1, 2):
            assert torch.equal(shared.uniform_crop(frames, 96, k), ptv.uniform_crop(frames, 96, k))
