"""Which copy of a data set was evaluated: an optional video-id list (``data.subset``) to evaluate
exactly a named reference copy's intersection, and the found fraction against a threshold.

Public copies of one validation set hold different videos (Kinetics-400: 19,907 down to 17,747)
and accuracy moves with them, so a run says which list it was limited to (name and SHA-256) and
says loudly when it found too few of the listed videos.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

from benchmark.data.datasets import read_lines
from benchmark.data.manifest import Manifest, ManifestError

log = logging.getLogger(__name__)


def read_subset(path: str | Path) -> list[str]:
    """The ids of a subset file: one video id a line (blank lines ignored); a line with more
    than one field or an id listed twice stops the run naming the file and line."""
    path = Path(path)
    ids: dict[str, int] = {}
    for n, line in read_lines(path):
        if len(line.split()) != 1:
            raise ManifestError(f"{path}:{n}: expected one video id a line, got {line!r}")
        if line in ids:
            raise ManifestError(f"{path}:{n}: video id {line!r} is listed twice (first on line "
                                f"{ids[line]})")
        ids[line] = n
    if not ids:
        raise ManifestError(f"{path}: the subset file lists no video ids (data.subset)")
    return list(ids)


def apply_subset(manifest: Manifest, path: str | Path) -> Manifest:
    """The manifest limited to the subset file's ids, in the annotation list's order; the file's
    name and SHA-256 and the ids it lists that the annotation list does not are recorded."""
    path = Path(path)
    wanted = read_subset(path)
    keep = set(wanted)
    listed = {v.video_id for v in manifest.videos}
    unlisted = [i for i in wanted if i not in listed]
    if unlisted:
        log.warning("data.subset %s: %d of its %d ids are not in the annotation list: %s", path,
                    len(unlisted), len(wanted), ", ".join(unlisted[:5]) + (" ..." if len(unlisted) > 5 else ""))
    if not listed & keep:
        raise ManifestError(f"data.subset: {path}: none of its {len(wanted)} ids is in the "
                            f"annotation list (its first: {wanted[0]!r}; the list's: "
                            f"{manifest.videos[0].video_id if manifest.videos else 'none'!r})")
    log.info("data.subset %s: %d of the %d listed videos", path, len(listed & keep), len(listed))
    return dataclasses.replace(
        manifest, videos=[v for v in manifest.videos if v.video_id in keep],
        subset_name=path.name, subset_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        subset_unlisted=len(unlisted))


def check_found(manifest: Manifest, min_fraction: float) -> Manifest:
    """Found count and fraction of the listed videos; below ``min_fraction`` a loud warning and
    ``found_below_threshold`` for the run's row. A fraction outside 0..1 names the key."""
    if isinstance(min_fraction, bool) or not 0 <= min_fraction <= 1:
        raise ManifestError(f"data.min_found_fraction: {min_fraction!r} must be between 0 and 1")
    listed = len(manifest.videos)
    found = sum(v.path is not None for v in manifest.videos)
    fraction = found / listed if listed else 0.0
    below = fraction < min_fraction
    if below:
        log.warning("FOUND TOO FEW: %d of %d listed videos (%.2f%%) of %s are on disk, below "
                    "data.min_found_fraction %.2f%%: accuracy is not comparable with a full copy's",
                    found, listed, 100 * fraction, manifest.name, 100 * min_fraction)
    return dataclasses.replace(manifest, found=found, found_fraction=fraction,
                               min_found_fraction=float(min_fraction), found_below_threshold=below)
