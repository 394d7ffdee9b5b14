"""Bad input stops before any work with one line naming the key, file or line (issue 17).

Most cases run the real compose (conf/ + benchmark/run/schema.py) and the real checks in-process:
a CLI run costs seconds of imports here. A few true CLI runs (the end of the file) prove the
path from those errors to one line on stderr, exit 1, no traceback and nothing evaluated.
"""

import json
import os
import zipfile

import pytest
import torch
from hydra import compose, initialize_config_dir
from matplotlib.figure import Figure

from benchmark.run.settings import SettingsError, check_settings
from benchmark.data.load import load_dataset
from benchmark.data.manifest import ManifestError, read_class_names, read_manifest
from benchmark.run.models import WeightsError, load_checkpoint
from benchmark.results.tables import ReportError, check_eval_table
from benchmark.run.schema import config_error_line

from conftest import compose_eval, make_video, run_eval

HEADER = "label,youtube_id,time_start,time_end,split\n"


# ---- settings: the schema catches the type while composing -----------------------------------

@pytest.mark.parametrize("override, line", [
    ("strict=maybe", "strict: expected true or false, got 'maybe'"),
    ("resume=maybe", "resume: expected true or false, got 'maybe'"),
    ("compile=maybe", "compile: expected true or false, got 'maybe'"),
    ("eval.channels_last=maybe", "eval.channels_last: expected true or false, got 'maybe'"),
    ("eval.reuse_memory=maybe", "eval.reuse_memory: expected true or false, got 'maybe'"),
    ("cost.flops=maybe", "cost.flops: expected true or false, got 'maybe'"),
    ("data.limit=abc", "data.limit: expected an integer or null, got 'abc'"),
    ("data.limit=1.5", "data.limit: expected an integer or null, got 1.5"),
    ("views.clips=abc", "views.clips: expected an integer, got 'abc'"),
    ("views.clips=2.5", "views.clips: expected an integer, got 2.5"),
    ("seed=abc", "seed: expected an integer, got 'abc'"),
    ("device.type=mps", "device.type: expected one of auto, cpu, cuda, got 'mps'"),
    ("data.decode_timeout_s=abc", "data.decode_timeout_s: expected a number or null, got 'abc'"),
    ("cost.throughput_iters=abc", "cost.throughput_iters: expected an integer, got 'abc'"),
    ("model.num_classes=many", "model.num_classes: expected an integer, got 'many'"),
    ("data.lmit=3", "data.lmit: no such setting in data; did you mean data.limit?"),
    ("data.xyz=3", "data.xyz: no such setting in data"),
    ("device=mps", "device=mps: no conf/device/mps.yaml; one of auto, cpu, cuda"),
])
def test_schema_rejects_a_wrong_type_naming_the_key(override, line):
    with pytest.raises(Exception) as caught:
        compose_eval("model=slowfast_tiny", override)
    assert config_error_line(caught.value) == line


@pytest.mark.parametrize("override, value", [
    ("strict=no", False), ("strict='false'", False), ("strict=true", True),
    ("resume=no", False), ("compile=no", False), ("cost.flops=false", False),
])
def test_booleans_mean_what_they_say(override, value):
    cfg = compose_eval(override)
    key = override.split("=")[0]
    assert (cfg.cost.flops if key == "cost.flops" else cfg[key]) is value


@pytest.mark.parametrize("override, message", [
    ("eval.batch_views=true", "eval.batch_views: must be auto or >= 1, got True"),
    ("data.decode_threads=abc", "data.decode_threads: must be auto or >= 0"),
    ("data.workers=1.5", "data.workers: must be auto or >= 0, got 1.5"),
    ("cost.throughput_iters=-1", "cost.throughput_iters: must be >= 0"),
])
def test_validation_step_rejects_what_a_type_cannot_say(override, message):
    """``auto``-or-a-number keys are typed Any; check_settings (before any work) decides."""
    with pytest.raises(SettingsError, match=f"^{message}"):
        check_settings(compose_eval("model=slowfast_tiny", override))


def test_every_preset_validates_against_its_group_schema():
    """The data sets, views, devices and decoders compose through their schemas, and so do bench.yaml and
    train_toy.yaml, which use the same groups."""
    from benchmark.run.models import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        # (test_report composes every zoo model with its views)
        for group in ("data", "views", "device", "decoder"):
            for path in sorted((CONF_DIR / group).glob("*.yaml")):
                assert compose("eval", overrides=[f"{group}={path.stem}"])[group] is not None
        assert compose("bench").data.name == "bench"
        assert compose("train_toy").data.synthetic.split == "train"
        assert compose("eval", overrides=["model=slowfast_tiny"]).model.published == {}
    cfg = compose_eval("model=x3d_m", "data=toy")
    assert str(cfg.device.type) == "auto" and cfg.model.output == "probs"
    assert cfg.data.synthetic.classes == 8 and cfg.data.decode_timeout_s == 120.0


# ---- class-name files --------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (json.dumps(["a", "b"]), "expected a JSON object of class name -> integer id"),
    (json.dumps({"a": 0, "b": "one"}), "class 'b': the id must be an integer, got 'one'"),
    (json.dumps({"a": 0, "b": 1.0}), "class 'b': the id must be an integer, got 1.0"),
    (json.dumps({"a": 0, "b": 0, "c": 1}), "classes 'a' and 'b' both have id 0"),
    ('{"a": 0, "a": 1}', "class name 'a' is listed twice"),
    (json.dumps({'"a"': 0, "a": 1}), "class name 'a' is listed twice"),
    (json.dumps({"a": 0, "b": 2}), "class ids must be 0..1 without gaps; no class has id 1"),
])
def test_class_name_file_format(tmp_path, content, message):
    path = tmp_path / "names.json"
    path.write_text(content)
    with pytest.raises(ManifestError, match=f"^{path}: {message}"):
        read_class_names(path)


def test_class_name_file_must_list_the_models_classes(tmp_path):
    """600 names for a 400-class model shift the ids silently: refused, naming the file."""
    names = tmp_path / "k600.json"
    names.write_text(json.dumps({f"class {i:03d}": i for i in range(600)}))
    csv = tmp_path / "val.csv"
    csv.write_text(HEADER + "class 141,abc,0,10,val\n")
    (tmp_path / "abc_000000_000010.mp4").write_bytes(b"x")  # listed videos must be there
    data = compose_eval("data=kinetics400", f"data.csv={csv}", f"data.root={tmp_path}",
                        f"data.class_names={names}").data
    with pytest.raises(ManifestError, match=f"^{names}: 600 class names, but the model has 400"):
        load_dataset(data, 400)
    assert load_dataset(data, 600).videos[0].label == 141


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "dir"])
def test_only_regular_files_are_read(tmp_path, special):
    """A FIFO would block the reader and /dev/zero never ends: refused by what they are."""
    path = tmp_path / "names.json"
    if special == "fifo":
        os.mkfifo(path)
    elif special == "dir":
        path.mkdir()
    else:
        path = special
    kind = {"fifo": r"a FIFO \(named pipe\)", "/dev/zero": "a character device", "dir": "a directory"}[special]
    csv = tmp_path / "val.csv"
    csv.write_text(HEADER + "a,abc,0,10,val\n")
    with pytest.raises(ManifestError, match=f"data.class_names: {path}: is {kind}, not a file"):
        read_manifest(csv, tmp_path, str(path))
    with pytest.raises(ManifestError, match=f"^{path}: is {kind}, not a file"):
        read_manifest(path, tmp_path, None)  # as data.csv


# ---- CSV files ---------------------------------------------------------------------------------

@pytest.fixture
def names(tmp_path):
    path = tmp_path / "names.json"
    path.write_text(json.dumps({"abseiling": 0, "café": 1}))
    return path


def test_latin1_csv_names_file_and_line(tmp_path, names):
    csv = tmp_path / "excel.csv"
    csv.write_bytes((HEADER + "abseiling,aaa,0,10,val\ncafé,bbb,0,10,val\n").encode("latin-1"))
    with pytest.raises(ManifestError, match=rf"^{csv}:3: not UTF-8 text \(byte 0xe9\)"):
        read_manifest(csv, tmp_path, str(names))


def test_huge_label_is_rejected_at_its_line_before_building_anything(tmp_path):
    csv = tmp_path / "list.txt"
    csv.write_text("a.mp4 0\nb.mp4 30000000\n")
    with pytest.raises(ManifestError, match=rf"^{csv}:2: label 30000000 is outside the model's "
                                            r"400 classes \(0..399, model.num_classes\)"):
        read_manifest(csv, tmp_path, None, num_classes=400)


def test_whitespace_only_lines_are_skipped_like_empty_ones(tmp_path, names):
    csv = tmp_path / "val.csv"
    csv.write_text(HEADER + "abseiling,aaa,0,10,val\n   \n\t\n\ncafé,bbb,0,10,val\n  \n")
    for name in ("aaa_000000_000010.mp4", "bbb_000000_000010.mp4", "a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")  # listed videos must be there
    assert [v.label for v in read_manifest(csv, tmp_path, str(names)).videos] == [0, 1]
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4 0\n  \nb.mp4 1\n")
    assert len(read_manifest(listing, tmp_path, None).videos) == 2


@pytest.mark.parametrize("text, message", [
    ("abseiling,aaa,0,10,val\n", r":1: no header; the official CSV's first line is "
                                 r"'label,youtube_id,time_start,time_end,split\[,is_cc\]'"),
    ('"riding a bike",aaa,0,10,val\n', r":1: no header; the official CSV's first line is"),
    ("video,class,start,end,split\nx,abseiling,0,10,val\n",
     r":1: unrecognised header 'video,class,start,end,split'; expected the official "
     r"'label,youtube_id,time_start,time_end,split' or 'path label' lines"),
    ("youtube_id,time_start,time_end,split\naaa,0,10,val\n", r":1: header lacks label"),
])
def test_official_csv_without_its_header_says_what_was_expected(tmp_path, names, text, message):
    csv = tmp_path / "val.csv"
    csv.write_text(text)
    with pytest.raises(ManifestError, match=f"^{csv}{message}"):
        read_manifest(csv, tmp_path, str(names))


def test_official_columns_are_read_by_name_in_any_order(tmp_path, names):
    csv = tmp_path / "val.csv"
    csv.write_text("youtube_id,label,time_start,time_end,split\naaa,café,0,10,val\n")
    (tmp_path / "aaa_000000_000010.mp4").write_bytes(b"x")
    assert read_manifest(csv, tmp_path, str(names)).videos[0].label == 1


# ---- the data root -----------------------------------------------------------------------------

def test_data_root_symlink_loops_skipped_directories_reported_upper_case_found(tmp_path, names,
                                                                               caplog):
    root = tmp_path / "root"
    (root / "abseiling").mkdir(parents=True)
    make_video(root / "abseiling" / "up_000000_000010.MP4", 32, 32, 0.2)
    (root / "loop").symlink_to(root / "loop")  # an unlisted entry: [Errno 40] aborted the run
    (root / "abseiling" / "loop2.mp4").symlink_to(root / "abseiling" / "loop2.mp4")
    (root / "dir_000000_000010.mp4").mkdir()  # a folder named like a video
    (root / "abseiling" / "gone_000000_000010.mp4").symlink_to(tmp_path / "nothing")
    csv = tmp_path / "val.csv"
    csv.write_text(HEADER + "".join(f"abseiling,{v},0,10,val\n" for v in ("up", "dir", "gone")))
    up, folder, gone = read_manifest(csv, root, str(names)).videos
    assert up.path == root / "abseiling" / "up_000000_000010.MP4"
    assert folder.path is None and folder.there.endswith("dir_000000_000010.mp4: is a directory, not a file")
    assert gone.path is None and gone.there.endswith("is a broken symlink")
    assert "skipped 2 entries that cannot be read" in caplog.text
    # A path label list: a listed path that is a directory says so too.
    (tmp_path / "x.mp4").mkdir()
    listing = tmp_path / "list.txt"
    (tmp_path / "y.mp4").write_bytes(b"x")  # one listed video is there (else the run stops)
    listing.write_text("x.mp4 0\ny.mp4 0\n")
    video = read_manifest(listing, tmp_path, None).videos[0]
    assert video.path is None and video.there == f"{tmp_path / 'x.mp4'}: is a directory, not a file"


# ---- checkpoints -------------------------------------------------------------------------------

class NeedsCode:
    pass


def not_checkpoints(tmp_path, videos):
    png = tmp_path / "plot.png"
    Figure(figsize=(1, 1)).savefig(png)
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hi")
    real = tmp_path / "real.pt"
    torch.save({"w": torch.zeros(4)}, real)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(real.read_bytes()[:200])
    files = {"short.txt": b"x", "weights.json": b'{"w": [1, 2]}', "table.csv": b"a,b\n1,2\n",
             "random.bin": os.urandom(4096)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / n for n in files] + [png, videos["short"], archive, cut]


def test_files_that_are_not_checkpoints_say_so(tmp_path, videos):
    module = torch.nn.Linear(2, 2)
    for path in not_checkpoints(tmp_path, videos):
        with pytest.raises(WeightsError) as caught:
            load_checkpoint(module, path)
        assert str(caught.value) == f"{path}: not a PyTorch checkpoint (torch.save's zip or legacy format)"


def test_pickles_that_need_code_are_refused_without_the_unsafe_hint(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_state": NeedsCode()}, path)
    with pytest.raises(WeightsError) as caught:
        load_checkpoint(torch.nn.Linear(2, 2), path)
    message = str(caught.value)
    assert message.startswith(f"{path}: refused: the checkpoint holds objects that need code")
    assert "NeedsCode" in message and "weights_only=False" not in message
    assert "\n" not in message
    legacy = tmp_path / "legacy.pt"  # the pre-zip format is still a checkpoint
    torch.save(torch.nn.Linear(2, 2).state_dict(), legacy, _use_new_zipfile_serialization=False)
    load_checkpoint(torch.nn.Linear(2, 2), legacy)


# ---- the results table -------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty, not a table"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "not a CSV table"),
    (b"a,b\n1,2\n", "not a table of this kind: none of the columns model,weights"),
])
def test_evaluations_table_is_checked_before_the_run(tmp_path, content, message):
    (tmp_path / "evaluations.csv").write_bytes(content)
    with pytest.raises(ReportError, match=f"evaluations.csv: {message}"):
        check_eval_table(tmp_path)


# ---- the real CLI: one line on stderr, exit 1, no traceback, nothing evaluated ----------------

def cli_error(result, line: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {line}"]


def test_cli_type_error_is_one_line_before_any_run_folder(tmp_path):
    result = run_eval("model=slowfast_tiny", "strict=maybe", f"hydra.run.dir={tmp_path / 'run'}",
                      check=False)
    cli_error(result, "strict: expected true or false, got 'maybe'")
    assert not (tmp_path / "run").exists()


def test_cli_unwritable_run_dir_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run_eval("model=slowfast_tiny", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}",
                      check=False)
    cli_error(result, f"hydra.run.dir: {tmp_path / 'a_file' / 'run'}: cannot make the run "
                      "folder: Not a directory")


def test_cli_bad_results_table_and_class_count_stop_before_any_video(tmp_path, action_set):
    base = ["model=slowfast_tiny", "data=kinetics400", f"data.csv={action_set / 'validate.csv'}",
            f"data.root={action_set}", f"data.class_names={action_set / 'kinetics_classnames.json'}",
            "views=1x1", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    (tmp_path / "evaluations.csv").write_bytes(b"")
    result = run_eval(*base, "model.num_classes=4", f"results_dir={tmp_path}", check=False)
    cli_error(result, f"{tmp_path / 'evaluations.csv'}: the file is empty, not a table; move it "
                      "away or set results_dir")
    assert not (tmp_path / "run" / "parts").exists()
    result = run_eval(*base, f"results_dir={tmp_path / 'results'}", check=False)  # 4 names, 400 classes
    cli_error(result, f"{action_set / 'kinetics_classnames.json'}: 4 class names, but the model "
                      "has 400 classes (model.num_classes)")
    assert not (tmp_path / "run" / "parts").exists()
