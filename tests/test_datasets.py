"""The official annotation files of SSv2, Kinetics-600/700, UCF101 and HMDB51, written here in
exactly their published format (awkward rows included), read by the harness; split hygiene; the
subset list; the found fraction; an SSv2 and a UCF101 run end to end through the CLI."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data.datasets import read_hmdb51, read_ssv2, read_ucf101
from benchmark.data.load import load_dataset
from benchmark.data.manifest import ManifestError, read_manifest
from benchmark.data.synthetic import ActionSetSpec, render_action, write_video

from conftest import compose_eval, run_eval

# ---- Something-Something v2 -------------------------------------------------------------------

# As in something-something-v2-labels.json: name -> id as a STRING, not in id order.
SSV2_LABELS = {
    "Approaching something with your camera": "0",
    "Tipping something with something in it over, so something in it falls out": "3",
    "Putting number of something onto something": "2",
    "Pretending to put something into something": "1",
}
# As in something-something-v2-validation.json: ids as strings, several (and multi-word)
# bracketed placeholders; "label" has the objects filled in and is not the class.
SSV2_VIDEOS = [
    {"id": "74225", "label": "approaching a cup with your camera",
     "template": "Approaching [something] with your camera", "placeholders": ["a cup"]},
    {"id": "116154", "label": "tipping a cup with water in it over, so water in it falls out",
     "template": "Tipping [something] with [something in it] over, so [something in it] falls out",
     "placeholders": ["a cup", "water", "water"]},
    {"id": "198186", "label": "putting 3 pens onto a book",
     "template": "Putting [number of] [something] onto [something]",
     "placeholders": ["3", "pens", "a book"]},
    {"id": "3", "label": "pretending to put a key into a box",
     "template": "Pretending to put [something] into [something]", "placeholders": ["a key", "a box"]},
]
SSV2_IDS = {"74225": 0, "116154": 3, "198186": 2, "3": 1}


def write_ssv2(folder: Path, videos=SSV2_VIDEOS, labels=SSV2_LABELS) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "something-something-v2-labels.json").write_text(json.dumps(labels, indent=4))
    (folder / "something-something-v2-validation.json").write_text(json.dumps(videos))
    root = folder / "20bn-something-something-v2"
    root.mkdir(exist_ok=True)
    return (folder / "something-something-v2-validation.json",
            folder / "something-something-v2-labels.json", root)


def test_ssv2_reads_the_official_json(tmp_path):
    videos, labels, root = write_ssv2(tmp_path)
    for video_id in ["74225", "116154", "198186"]:  # "3" is not on disk
        (root / f"{video_id}.webm").write_bytes(b"x")
    manifest = read_ssv2(videos, labels, root)
    assert {v.video_id: v.label for v in manifest.videos} == SSV2_IDS
    assert manifest.class_names[3] == ("Tipping something with something in it over, so "
                                       "something in it falls out")
    by_id = {v.video_id: v for v in manifest.videos}
    assert by_id["74225"].path == root / "74225.webm" and by_id["3"].path is None
    assert by_id["198186"].label_name == "Putting number of something onto something"
    assert len(manifest.list_sha256) == 64


@pytest.mark.parametrize("change, message", [
    (lambda v, l: v.append({"id": "9", "template": "Spinning [something]"}),
     "something-something-v2-validation.json: entry 5 (id 9): class 'Spinning something' (the "
     "template without brackets) is not in"),
    (lambda v, l: v.append({"id": "9", "label": "x"}),
     "something-something-v2-validation.json: entry 5: expected an object with 'id' and 'template'"),
    (lambda v, l: l.update({"Approaching something with your camera": "zero"}),
     "something-something-v2-labels.json: class 'Approaching something with your camera': the id "
     "must be a whole number"),
])
def test_ssv2_bad_rows_name_the_file_and_entry(tmp_path, change, message):
    videos, labels = json.loads(json.dumps(SSV2_VIDEOS)), dict(SSV2_LABELS)
    change(videos, labels)
    with pytest.raises(ManifestError) as err:
        read_ssv2(*write_ssv2(tmp_path, videos, labels))
    assert message in str(err.value)


# ---- UCF101 -----------------------------------------------------------------------------------

# classInd.txt's official order around the two pairs that Python's sorted() orders otherwise
# (Hammering/HammerThrow, JumpingJack/JumpRope), and the class whose file names say
# "HandStandPushups" while its folder and classInd say "HandstandPushups".
UCF_CLASSES = ["ApplyEyeMakeup", "Hammering", "HammerThrow", "HandstandPushups", "JumpingJack",
               "JumpRope", "YoYo"]


def crlf(lines: list[str], blank_tail: int = 2) -> bytes:
    """Windows line endings and trailing blank lines, as the official UCF101 lists have."""
    return ("\r\n".join(lines) + "\r\n" * (1 + blank_tail)).encode()


def write_ucf101(folder: Path, test: list[str], train: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_bytes(crlf([f"{i} {c}" for i, c in enumerate(UCF_CLASSES, 1)]))
    (folder / "testlist01.txt").write_bytes(crlf(test))
    (folder / "trainlist01.txt").write_bytes(crlf(train))
    return folder


def test_ucf101_reads_the_official_lists_and_reports_leakage(tmp_path, caplog):
    splits = write_ucf101(tmp_path / "ucfTrainTestlist", [
        "HandstandPushups/v_HandStandPushups_g01_c01.avi",
        "JumpRope/v_JumpRope_g01_c01.avi",
        "HammerThrow/v_HammerThrow_g02_c03.avi",
    ], [
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 4",
        "HammerThrow/v_HammerThrow_g02_c03.avi 3",  # also a test video: leakage
    ])
    root = tmp_path / "UCF-101"
    (root / "HandstandPushups").mkdir(parents=True)
    (root / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        manifest = read_ucf101(splits, 1, root)
    assert manifest.class_names == UCF_CLASSES
    assert [(v.video_id, v.label) for v in manifest.videos] == [
        ("v_HandStandPushups_g01_c01", 3), ("v_JumpRope_g01_c01", 5), ("v_HammerThrow_g02_c03", 2)]
    assert manifest.videos[0].path == root / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi"
    assert manifest.split == 1 and manifest.leakage == ["v_HammerThrow_g02_c03"]
    assert "LEAKAGE" in caplog.text and "v_HammerThrow_g02_c03" in caplog.text
    # torchvision's UCF101 numbers classes by sorted folder names: not classInd's ids.
    assert sorted(UCF_CLASSES) != UCF_CLASSES


def test_ucf101_bad_lines_name_the_file_and_line(tmp_path):
    splits = write_ucf101(tmp_path, ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                     "Juggling/v_Juggling_g01_c01.avi"], [])
    with pytest.raises(ManifestError) as err:
        read_ucf101(splits, 1, tmp_path)
    assert f"{splits / 'testlist01.txt'}:2: class folder 'Juggling' is not in" in str(err.value)
    (splits / "classInd.txt").write_bytes(crlf(["1 ApplyEyeMakeup", "3 YoYo"]))
    with pytest.raises(ManifestError, match="class ids must be 1..N without gaps; no class has id 2"):
        read_ucf101(splits, 1, tmp_path)


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51"])
@pytest.mark.parametrize("split", [0, 4])
def test_a_split_outside_1_to_3_is_refused(tmp_path, dataset, split):
    cfg = compose_eval(f"data={dataset}", f"data.csv={tmp_path}", f"data.split={split}")
    with pytest.raises(ManifestError) as err:
        load_dataset(cfg.data)
    assert str(err.value) == (f"data.split: {split} is not a {dataset.upper()} split; the official "
                              "splits are 1, 2 and 3")


# ---- HMDB51 -----------------------------------------------------------------------------------

def test_hmdb51_reads_the_official_split_files(tmp_path, caplog):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    rows = {  # real HMDB51 names carry '&', '(', ')', '#', '!'; lines end "<tag> " (a space)
        "sword": ["Blade_&_Sword_(1998)_sword_f_cm_np2_le_bad_3.avi 2 ",
                  "#122_Cleaning_Up_The_Beach_In_Chiba__Japan_sword_f_cm_np1_fr_med_0.avi 0 ",
                  "Return_of_the_King!_sword_u_cm_np1_ri_goo_1.avi 1 "],
        "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 ",
                       "Blade_&_Sword_(1998)_sword_f_cm_np2_le_bad_3.avi 1 "],  # leak
        "cartwheel": [],  # a class file with no test rows
    }
    for label, lines in rows.items():
        (splits / f"{label}_test_split1.txt").write_bytes(crlf(lines, 1))
        (splits / f"{label}_test_split2.txt").write_text("x.avi 2\n")
    root = tmp_path / "hmdb51_org"
    (root / "sword").mkdir(parents=True)
    (root / "sword" / "Blade_&_Sword_(1998)_sword_f_cm_np2_le_bad_3.avi").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        manifest = read_hmdb51(splits, 1, root)
    assert manifest.class_names == ["brush_hair", "cartwheel", "sword"]  # alphabetical
    assert [(v.video_id, v.label) for v in manifest.videos] == [
        ("April_09_brush_hair_u_nm_np1_ba_goo_0", 0), ("Blade_&_Sword_(1998)_sword_f_cm_np2_le_bad_3", 2)]
    assert manifest.videos[1].path == root / "sword" / "Blade_&_Sword_(1998)_sword_f_cm_np2_le_bad_3.avi"
    assert manifest.leakage == ["Blade_&_Sword_(1998)_sword_f_cm_np2_le_bad_3"]
    assert "LEAKAGE" in caplog.text
    (splits / "sword_test_split1.txt").write_text("a.avi 2\nb.avi 3\n")
    with pytest.raises(ManifestError) as err:
        read_hmdb51(splits, 1, root)
    assert f"{splits / 'sword_test_split1.txt'}:2: expected '<video>.avi <0|1|2>'" in str(err.value)


# ---- Kinetics-600/700 -------------------------------------------------------------------------

def test_kinetics600_ids_are_the_alphabetical_order_of_the_names(tmp_path):
    """The Kinetics-400 CSV layout; ids from the sorted names of the full CSV, or from a
    one-name-a-line file (mmaction2's label_map_k600.txt) in line order."""
    names = ["abseiling", "passing American football (in game)", "passing soccer ball", "pull ups",
             "pulling espresso shot"]
    rows = ["label,youtube_id,time_start,time_end,split"] + [
        f'"{name}",yt{i:09d},{i},{i + 10},val' for i, name in reversed(list(enumerate(names)))]
    (tmp_path / "validate.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / f"yt{0:09d}_000000_000010.mp4").write_bytes(b"x")
    base = ["data=kinetics600", f"data.csv={tmp_path / 'validate.csv'}", f"data.root={tmp_path}"]
    manifest = load_dataset(compose_eval(*base).data)
    assert manifest.class_names == names == sorted(names)
    assert {v.label_name: v.label for v in manifest.videos} == {n: i for i, n in enumerate(names)}
    (tmp_path / "label_map_k600.txt").write_bytes(crlf(names))
    label_map = f"data.class_names={tmp_path / 'label_map_k600.txt'}"
    assert load_dataset(compose_eval(*base, label_map).data).class_names == names


# ---- data.subset and the found fraction -------------------------------------------------------

def kinetics_overrides(action_set: Path, *more: str) -> list[str]:
    return ["data=kinetics400", f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
            f"data.class_names={action_set / 'kinetics_classnames.json'}", *more]


def test_kinetics400_manifest_is_unchanged_without_the_new_keys(action_set):
    manifest = load_dataset(compose_eval(*kinetics_overrides(action_set)).data)
    direct = read_manifest(action_set / "validate.csv", action_set,
                           str(action_set / "kinetics_classnames.json"), "kinetics400")
    assert manifest.videos == direct.videos and manifest.class_names == direct.class_names
    assert manifest.list_sha256 == "" and manifest.subset_name is None
    assert manifest.found == len(manifest.videos) and not manifest.found_below_threshold


def test_subset_evaluates_exactly_the_listed_ids(action_set, tmp_path, caplog):
    ids = [v.video_id for v in load_dataset(compose_eval(*kinetics_overrides(action_set)).data).videos]
    subset = tmp_path / "reference-copy.txt"
    subset.write_bytes(crlf([ids[2], ids[0], "not_in_the_list"]))
    with caplog.at_level(logging.WARNING):
        manifest = load_dataset(compose_eval(*kinetics_overrides(
            action_set, f"data.subset={subset}", "data.limit=1")).data)
    assert [v.video_id for v in manifest.videos] == [ids[0]]  # list order, then the limit
    assert manifest.subset_name == "reference-copy.txt"
    assert manifest.subset_sha256 == hashlib.sha256(subset.read_bytes()).hexdigest()
    assert manifest.subset_unlisted == 1 and "not_in_the_list" in caplog.text
    assert manifest.copy_fields()["subset"] == "reference-copy.txt"


@pytest.mark.parametrize("content, message", [
    (f"a\r\nb c\r\n", ":2: expected one video id a line, got 'b c'"),
    ("a\n\nb\na\n", ":4: video id 'a' is listed twice (first on line 1)"),
    ("\n\n", ": the subset file lists no video ids (data.subset)"),
    ("nothing_here\n", "none of its 1 ids is in the annotation list (its first: 'nothing_here'"),
])
def test_a_bad_subset_file_is_one_line_naming_file_and_line(action_set, tmp_path, content, message):
    subset = tmp_path / "ids.txt"
    subset.write_text(content)
    with pytest.raises(ManifestError) as err:
        load_dataset(compose_eval(*kinetics_overrides(action_set, f"data.subset={subset}")).data)
    assert message in str(err.value) and str(subset) in str(err.value)
    assert "\n" not in str(err.value)


def test_found_fraction_below_the_threshold_is_loud_and_flagged(action_set, tmp_path, caplog):
    csv = tmp_path / "val.csv"
    csv.write_text((action_set / "validate.csv").read_text() + '"moving left",notthere,0,10,validate\n')
    overrides = ["data=kinetics400", f"data.csv={csv}", f"data.root={action_set}",
                 f"data.class_names={action_set / 'kinetics_classnames.json'}"]
    with caplog.at_level(logging.WARNING):
        manifest = load_dataset(compose_eval(*overrides).data)
    assert (manifest.found, len(manifest.videos)) == (4, 5) and manifest.found_fraction == 0.8
    assert manifest.found_below_threshold and manifest.copy_fields()["found_below_threshold"]
    assert "FOUND TOO FEW: 4 of 5 listed videos (80.00%)" in caplog.text
    assert not load_dataset(compose_eval(*overrides, "data.min_found_fraction=0.8").data).found_below_threshold
    with pytest.raises(ManifestError, match=r"data.min_found_fraction: 1.5 must be between 0 and 1"):
        load_dataset(compose_eval(*overrides, "data.min_found_fraction=1.5").data)


# ---- end to end: SSv2 and UCF101 laid out as released, through python -m benchmark.eval --------

def render(path: Path, action: str, seed: int, fps: int, **encode) -> None:
    spec = ActionSetSpec(seconds=2.2, width=48, height=40, fps=fps)
    write_video(path, render_action(action, spec, np.random.default_rng(seed)), fps, **encode)


def run_tiny(tmp_path: Path, classes: int, *data: str, failed: int = 0) -> pd.DataFrame:
    out = tmp_path / "out"
    result = run_eval("model=slowfast_tiny", f"model.num_classes={classes}", "views=1x1",
                      "device=cpu", "cost.flops=false", "cost.throughput_iters=0", *data,
                      f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={out}")
    assert json.loads((out / "metrics.json").read_text())["videos_failed"] == failed
    predictions = pd.read_parquet(out / "predictions.parquet")
    predictions.attrs["log"] = result.stdout + result.stderr
    return predictions


def test_ssv2_run_end_to_end_and_its_row_says_which_copy(tmp_path):
    """<id>.webm, VP9 at 12 fps (the release's encoding; PyAV's libvpx-vp9), flat in the root;
    a subset list that leaves one video out and names one not on disk: metrics.json and the
    table row carry listed/found/decodable/evaluated, the subset's name and hash, the found
    fraction and the FOUND TOO FEW flag (3 of 4 < 0.98), which the log says too. Under the
    zoo's SSv2 protocol (segments of the 30 fps frames)."""
    missing = {"id": "99999", "label": "approaching a box with your camera",
               "template": "Approaching [something] with your camera", "placeholders": ["a box"]}
    videos, labels, root = write_ssv2(tmp_path / "ssv2", SSV2_VIDEOS + [missing])
    for n, video_id in enumerate(SSV2_IDS):
        render(root / f"{video_id}.webm", "moving left", n, 12, codec="libvpx-vp9",
               options={"deadline": "realtime", "cpu-used": "8"})
    subset = tmp_path / "reference-copy.txt"
    subset.write_text("3\n74225\n99999\n116154\n")  # not 198186
    predictions = run_tiny(tmp_path, 4, "data=ssv2", f"data.csv={videos}",
                           f"data.class_names={labels}", f"data.root={root}",
                           f"data.subset={subset}", "protocol=pytorchvideo_ssv2", failed=1)
    want = {k: v for k, v in SSV2_IDS.items() if k != "198186"}
    assert dict(zip(predictions.video_id, predictions.label)) == want
    assert "FOUND TOO FEW: 3 of 4 listed videos (75.00%)" in predictions.attrs["log"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    sha = hashlib.sha256(subset.read_bytes()).hexdigest()
    assert metrics["protocol"] == "pytorchvideo_ssv2"  # the zoo's SSv2 test, end to end
    assert {k: metrics[k] for k in ("videos_listed", "videos_found", "videos_decodable",
                                    "videos_evaluated", "subset", "subset_sha256", "split",
                                    "leakage", "found_fraction", "min_found_fraction",
                                    "found_below_threshold")} == {
        "videos_listed": 4, "videos_found": 3, "videos_decodable": 3, "videos_evaluated": 3,
        "subset": "reference-copy.txt", "subset_sha256": sha, "split": None, "leakage": None,
        "found_fraction": 0.75, "min_found_fraction": 0.98, "found_below_threshold": True}
    row = pd.read_csv(tmp_path / "results" / "evaluations.csv", dtype=str).iloc[0]
    assert (row.videos, row.found, row.decodable) == ("3/4", "3/4", "3/4")
    assert (row.subset, row.subset_sha256) == (f"reference-copy.txt@{sha[:8]}", sha)
    assert (row.found_fraction, row.found_below_threshold) == ("0.75", "True")
    shown = (tmp_path / "results" / "evaluations.md").read_text()
    assert f"| **FOUND TOO FEW: 75% < 98%**, ssv2, something-something-v2-validation.json@" in shown
    assert f"subset reference-copy.txt@{sha[:8]}" in shown and "decodable 3/4" in shown
    assert "**FOUND TOO FEW: 75% < 98%**: fewer of the listed" in (
        tmp_path / "out" / "report.md").read_text()


def test_ucf101_run_end_to_end(tmp_path):
    """UCF-101/<Class>/v_<Class>_gXX_cYY.avi (MPEG-4 in AVI, as released) and split 2's lists."""
    test = ["HandstandPushups/v_HandStandPushups_g01_c01.avi", "JumpRope/v_JumpRope_g03_c02.avi",
            "Hammering/v_Hammering_g05_c01.avi"]
    splits = tmp_path / "ucfTrainTestlist"
    write_ucf101(splits, [], [])
    (splits / "testlist02.txt").write_bytes(crlf(test))
    (splits / "trainlist02.txt").write_bytes(crlf(["YoYo/v_YoYo_g01_c01.avi 7"]))
    for n, line in enumerate(test):
        render(tmp_path / "UCF-101" / line, "moving up", n, 25, codec="mpeg4", pix_fmt="yuv420p")
    predictions = run_tiny(tmp_path, len(UCF_CLASSES), "data=ucf101", f"data.csv={splits}",
                           "data.split=2", f"data.root={tmp_path / 'UCF-101'}")
    assert dict(zip(predictions.video_id, predictions.label)) == {
        "v_HandStandPushups_g01_c01": 3, "v_JumpRope_g03_c02": 5, "v_Hammering_g05_c01": 1}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["split"], metrics["leakage"], metrics["found_below_threshold"]) == (2, 0, False)
    row = pd.read_csv(tmp_path / "results" / "evaluations.csv", dtype=str).iloc[0]
    assert (row.split, row.leakage, row.found_below_threshold) == ("2", "0", "False")
    assert "**FOUND TOO FEW" not in (tmp_path / "results" / "evaluations.md").read_text()


# ---- SSv2 model configs -----------------------------------------------------------------------

@pytest.mark.parametrize("model, top1, top5", [("slowfast_r50_ssv2", 61.68, 86.92),
                                               ("slow_r50_ssv2", 60.04, 85.19)])
def test_ssv2_model_configs_name_their_data_set_and_views(model, top1, top5):
    """pytorchvideo's zoo SSv2 rows (docs/source/model_zoo.md): 174 classes, 1 clip x 3 crops."""
    cfg = compose_eval(f"model={model}", "data=ssv2")
    assert (cfg.views.clips, cfg.views.crops) == (1, 3)
    assert cfg.model.builder.model_num_class == cfg.model.num_classes == 174
    assert cfg.model.published.dataset == "ssv2" and cfg.model.published.views == "1x3"
    assert (cfg.model.published.top1, cfg.model.published.top5) == (top1, top5)
    assert "/model_zoo/ssv2/" in cfg.model.checkpoint_url


@pytest.mark.slow
def test_ssv2_slow_r50_builds_with_174_outputs():
    from benchmark.run.models import build_model
    import torch

    model = build_model(compose_eval("model=slow_r50_ssv2", "model.weights=random").model)
    with torch.no_grad():
        out = model.module(torch.zeros(1, 3, 8, 256, 256))
    assert out.shape == (1, 174)
