"""Readers of the official annotation files of SSv2, UCF101 and HMDB51, as published (no
conversion step), each returning the same ``Manifest`` as the Kinetics CSV reader.

Each reader names the file and line (or JSON entry) of a bad row in one line, finds the videos
under ``data.root`` as the releases lay them out, and says where its format and its class ids
are documented. Kinetics-600/700 need no reader of their own: their CSVs have Kinetics-400's
layout (``benchmark.manifest``), and their ids are the alphabetical order of the class names
(docs/data.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from benchmark.data.files import file_problem
from benchmark.data.manifest import (VIDEO_EXTENSIONS, Manifest, ManifestError, Video, index_videos,
                                class_list)

log = logging.getLogger(__name__)

SPLITS = (1, 2, 3)  # UCF101 and HMDB51 publish three train/test splits


def check_split(dataset: str, split) -> int:
    """The split id, 1-3; anything else stops the run naming the key."""
    if isinstance(split, bool) or split not in SPLITS:
        raise ManifestError(f"data.split: {split!r} is not a {dataset} split; the official "
                            f"splits are 1, 2 and 3")
    return int(split)


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) for the non-blank lines of a UTF-8 text file; Windows line
    endings, a byte-order mark and trailing blank lines (all in real copies) read as nothing."""
    problem = file_problem(path)
    if problem:
        raise ManifestError(f"{path}: {problem}")
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def files_sha256(paths: list[Path]) -> str:
    """SHA-256 over the annotation files read (names and bytes): which list a run used."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read_json(path: Path, what: str):
    problem = file_problem(path)
    if problem:
        raise ManifestError(f"{path}: {problem} ({what})")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: cannot read {what}: {err}") from None


def _folder(path, dataset: str, holds: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise ManifestError(f"data.csv: {folder} is not a folder ({dataset}: the folder of the "
                            f"official split files, {holds})")
    return folder


def _find(root: Path, relative: str) -> Path | None:
    """A UCF101/HMDB51 video: ``root/<class>/<name>`` as released, else flat under the root;
    the released extension (.avi) first, then a re-encode's (.mp4, .mkv, .webm)."""
    rel = Path(relative)
    for folder in (root / rel.parent, root):
        for suffix in (rel.suffix, *VIDEO_EXTENSIONS):
            candidate = folder / (rel.stem + suffix)
            if candidate.is_file():
                return candidate
    return None


# ---- Something-Something v2 -------------------------------------------------------------------

def ssv2_class_name(template: str) -> str:
    """The class of an SSv2 video: its template with the brackets removed
    (``"Putting [something] into [something]"`` -> ``"Putting something into something"``),
    as pytorchvideo/data/ssv2.py and mmaction2's parse_sthv2_splits do."""
    return template.replace("[", "").replace("]", "")


def read_ssv2(videos_json: str | Path, labels_json: str | Path, root: str | Path,
              name: str = "ssv2") -> Manifest:
    """Something-Something v2 from its two official JSON files.

    Format (facebookresearch/pytorchvideo ``pytorchvideo/data/ssv2.py``
    ``_read_video_paths_and_labels``; open-mmlab/mmaction2 ``tools/data/parse_file_list.py``
    ``parse_sthv2_splits``): ``something-something-v2-labels.json`` is an object class name ->
    id as a string (``{"Approaching something with your camera": "0", ...}``);
    ``something-something-v2-validation.json`` a list of ``{"id": "74225", "label": ...,
    "template": "Spinning [something] that quickly stops spinning", "placeholders": [...]}``.
    The class is the template without its brackets (not ``label``, which has the objects filled
    in); the id is the labels file's. Videos: ``<root>/<id>.webm`` (VP9, 12 fps), or a
    re-encode with the same stem.
    """
    videos_json, labels_json, root = Path(videos_json), Path(labels_json), Path(root or ".")
    mapping = _read_json(labels_json, "the SSv2 labels file, class name -> id")
    if isinstance(mapping, dict):
        ids = {}
        for label, i in mapping.items():
            if isinstance(i, bool) or not (isinstance(i, int) or str(i).strip().isdigit()):
                raise ManifestError(f"{labels_json}: class {label!r}: the id must be a whole "
                                    f"number (a string such as \"0\" in the official file), got {i!r}")
            ids[label] = int(i)
        mapping = ids
    names = class_list(mapping, labels_json)
    by_name = {label: i for i, label in enumerate(names)}
    entries = _read_json(videos_json, "the SSv2 video list")
    if not isinstance(entries, list):
        raise ManifestError(f"{videos_json}: expected a JSON list of {{id, template, ...}} "
                            f"(something-something-v2-validation.json), got a JSON "
                            f"{type(entries).__name__}")
    if not root.is_dir():
        raise ManifestError(f"data.root: {root} is not a folder (the SSv2 videos <id>.webm)")
    index, odd = index_videos(root)
    videos, seen, duplicates = [], set(), []
    for n, entry in enumerate(entries, 1):
        where = f"{videos_json}: entry {n}"
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise ManifestError(f"{where}: expected an object with 'id' and 'template', got "
                                f"{json.dumps(entry)[:80]}")
        video_id, label = str(entry["id"]).strip(), ssv2_class_name(str(entry["template"]))
        if label not in by_name:
            raise ManifestError(f"{where} (id {video_id}): class {label!r} (the template without "
                                f"brackets) is not in {labels_json}")
        if video_id in seen:
            duplicates.append(video_id)
            continue
        seen.add(video_id)
        found = sorted(index.get(video_id, []), key=lambda p: VIDEO_EXTENSIONS.index(p.suffix.lower()))
        path = found[0] if found else None
        videos.append(Video(video_id, path, by_name[label], label,
                            f"{video_id}.webm under {root}", "" if path else odd.get(video_id, "")))
    if duplicates:
        log.warning("%s: %d duplicate video ids evaluated once each: %s", videos_json,
                    len(duplicates), ", ".join(duplicates[:5]))
    return Manifest(name, videos, names, str(labels_json), duplicates,
                    list_sha256=files_sha256([videos_json, labels_json]))


# ---- UCF101 -----------------------------------------------------------------------------------

def read_class_index(path: Path) -> list[str]:
    """UCF101's ``classInd.txt``: ``"1 ApplyEyeMakeup"`` lines, ids 1..101 each once; returns
    the names by 0-based id (id - 1, as mmaction2's parse_ucf101_splits maps them)."""
    by_id: dict[int, str] = {}
    for n, line in read_lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ManifestError(f"{path}:{n}: expected '<id> <ClassName>' (as '1 ApplyEyeMakeup'), "
                                f"got {line!r}")
        i = int(fields[0])
        if i in by_id or fields[1] in by_id.values():
            raise ManifestError(f"{path}:{n}: id {i} or class {fields[1]!r} is listed twice")
        by_id[i] = fields[1]
    absent = sorted(set(range(1, len(by_id) + 1)) - set(by_id))
    if not by_id or absent:
        raise ManifestError(f"{path}: class ids must be 1..N without gaps"
                            + (f"; no class has id {absent[0]}" if absent else "; the file lists none"))
    return [by_id[i] for i in range(1, len(by_id) + 1)]


def read_ucf101(folder: str | Path, split, root: str | Path, name: str = "ucf101") -> Manifest:
    """UCF101's test split ``split`` from the official ``ucfTrainTestlist`` folder.

    Format (pytorch/vision ``torchvision/datasets/ucf101.py`` ``_select_fold``; open-mmlab/mmaction2
    ``tools/data/parse_file_list.py`` ``parse_ucf101_splits``): ``classInd.txt`` lines
    ``"1 ApplyEyeMakeup"`` (1-based: class id = the number - 1); ``testlist0N.txt`` lines
    ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"``; ``trainlist0N.txt`` lines
    ``"<path> <class number>"``. The class is the path's folder, which is classInd's name even
    where the file name spells it otherwise (``HandstandPushups/v_HandStandPushups_g01_c01.avi``
    in the official lists). Note torchvision's UCF101 numbers the classes by its sorted folder
    names instead, which swaps two pairs (docs/data.md). Videos: ``<root>/<Class>/<name>.avi``.
    """
    split = check_split("UCF101", split)
    folder, root = _folder(folder, "UCF101", "classInd.txt, testlist0N.txt, trainlist0N.txt"), Path(root or ".")
    class_file, test_file = folder / "classInd.txt", folder / f"testlist{split:02d}.txt"
    train_file = folder / f"trainlist{split:02d}.txt"
    names = read_class_index(class_file)
    ids = {label: i for i, label in enumerate(names)}
    videos, seen, duplicates = [], set(), []
    for n, line in read_lines(test_file):
        fields = line.split()
        if len(fields) != 1 or "/" not in fields[0]:
            raise ManifestError(f"{test_file}:{n}: expected '<Class>/<video>.avi' (as "
                                f"'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi'), got {line!r}")
        label = fields[0].split("/")[0]
        if label not in ids:
            raise ManifestError(f"{test_file}:{n}: class folder {label!r} is not in {class_file}")
        video_id = Path(fields[0]).stem
        if video_id in seen:
            duplicates.append(video_id)
            continue
        seen.add(video_id)
        videos.append(Video(video_id, _find(root, fields[0]), ids[label], label,
                            f"{root / fields[0]}"))
    train = _ucf101_train(train_file, ids)
    read = [class_file, test_file] + ([train_file] if train is not None else [])
    return Manifest(name, videos, names, str(class_file), duplicates, split=split,
                    leakage=_leakage(videos, train, test_file, train_file),
                    list_sha256=files_sha256(read))


def _ucf101_train(path: Path, ids: dict[str, int]) -> set[str] | None:
    """The video ids of a trainlist (None when the file is not there: leakage unchecked)."""
    if file_problem(path) == "no such file":
        log.warning("%s is not there: the test split's overlap with the training list (leakage) "
                    "is not checked", path)
        return None
    train = set()
    for n, line in read_lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or "/" not in fields[0]:
            raise ManifestError(f"{path}:{n}: expected '<Class>/<video>.avi <class number>', got "
                                f"{line!r}")
        train.add(Path(fields[0]).stem)
    return train


def _leakage(videos: list[Video], train: set[str] | None, test_file, train_file) -> list[str] | None:
    """The test videos that are also in the split's training list (compared without case, so a
    copy's respelling does not hide one); None when unchecked. Logged loudly, naming them."""
    if train is None:
        return None
    lowered = {t.lower() for t in train}
    leaked = [v.video_id for v in videos if v.video_id.lower() in lowered]
    if leaked:
        log.warning("LEAKAGE: %d test videos of %s are also in the training list %s: %s",
                    len(leaked), test_file, train_file,
                    ", ".join(leaked[:10]) + (" ..." if len(leaked) > 10 else ""))
    return leaked


# ---- HMDB51 -----------------------------------------------------------------------------------

HMDB51_FILE = re.compile(r"^(?P<label>.+)_test_split(?P<split>\d+)\.txt$")
HMDB51_TAGS = {"0": "unused", "1": "train", "2": "test"}


def read_hmdb51(folder: str | Path, split, root: str | Path, name: str = "hmdb51") -> Manifest:
    """HMDB51's test split ``split`` from the official ``testTrainMulti_7030_splits`` folder.

    Format (pytorch/vision ``torchvision/datasets/hmdb51.py`` ``_select_fold``, TRAIN_TAG 1,
    TEST_TAG 2; facebookresearch/pytorchvideo ``pytorchvideo/data/hmdb51.py``): one file
    ``<class>_test_split<N>.txt`` per class and split, lines ``"<video>.avi <tag>"`` with tag
    1 = train, 2 = test, 0 = unused. Class ids: the alphabetical order of the 51 class names, as
    torchvision's HMDB51 numbers them (``find_classes``: sorted class folder names) and
    mmaction2's parse_hmdb51_split (sorted folders). Videos: ``<root>/<class>/<video>.avi``.
    """
    split = check_split("HMDB51", split)
    folder, root = _folder(folder, "HMDB51", "<class>_test_split1.txt ..."), Path(root or ".")
    files = {}
    for path in folder.iterdir():
        match = HMDB51_FILE.match(path.name)
        if match and match["split"] == str(split):
            files[match["label"]] = path
    if not files:
        raise ManifestError(f"data.csv: {folder} holds no <class>_test_split{split}.txt files "
                            "(HMDB51's testTrainMulti_7030_splits)")
    names = sorted(files)
    test: list[tuple[str, str, int]] = []  # (file name, class, id)
    train: set[str] = set()
    for i, label in enumerate(names):
        for n, line in read_lines(files[label]):
            fields = line.rsplit(maxsplit=1)
            if len(fields) != 2 or fields[1] not in HMDB51_TAGS:
                raise ManifestError(f"{files[label]}:{n}: expected '<video>.avi <0|1|2>' (0 unused, "
                                    f"1 train, 2 test), got {line!r}")
            if fields[1] == "2":
                test.append((fields[0], label, i))
            elif fields[1] == "1":
                train.add(Path(fields[0]).stem)
    videos, seen, duplicates = [], set(), []
    for file_name, label, i in test:
        video_id = Path(file_name).stem
        if video_id in seen:
            duplicates.append(video_id)
            continue
        seen.add(video_id)
        videos.append(Video(video_id, _find(root, f"{label}/{file_name}"), i, label,
                            str(root / label / file_name)))
    read = list(files.values())
    return Manifest(name, videos, names, f"sorted class names of {folder}", duplicates,
                    split=split, leakage=_leakage(videos, train, f"split {split} of {folder}",
                                                  "(tag 1 rows)"),
                    list_sha256=files_sha256(read))


def read_official(fmt: str, cfg) -> Manifest:
    """The manifest of ``data.format`` (ssv2 | ucf101 | hmdb51) from a ``conf/data`` config."""
    if fmt == "ssv2":
        if not cfg.class_names:
            raise ManifestError("data.class_names: not set for SSv2 (the official "
                                "something-something-v2-labels.json)")
        return read_ssv2(cfg.csv, cfg.class_names, cfg.root, cfg.name)
    if fmt == "ucf101":
        return read_ucf101(cfg.csv, cfg.split, cfg.root, cfg.name)
    if fmt == "hmdb51":
        return read_hmdb51(cfg.csv, cfg.split, cfg.root, cfg.name)
    raise ManifestError(f"data.format: {fmt!r} is not one of kinetics, ssv2, ucf101, hmdb51")
