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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.data.files import file_problem

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
    there: str = ""  # when path is None: what is there instead of a video file (a directory, ...)


@dataclass
class Manifest:
    name: str
    videos: list[Video]
    class_names: list[str]  # index = class id
    class_names_source: str
    duplicates: list[str] = field(default_factory=list)
    # Which copy (benchmark/data): the annotation files' SHA-256 where several are read ("" for
    # the Kinetics CSV: the run hashes data.csv), the split and the test videos also in its
    # training list (None: not checked), the subset list, and how many listed videos were found.
    list_sha256: str = ""
    split: int | None = None
    leakage: list[str] | None = None
    subset_name: str | None = None
    subset_sha256: str | None = None
    subset_unlisted: int = 0
    found: int | None = None
    found_fraction: float | None = None
    min_found_fraction: float | None = None
    found_below_threshold: bool = False

    def copy_fields(self) -> dict:
        """What the run's row can record about the copy it read (docs/data.md)."""
        return {"split": self.split, "leakage": None if self.leakage is None else len(self.leakage),
                "subset": self.subset_name, "subset_sha256": self.subset_sha256,
                "videos_found": self.found, "found_fraction": self.found_fraction,
                "found_below_threshold": self.found_below_threshold}


def default_classnames_cache() -> Path:
    return Path(torch.hub.get_dir()) / "kinetics_classnames.json"


def read_class_names(path: Path) -> list[str]:
    """Read the model card's ``{"\\"name\\"": id}`` JSON (quotes around names optional), or a
    ``.txt`` file of one name a line, ids in line order (mmaction2's label_map_k600.txt)."""
    problem = file_problem(path)
    if problem:
        raise ManifestError(f"{path}: {problem}")
    if Path(path).suffix.lower() == ".txt":
        lines = _read_text(Path(path)).splitlines()
        return class_list({line.strip(): i for i, line in enumerate(
            line for line in lines if line.strip())}, path)

    def no_repeats(pairs: list) -> dict:
        seen = [name for name, _ in pairs]
        twice = next((name for name in seen if seen.count(name) > 1), None)
        if twice is not None:
            raise ManifestError(f"{path}: class name {twice!r} is listed twice")
        return dict(pairs)

    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=no_repeats)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: cannot read class names: {err}") from None
    return class_list(mapping, path)


def class_list(mapping, path: Path | str) -> list[str]:
    """Names by id from a ``name -> id`` mapping whose ids are 0..N-1, each once."""
    if not isinstance(mapping, dict):
        raise ManifestError(f"{path}: expected a JSON object of class name -> integer id (as the "
                            f"model card's kinetics_classnames.json), got a JSON {type(mapping).__name__}")
    by_id: dict[int, str] = {}
    for name, i in mapping.items():
        name = str(name).strip('"')
        if not isinstance(i, int) or isinstance(i, bool):
            raise ManifestError(f"{path}: class {name!r}: the id must be an integer, got {i!r}")
        if i in by_id:
            raise ManifestError(f"{path}: classes {by_id[i]!r} and {name!r} both have id {i}; "
                                "each id 0..N-1 must name one class")
        by_id[i] = name
    absent = sorted(set(range(len(by_id))) - set(by_id))
    if absent:
        raise ManifestError(f"{path}: class ids must be 0..{len(by_id) - 1} without gaps; "
                            f"no class has id {absent[0]}")
    names = [by_id[i] for i in range(len(by_id))]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise ManifestError(f"{path}: class name {twice!r} is listed twice")
    return names


# Class names taken from the CSV itself: a subset of the model's classes, not a full list.
DERIVED_SOURCES = ("sorted CSV labels", "integer labels")
# () -> (Kinetics-400's 400 names in id order, where they came from): the run passes the names a
# framework ships (benchmark/frameworks/torchvision.py), so that data imports no framework.
OfflineNames = Callable[[], "tuple[list[str], str]"]


def check_class_count(manifest: Manifest, num_classes: int, generated: bool = False) -> None:
    """The class-name list must have the model's number of classes, or the ids the CSV's names
    map to are not the model's: 600 names for a 400-class model shift them silently, and so do
    the sorted names of a subset CSV (``data.class_names=null``). Integer-label lists are the
    model's ids already: names padded. A generated set (sample, toy) has its own classes; a
    Kinetics model on it only shows the pipeline runs, and its labels must still be within the
    model's classes. (The one home of this check: load_dataset runs it.)"""
    names, source = manifest.class_names, manifest.class_names_source
    if len(names) < num_classes and source == "integer labels":
        names.extend(str(i) for i in range(len(names), num_classes))
    if len(names) != num_classes and not generated:
        if source not in DERIVED_SOURCES:
            raise ManifestError(f"{source}: {len(names)} class names, but the model has "
                                f"{num_classes} classes (model.num_classes)")
        raise ManifestError(
            f"data.class_names: {len(names)} class names ({source}) but the model has "
            f"{num_classes} classes (model.num_classes): class ids would not be the model's; "
            "pass the model's class-name file (data.class_names=PATH)")
    if max(v.label for v in manifest.videos or [Video("", None, 0, "")]) >= num_classes:
        raise ManifestError(f"data: labels go beyond the model's {num_classes} classes "
                            f"(model.num_classes); class names came from {source}")


def resolve_class_names(setting: str | None, csv_labels: list[str],
                        offline_names: OfflineNames | None = None) -> tuple[list[str], str]:
    """Class names and where they came from.

    ``setting`` is a file path, ``auto`` (the torch hub cache, else a download into it, else
    ``offline_names()``: the run passes the 400 names torchvision ships, since compute nodes
    often have no network), or None (the sorted label names of the CSV, said loudly: correct
    only for a full CSV).
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
        if offline_names is None:
            raise ManifestError(f"data.class_names=auto: {cache} is not there and could not be "
                                "downloaded; put the file there or pass data.class_names=PATH")
        names, source = offline_names()
        log.warning("class ids: %s (%s is not there)", source, cache)
        return names, source
    if setting:
        problem = file_problem(setting)
        if problem:
            raise ManifestError(f"data.class_names: {setting}: {problem}")
        return read_class_names(Path(setting)), str(setting)
    names = sorted(set(csv_labels))
    log.warning("no class-name file: class ids are the %d sorted label names of the CSV "
                "(right only if the CSV holds every class)", len(names))
    return names, "sorted CSV labels"


def index_videos(root: Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Map file stem -> the video files with that stem directly under ``root`` or one folder
    down, any case of the extension (several when a video is both flat and in a folder, or in
    two containers); and stem -> what is there for video names that are not files (a folder
    named x.mp4). Entries that cannot be read (symlink loops, no permission) are skipped and
    counted in a warning: one bad entry must not stop a run over the others."""
    found: dict[str, list[Path]] = {}
    odd: dict[str, str] = {}
    skipped: list[str] = []

    def listing(folder: str) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as entries:
                return list(entries)
        except OSError as err:
            skipped.append(f"{folder}: {err.strerror}")
            return []

    if not root.is_dir():
        return found, odd
    for entry in listing(str(root)):
        try:
            is_folder = entry.is_dir() and not _is_video_name(entry.name)
        except OSError as err:
            skipped.append(f"{entry.path}: {err.strerror}")
            continue
        for item in listing(entry.path) if is_folder else [entry]:
            stem = os.path.splitext(item.name)[0]
            if not _is_video_name(item.name):
                continue
            try:
                regular = item.is_file()  # cached by scandir: no system call for most files
            except OSError:
                regular = False
            problem = None if regular else file_problem(item.path)
            if problem is None:
                found.setdefault(stem, []).append(Path(item.path))
            elif problem.startswith("cannot be read"):
                skipped.append(f"{item.path}: {problem}")
            else:
                odd.setdefault(stem, f"{item.path}: {problem}")
    if skipped:
        log.warning("data.root %s: skipped %d entries that cannot be read: %s", root, len(skipped),
                    "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
    return found, odd


def _is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


# Which file stands for a video when several share its stem (docs/data.md).
PICK_RULE = "the label's folder, then flat under the root, then another folder; .mp4, .mkv, .webm"


def _pick(candidates: list[Path], root: Path, label_name: str) -> Path:
    """The file ``PICK_RULE`` picks, whatever order the filesystem lists them in."""
    def rank(path: Path) -> tuple:
        place = 0 if path.parent == root / label_name else 1 if path.parent == root else 2
        return place, VIDEO_EXTENSIONS.index(path.suffix.lower()), str(path)
    return min(candidates, key=rank)


def _read_rows(csv_path: Path) -> tuple[str, list[tuple[int, list[str]]]]:
    """Detect the format from the first line; return it with (line number, fields) rows."""
    problem = file_problem(csv_path)
    if problem:
        raise ManifestError(f"{csv_path}: {problem} (set data.csv)")
    lines = _read_text(csv_path).splitlines()
    if not any(line.strip() for line in lines):
        raise ManifestError(f"{csv_path}: the file is empty")
    first = next(csv.reader([lines[0]]))
    if _is_official_header(first):
        columns = [c.strip() for c in first]
        missing = [c for c in OFFICIAL_COLUMNS if c not in columns]
        if missing:
            raise ManifestError(f"{csv_path}:1: header lacks {', '.join(missing)}; expected "
                                "label,youtube_id,time_start,time_end,split[,is_cc]")
        rows = []
        for n, row in enumerate(csv.reader(lines[1:]), start=2):
            if not any(field.strip() for field in row):
                continue  # an empty or whitespace-only line
            if len(row) != len(columns):
                raise ManifestError(f"{csv_path}:{n}: expected {len(columns)} fields as in the "
                                    f"header, got {len(row)}: {','.join(row)!r}")
            rows.append((n, [dict(zip(columns, row))[c] for c in OFFICIAL_COLUMNS]))
        return "official", rows
    if _is_headerless_official(first):
        raise ManifestError(f"{csv_path}:1: no header; the official CSV's first line is "
                            f"'label,youtube_id,time_start,time_end,split[,is_cc]', got {lines[0]!r}")
    if len(lines[0].rsplit(maxsplit=1)) == 2:
        return "path_label", [(n, line.rsplit(maxsplit=1)) for n, line in enumerate(lines, 1)
                              if line.strip()]
    raise ManifestError(f"{csv_path}:1: unrecognised header {lines[0]!r}; expected the official "
                        "'label,youtube_id,time_start,time_end,split' or 'path label' lines")


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; other encodings (Excel's Latin-1) name the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Excel, Windows tools) is dropped
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x}); save "
                            "the CSV as UTF-8 (Excel: 'CSV UTF-8')") from None


def _is_official_header(cells: list[str]) -> bool:
    """A first line naming the official columns, in any order (they are read by name)."""
    return bool({c.strip() for c in cells} & {"label", "youtube_id", "time_start", "time_end"})


def _is_headerless_official(cells: list[str]) -> bool:
    """A first line that is an official row (label,youtube_id,start,end,...) without the header."""
    return len(cells) >= 4 and cells[2].strip().isdigit() and cells[3].strip().isdigit()


def _check_label_range(csv_path: Path, line: int, label: int, num_classes: int | None) -> None:
    """A ``path label`` line's label is one of the model's ids, checked as the line is read
    (before a class list of that size is built for a label such as 30000000)."""
    if num_classes is not None and not 0 <= label < num_classes:
        raise ManifestError(f"{csv_path}:{line}: label {label} is outside the model's "
                            f"{num_classes} classes (0..{num_classes - 1}, model.num_classes)")


def read_manifest(csv_path: str | Path, root: str | Path, class_names: str | None = "auto",
                  name: str = "kinetics400", limit: int | None = None,
                  num_classes: int | None = None,
                  offline_names: OfflineNames | None = None) -> Manifest:
    csv_path, root = Path(csv_path), Path(root or ".")
    kind, rows = _read_rows(csv_path)
    if kind == "official":
        for line, row in rows:
            if not (row[2].strip().isdigit() and row[3].strip().isdigit()):
                raise ManifestError(f"{csv_path}:{line}: time_start/time_end must be whole "
                                    f"seconds, got {row[2]!r}, {row[3]!r}")
        names, source = resolve_class_names(class_names, [row[0] for _, row in rows],
                                            offline_names)
    else:
        for line, row in rows:
            if len(row) != 2 or not row[1].strip().lstrip("-").isdigit():
                raise ManifestError(f"{csv_path}:{line}: expected 'path label' with an integer "
                                    f"label, got {' '.join(row)!r}")
            _check_label_range(csv_path, line, int(row[1]), num_classes)
        labels = [int(row[1]) for _, row in rows]
        if class_names == "auto" and max(labels) >= 400:  # not Kinetics-400's ids
            class_names = None
        names, source = (resolve_class_names(class_names, [], offline_names) if class_names else
                         ([str(i) for i in range(max(labels) + 1)], "integer labels"))
    ids = {label: i for i, label in enumerate(names)}
    if kind == "official" and not root.is_dir():
        raise ManifestError(f"data.root: {root} is not a folder (the videos of {csv_path} are "
                            "looked for directly under it or under <root>/<label>/)")
    index, odd = index_videos(root) if kind == "official" else ({}, {})
    several: list[str] = []
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
            candidates = index.get(video_id, [])
            path = _pick(candidates, root, label_name) if candidates else None
            if len(candidates) > 1:
                several.append(f"{video_id} -> {path} (of {len(candidates)})")
            label = ids[label_name]
            expected = (f"{video_id}{{{','.join(VIDEO_EXTENSIONS)}}} under {root} or "
                        f"{root}/{label_name}/")
        else:
            label = int(row[1])
            if not 0 <= label < len(names):
                raise ManifestError(f"{csv_path}:{line}: label {label} is outside the "
                                    f"{len(names)} classes ({source})")
            label_name = names[label]
            listed = Path(row[0].strip())
            candidate = listed if listed.is_absolute() else root / listed
            # The path relative to the root is the id: a/0001.mp4 and b/0001.mp4 are two videos.
            video_id = (listed.relative_to(root) if listed.is_relative_to(root) else listed).as_posix()
            path, expected = candidate if candidate.is_file() else None, str(candidate)
        there = "" if path else odd.get(video_id) or _not_a_file(expected, kind)
        if video_id in seen:
            duplicates.append(video_id)
            continue
        seen.add(video_id)
        videos.append(Video(video_id, path, label, label_name, expected, there))
    if duplicates:
        log.warning("%s: %d duplicate video ids evaluated once each: %s", csv_path,
                    len(duplicates), ", ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else ""))
    if several:
        log.info("%s: %d videos have several files; picked by the rule (%s): %s", csv_path,
                 len(several), PICK_RULE, "; ".join(several[:5]) + (" ..." if len(several) > 5 else ""))
    if limit is not None:
        videos = videos[:limit]
    if videos and not any(v.path for v in videos):
        raise ManifestError(f"data.root: none of the {len(videos)} listed videos of {csv_path} is "
                            f"there (looked for {videos[0].expected}, ...)")
    return Manifest(name, videos, names, source, duplicates)


def _not_a_file(path: str, kind: str) -> str:
    """What is at a listed ``path label`` path that is not a file ("" when nothing is)."""
    problem = file_problem(path) if kind == "path_label" else None
    return f"{path}: {problem}" if problem and problem != "no such file" else ""


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
