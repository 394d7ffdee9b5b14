"""The dataset list: which videos to evaluate, where they are on disk, and their class ids.

Reads the two CSV formats Kinetics-400 users have (the official annotation CSV and the
pytorchvideo/PySlowFast ``path label`` list), finds the files under the data root, and maps label
names to ids through ``kinetics_classnames.json`` (ids are the alphabetical order of the 400 names;
a subset of the CSV does not contain them all, so the class-name file is the source of truth).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CLASSNAMES_URL = "https://dl.fbaipublicfiles.com/pyslowfast/dataset/class_names/kinetics_classnames.json"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")
OFFICIAL_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


class ManifestError(ValueError):
    """Bad dataset input; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Video:
    video_id: str
    path: Path | None  # None: not found on disk (recorded as a failure, not an error)
    label: int
    label_name: str
    expected: str = ""  # what was looked for, for the failure reason when path is None


@dataclass
class Manifest:
    name: str
    videos: list[Video]
    class_names: list[str]  # index = class id
    class_names_source: str
    duplicates: list[str] = field(default_factory=list)


def default_classnames_cache() -> Path:
    return Path(torch.hub.get_dir()) / "kinetics_classnames.json"


def read_class_names(path: Path) -> list[str]:
    """Read the model card's ``{"\\"name\\"": id}`` JSON (quotes around names optional)."""
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: cannot read class names: {err}") from None
    names = {int(i): str(name).strip('"') for name, i in mapping.items()}
    if sorted(names) != list(range(len(names))):
        raise ManifestError(f"{path}: class ids must be 0..{len(names) - 1} without gaps")
    return [names[i] for i in range(len(names))]


def resolve_class_names(setting: str | None, csv_labels: list[str]) -> tuple[list[str], str]:
    """Class names and where they came from.

    ``setting`` is a file path, ``auto`` (the torch hub cache, else a download into it), or
    None (the sorted label names of the CSV, said loudly: correct only for a full CSV).
    """
    if setting == "auto":
        cache = default_classnames_cache()
        if not cache.exists():
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                # Downloads into a temporary file and renames it only when complete.
                torch.hub.download_url_to_file(CLASSNAMES_URL, str(cache), progress=False)
            except Exception as err:  # no network is an expected state, not a crash
                log.warning("could not download %s (%s); put the file at %s or set data.class_names",
                            CLASSNAMES_URL, err, cache)
        if cache.exists():
            return read_class_names(cache), str(cache)
    elif setting:
        if not Path(setting).exists():
            raise ManifestError(f"data.class_names: {setting}: no such file")
        return read_class_names(Path(setting)), str(setting)
    names = sorted(set(csv_labels))
    log.warning("no class-name file: class ids are the %d sorted label names of the CSV "
                "(right only if the CSV holds every class)", len(names))
    return names, "sorted CSV labels"


def _index_videos(root: Path) -> dict[str, Path]:
    """Map file stem -> path for videos directly under ``root`` or one folder down."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for entry in os.scandir(root):
        entries = os.scandir(entry.path) if entry.is_dir() else [entry]
        for item in entries:
            stem, ext = os.path.splitext(item.name)
            if ext in VIDEO_EXTENSIONS and item.is_file():
                found.setdefault(stem, Path(item.path))
    return found


def _read_rows(csv_path: Path) -> tuple[str, list[tuple[int, list[str]]]]:
    """Detect the format from the first line; return it with (line number, fields) rows."""
    if not csv_path.is_file():
        raise ManifestError(f"{csv_path}: no such file (set data.csv)")
    lines = csv_path.read_text().splitlines()
    if not any(line.strip() for line in lines):
        raise ManifestError(f"{csv_path}: the file is empty")
    first = next(csv.reader([lines[0]]))
    if first and first[0].strip() == "label":
        columns = [c.strip() for c in first]
        missing = [c for c in OFFICIAL_COLUMNS if c not in columns]
        if missing:
            raise ManifestError(f"{csv_path}:1: header lacks {', '.join(missing)}; expected "
                                "label,youtube_id,time_start,time_end,split[,is_cc]")
        rows = []
        for n, row in enumerate(csv.reader(lines[1:]), start=2):
            if row and len(row) != len(columns):
                raise ManifestError(f"{csv_path}:{n}: expected {len(columns)} fields as in the "
                                    f"header, got {len(row)}: {','.join(row)!r}")
            if row:
                rows.append((n, [dict(zip(columns, row))[c] for c in OFFICIAL_COLUMNS]))
        return "official", rows
    if len(lines[0].rsplit(maxsplit=1)) == 2:
        return "path_label", [(n, line.rsplit(maxsplit=1)) for n, line in enumerate(lines, 1)
                              if line.strip()]
    raise ManifestError(f"{csv_path}:1: unrecognised header {lines[0]!r}; expected the official "
                        "'label,youtube_id,time_start,time_end,split' or 'path label' lines")


def read_manifest(csv_path: str | Path, root: str | Path, class_names: str | None = "auto",
                  name: str = "kinetics400", limit: int | None = None) -> Manifest:
    csv_path, root = Path(csv_path), Path(root or ".")
    kind, rows = _read_rows(csv_path)
    if kind == "official":
        for line, row in rows:
            if not (row[2].strip().isdigit() and row[3].strip().isdigit()):
                raise ManifestError(f"{csv_path}:{line}: time_start/time_end must be whole "
                                    f"seconds, got {row[2]!r}, {row[3]!r}")
        names, source = resolve_class_names(class_names, [row[0] for _, row in rows])
    else:
        for line, row in rows:
            if len(row) != 2 or not row[1].strip().lstrip("-").isdigit():
                raise ManifestError(f"{csv_path}:{line}: expected 'path label' with an integer "
                                    f"label, got {' '.join(row)!r}")
        labels = [int(row[1]) for _, row in rows]
        names, source = (resolve_class_names(class_names, []) if class_names else
                         ([str(i) for i in range(max(labels) + 1)], "integer labels"))
    ids = {label: i for i, label in enumerate(names)}
    index = _index_videos(root) if kind == "official" else {}
    videos: list[Video] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for line, row in rows:
        if kind == "official":
            label_name = row[0].strip()
            if label_name not in ids:
                raise ManifestError(f"{csv_path}:{line}: label {label_name!r} is not in the class "
                                    f"names ({source})")
            video_id = f"{row[1].strip()}_{int(row[2]):06d}_{int(row[3]):06d}"
            path = index.get(video_id)
            label = ids[label_name]
            expected = (f"{video_id}{{{','.join(VIDEO_EXTENSIONS)}}} under {root} or "
                        f"{root}/{label_name}/")
        else:
            label = int(row[1])
            if not 0 <= label < len(names):
                raise ManifestError(f"{csv_path}:{line}: label {label} is outside the "
                                    f"{len(names)} classes ({source})")
            label_name = names[label]
            candidate = Path(row[0].strip())
            candidate = candidate if candidate.is_absolute() else root / candidate
            video_id, path, expected = candidate.stem, candidate if candidate.is_file() else None, str(candidate)
        if video_id in seen:
            duplicates.append(video_id)
            continue
        seen.add(video_id)
        videos.append(Video(video_id, path, label, label_name, expected))
    if duplicates:
        log.warning("%s: %d duplicate video ids evaluated once each: %s", csv_path,
                    len(duplicates), ", ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else ""))
    if limit is not None:
        videos = videos[:limit]
    return Manifest(name, videos, names, source, duplicates)


def data_fingerprint(videos: list[Video]) -> tuple[int, str]:
    """(videos found, sha256 over their sorted "video id<TAB>file size" lines): copies of
    Kinetics differ in which listed videos they hold (and in how they were re-encoded), so two
    runs compare only when their fingerprints do."""
    pairs = []
    for video in videos:
        try:
            pairs.append(f"{video.video_id}\t{os.stat(video.path).st_size}\n")
        except (OSError, TypeError):  # not found (path None) or gone since it was listed
            continue
    return len(pairs), hashlib.sha256("".join(sorted(pairs)).encode()).hexdigest()


def load_dataset(cfg) -> Manifest:
    """The manifest a ``conf/data`` config describes; generated sets are made first if needed."""
    if cfg.get("synthetic"):
        from benchmark.synthetic import ActionSetSpec, ensure_action_set

        ensure_action_set(Path(cfg.root), ActionSetSpec(**cfg.synthetic))
    if not cfg.get("csv"):
        raise ManifestError(f"data.csv: not set for data={cfg.name} (e.g. KINETICS_CSV=... or "
                            "data.csv=PATH)")
    return read_manifest(cfg.csv, cfg.root, cfg.class_names, cfg.name, cfg.limit)
