"""The one entry point to a data set: the reader its ``data.format`` names (the Kinetics CSV:
manifest.py; SSv2, UCF101, HMDB51: datasets.py), the generated sets made first, then the subset
list and the found check (subset.py). Above the readers, so that they never import each other
back (tests check the data package's import contract).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.data.datasets import read_official
from benchmark.data.manifest import (Manifest, ManifestError, OfflineNames, check_class_count,
                                     read_manifest)
from benchmark.data.subset import apply_subset, check_found
from benchmark.data.synthetic import ActionSetSpec, ensure_action_set


def load_dataset(cfg, num_classes: int | None = None,
                 offline_names: OfflineNames | None = None) -> Manifest:
    """The manifest a ``conf/data`` config describes; generated sets are made first if needed.
    ``offline_names``: Kinetics-400's class names when ``auto`` finds no file (resolve_class_names).
    ``data.format`` picks the reader (kinetics: the CSV above; ssv2, ucf101, hmdb51:
    benchmark/data/datasets.py); ``data.subset`` and ``data.min_found_fraction``:
    benchmark/data/subset.py."""
    if cfg.synthetic:
        ensure_action_set(Path(cfg.root), ActionSetSpec(**cfg.synthetic))
    if not cfg.csv:
        raise ManifestError(f"data.csv: not set for data={cfg.name} (e.g. KINETICS_CSV=... or "
                            "data.csv=PATH)")
    fmt, subset = str(cfg.format), cfg.subset
    if fmt == "kinetics":
        manifest = read_manifest(cfg.csv, cfg.root, cfg.class_names, cfg.name,
                                 None if subset else cfg.limit, num_classes, offline_names)
    else:
        manifest = read_official(fmt, cfg)
    if subset:
        manifest = apply_subset(manifest, subset)
    if fmt != "kinetics" or subset:  # the CSV reader applied the limit and this check itself
        manifest.videos = manifest.videos[:cfg.limit] if cfg.limit is not None else manifest.videos
        if not any(v.path for v in manifest.videos):
            raise ManifestError(f"data.root: none of the {len(manifest.videos)} listed videos of "
                                f"{cfg.csv} is there (looked for "
                                f"{manifest.videos[0].expected if manifest.videos else 'nothing'}, ...)")
    manifest = check_found(manifest, cfg.min_found_fraction)
    # A generated set's file names only its own few classes (a pipeline check with any model).
    if num_classes is not None:
        check_class_count(manifest, num_classes, bool(cfg.synthetic))
    return manifest
