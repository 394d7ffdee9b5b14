import json
from pathlib import Path

import pytest

import benchmark.data.manifest as manifest_module
from benchmark.data.manifest import ManifestError, read_class_names, read_manifest
from benchmark.frameworks.torchvision import TORCHVISION_NAMES
from benchmark.run.models import offline_class_names

HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


@pytest.fixture
def copy(tmp_path):
    """A Kinetics-style copy: files flat under the root and under <label>/, and a class map."""
    root = tmp_path / "videos"
    (root / "riding a bike").mkdir(parents=True)
    (root / "aaa_000010_000020.mp4").write_bytes(b"x")
    (root / "riding a bike" / "bbb_000001_000011.mkv").write_bytes(b"x")
    names = tmp_path / "kinetics_classnames.json"
    names.write_text(json.dumps({'"abseiling"': 0, '"air drumming"': 1, '"riding a bike"': 2}))
    return root, names


def write_csv(tmp_path, text, name="val.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_official_csv_finds_files_flat_and_in_label_folders(tmp_path, copy):
    root, names = copy
    csv = write_csv(tmp_path, HEADER + "abseiling,aaa,10,20,val,0\n"
                    '"riding a bike",bbb,1,11,val,0\nair drumming,ccc,5,15,val,0\n')
    manifest = read_manifest(csv, root, str(names))
    a, b, c = manifest.videos
    assert (a.video_id, a.label, a.path) == ("aaa_000010_000020", 0, root / "aaa_000010_000020.mp4")
    assert (b.label, b.label_name, b.path) == (2, "riding a bike", root / "riding a bike" / "bbb_000001_000011.mkv")
    assert c.path is None and c.label == 1 and "ccc_000005_000015" in c.expected
    assert manifest.class_names == ["abseiling", "air drumming", "riding a bike"]


def test_class_ids_come_from_the_class_file_not_the_csv(tmp_path, copy):
    root, names = copy
    csv = write_csv(tmp_path, HEADER + '"riding a bike",bbb,1,11,val,0\n')
    assert read_manifest(csv, root, str(names)).videos[0].label == 2
    fallback = read_manifest(csv, root, None)  # no class file: sorted CSV labels
    assert fallback.videos[0].label == 0 and fallback.class_names_source == "sorted CSV labels"


def test_path_label_list(tmp_path, copy):
    root, _ = copy
    csv = write_csv(tmp_path, "aaa_000010_000020.mp4 0\nmissing.mp4 3\n", "val.txt")
    manifest = read_manifest(csv, root, None)
    assert [(v.video_id, v.label) for v in manifest.videos] == [("aaa_000010_000020.mp4", 0),
                                                                ("missing.mp4", 3)]
    assert manifest.videos[0].path == root / "aaa_000010_000020.mp4"
    assert manifest.videos[1].path is None


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No class-name file in the torch hub cache and none to download (a compute node)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(manifest_module, "CLASSNAMES_URL", (tmp_path / "nowhere.json").as_uri())


def test_offline_official_csv_gets_kinetics_ids_from_torchvision(tmp_path, copy, offline, caplog):
    root, _ = copy
    csv = write_csv(tmp_path, HEADER + "abseiling,aaa,10,20,val,0\nzumba,zzz,0,10,val,0\n"
                    '"passing American football (in game)",ppp,0,10,val,0\n')
    manifest = read_manifest(csv, root, "auto", offline_names=offline_class_names)
    assert [v.label for v in manifest.videos] == [0, 399, 208]
    assert len(manifest.class_names) == 400 and manifest.class_names_source == TORCHVISION_NAMES
    assert TORCHVISION_NAMES in caplog.text  # the log says where the ids came from


def test_offline_path_label_list_keeps_its_integer_ids(tmp_path, copy, offline):
    root, _ = copy
    for name in ("a.mp4", "b.mp4"):
        (root / name).write_bytes(b"x")
    kinetics = read_manifest(write_csv(tmp_path, "a.mp4 7\nb.mp4 0\n", "k.txt"), root, "auto",
                             offline_names=offline_class_names)
    assert [v.label for v in kinetics.videos] == [7, 0]
    assert kinetics.videos[0].label_name == "arranging flowers"  # Kinetics-400's id 7
    other = read_manifest(write_csv(tmp_path, "a.mp4 7\nb.mp4 599\n", "o.txt"), root, "auto",
                          offline_names=offline_class_names)
    assert [v.label for v in other.videos] == [7, 599]  # not Kinetics-400: its own integers
    assert other.class_names_source == "integer labels" and len(other.class_names) == 600


@pytest.mark.parametrize("text, message", [
    (HEADER + "abseiling,aaa,10,20,val,0\nabseiling,bbb,10\n", r"val.csv:3: expected 6 fields"),
    (HEADER + "abseiling,aaa,ten,20,val,0\n", r"val.csv:2: time_start/time_end"),
    (HEADER + "dancing,aaa,10,20,val,0\n", r"val.csv:2: label 'dancing' is not in the class names"),
    ("label,youtube_id,split\n", r"val.csv:1: header lacks time_start, time_end"),
    ("\n\n", r"val.csv: the file is empty"),
    ("just-one-field\n", r"val.csv:1: unrecognised header"),
    ("a.mp4 0\nb.mp4 zero\n", r"val.csv:2: expected 'path label'"),
])
def test_bad_csv_errors_name_the_file_and_line(tmp_path, copy, text, message):
    root, names = copy
    with pytest.raises(ManifestError, match=message):
        read_manifest(write_csv(tmp_path, text), root, str(names))


def test_missing_csv_and_class_file(tmp_path, copy):
    root, names = copy
    with pytest.raises(ManifestError, match="nope.csv: no such file"):
        read_manifest(tmp_path / "nope.csv", root, str(names))
    csv = write_csv(tmp_path, HEADER + "abseiling,aaa,10,20,val,0\n")
    with pytest.raises(ManifestError, match="data.class_names: .*nope.json: no such file"):
        read_manifest(csv, root, str(tmp_path / "nope.json"))


def test_duplicates_are_reported_and_kept_once_and_limit(tmp_path, copy):
    root, names = copy
    csv = write_csv(tmp_path, HEADER + "abseiling,aaa,10,20,val,0\nabseiling,aaa,10,20,val,0\n"
                    "air drumming,ccc,5,15,val,0\n")
    manifest = read_manifest(csv, root, str(names))
    assert [v.video_id for v in manifest.videos] == ["aaa_000010_000020", "ccc_000005_000015"]
    assert manifest.duplicates == ["aaa_000010_000020"]
    assert len(read_manifest(csv, root, str(names), limit=1).videos) == 1


def test_class_names_file_ids_must_be_contiguous(tmp_path):
    path = tmp_path / "names.json"
    path.write_text(json.dumps({'"a"': 0, '"b"': 2}))
    with pytest.raises(ManifestError, match="class ids must be 0..1"):
        read_class_names(path)


def test_generated_set_reads_back_through_the_official_format(action_set):
    manifest = read_manifest(action_set / "validate.csv", action_set,
                             str(action_set / "kinetics_classnames.json"))
    assert len(manifest.videos) == 4 and all(v.path and v.path.is_file() for v in manifest.videos)
    assert sorted(v.label_name for v in manifest.videos) == sorted(manifest.class_names)
    assert all(manifest.class_names[v.label] == v.label_name for v in manifest.videos)


def test_path_label_ids_are_paths_relative_to_the_root(tmp_path):
    """a/0001.mp4 and b/0001.mp4 are two videos, not a duplicate (the stem is not the id)."""
    root = tmp_path / "videos"
    for folder in ("a", "b"):
        (root / folder).mkdir(parents=True)
        (root / folder / "0001.mp4").write_bytes(b"x")
    csv = write_csv(tmp_path, f"a/0001.mp4 0\nb/0001.mp4 1\n{root}/b/0001.mp4 1\n", "val.txt")
    manifest = read_manifest(csv, root, None)
    assert [v.video_id for v in manifest.videos] == ["a/0001.mp4", "b/0001.mp4"]
    assert [v.path for v in manifest.videos] == [root / "a" / "0001.mp4", root / "b" / "0001.mp4"]
    assert manifest.duplicates == ["b/0001.mp4"]  # the same file listed by its absolute path


def test_a_stem_with_several_files_is_picked_by_the_rule(tmp_path, copy, caplog):
    """Label folder, then flat, then another folder; .mp4, .mkv, .webm: never the listing order."""
    root, names = copy
    (root / "abseiling").mkdir()
    cases = {  # youtube id -> (files, the one the rule picks), all labelled "abseiling"
        "lf": (["abseiling/lf_000000_000010.webm", "lf_000000_000010.mp4"], 0),
        "fo": (["riding a bike/fo_000000_000010.mp4", "fo_000000_000010.webm"], 1),
    }
    for i in range(6):  # the same folder, three containers: .mp4 first
        files = [f"ext{i}_000000_000010{e}" for e in (".webm", ".mkv", ".mp4")]
        files = files[i % 3:] + files[:i % 3]  # made on disk in another order each time
        cases[f"ext{i}"] = (files, files.index(f"ext{i}_000000_000010.mp4"))
    for files, _ in cases.values():
        for name in files:
            (root / name).write_bytes(b"x")
    csv = write_csv(tmp_path, HEADER + "".join(f"abseiling,{key},0,10,val,0\n" for key in cases))
    with caplog.at_level("INFO", logger="benchmark.data.manifest"):
        manifest = read_manifest(csv, root, str(names))
    for video, (files, pick) in zip(manifest.videos, cases.values()):
        assert video.path == root / files[pick], video.video_id
    assert "8 videos have several files; picked by the rule" in caplog.text


def test_a_csv_with_a_byte_order_mark_reads(tmp_path, copy):
    root, names = copy
    csv = tmp_path / "bom.csv"
    csv.write_text(HEADER + "abseiling,aaa,10,20,val,0\n", encoding="utf-8-sig")
    assert csv.read_bytes().startswith(b"\xef\xbb\xbf")
    assert [v.label for v in read_manifest(csv, root, str(names)).videos] == [0]


def test_a_root_that_is_not_a_folder_or_holds_no_listed_video_is_refused(tmp_path, copy):
    root, names = copy
    csv = write_csv(tmp_path, HEADER + "abseiling,zzz,10,20,val,0\nabseiling,aaa,10,20,val,0\n")
    with pytest.raises(ManifestError, match=r"data.root: .*typo is not a folder"):
        read_manifest(csv, root.parent / "typo", str(names))
    with pytest.raises(ManifestError, match=r"data.root: none of the 1 listed videos .* is there"):
        read_manifest(csv, root, str(names), limit=1)  # only zzz, which is not on disk
    assert len(read_manifest(csv, root, str(names)).videos) == 2  # one found is enough
    with pytest.raises(ManifestError, match=r"data.root: none of the 1 listed"):
        read_manifest(write_csv(tmp_path, "nothere.mp4 0\n", "v.txt"), root, None)
