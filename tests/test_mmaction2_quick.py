"""make test's form of test_mmaction2's slow pipeline proof (make test-slow runs it on all six
shared videos): the same five configs against mmaction2's own Compose, on the two shared videos
that hold the awkward cases in a third of the frames: short_1s (32 frames: every 3D config's
clips loop) and xvid_packed_bframes (decoder order differs from pts order; 25 fps, so X3D's
target_fps floor is not a whole step)."""

from __future__ import annotations

import test_mmaction2
from test_mmaction2 import SLOW_PROOF, mm  # noqa: F401  (mm: the module fixture)

QUICK_VIDEOS = ["short_1s.mp4", "xvid_packed_bframes.avi"]


def test_protocol_equals_mmaction2_s_own_pipeline_for_the_other_configs_on_two_videos(
        mm, monkeypatch):  # noqa: F811
    monkeypatch.setattr(test_mmaction2, "REAL_NAMES", QUICK_VIDEOS)  # prove()'s videos
    test_mmaction2.prove(mm, SLOW_PROOF)
