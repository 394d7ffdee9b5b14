"""Bad input stops before any work with one line naming the key, file or line (issue 17).

Most cases run the real compose (conf/ + benchmark/run/schema.py) and the real checks in-process:
a CLI run costs seconds of imports here. A few true CLI runs (the end of the file) prove the
path from those errors to one line on stderr, exit 1, no traceback and nothing evaluated.
"""

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from matplotlib.figure import Figure

from benchmark.run.evaluate import evaluate
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
    ("decoder=ffmpeg", "decoder=ffmpeg: no conf/decoder/ffmpeg.yaml; one of decord, pyav, torchcodec"),
    ("decoder.name=ffmpeg", "decoder.name: expected one of pyav, torchcodec, decord, got 'ffmpeg'"),
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


# ---- protocol/model mixes and settings that would fail every video (issue 31) -----------------

MIXES = [
    (["model=videomae_base_k400", "protocol=zoo"], None,
     "protocol: zoo is pytorchvideo's but the model videomae_base_k400 is transformers's; pass "
     "one of its protocols"),
    (["model=slowfast_tiny", "protocol=videomae"], None,
     "protocol: videomae is transformers's but the model slowfast_tiny is pytorchvideo's"),
    (["model=slowfast_tiny", "protocol=torchvision", "views.crops=1"], None,
     "model.input.resize_size: the torchvision protocol resizes as torchvision's"),
    (["model=mm_tsm_r50", "protocol=zoo", "views=8x3"], "mmaction",
     "protocol.head: zoo's softmax_per_location is not a head mmaction2's models take (they "
     "take pooled_logits); pass another protocol"),
    (["model=mm_x3d_m", "protocol.head=softmax_per_location"], "mmaction",
     "protocol.head: must be one of pooled_logits, got softmax_per_location"),
    (["model=mm_tsm_r50", "views.clips=1"], "mmaction",
     "views.clips=1: this 2D model's view is its 8 segments; views.clips must be 8"),
    (["model=mm_tsn_r50", "views.clips=8"], "mmaction",
     "views.clips=8: this 2D model's view is its 25 segments; views.clips must be 25"),
]


@pytest.mark.parametrize("overrides, needs, line", MIXES)
def test_a_protocol_model_mix_or_clip_count_that_fails_every_video_is_a_setting(
        overrides, needs, line):
    """Known from the config alone, so refused with the other settings, before any work."""
    if needs:
        pytest.importorskip(needs)
    with pytest.raises(SettingsError) as caught:
        check_settings(compose_eval(*overrides))
    assert str(caught.value).startswith(line) and "\n" not in str(caught.value)


def test_cli_a_2d_model_s_wrong_segment_count_stops_before_the_first_video(tmp_path):
    """model=mm_tsm_r50 views.clips=1 failed each video with the same reason and ended in "no
    video could be evaluated" (19,881 failure rows on Kinetics); now one line, nothing read."""
    pytest.importorskip("mmaction")
    result = run_eval("model=mm_tsm_r50", "views.clips=1", "data=sample", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'run'}", f"results_dir={tmp_path / 'results'}",
                      check=False)
    cli_error(result, "views.clips=1: this 2D model's view is its 8 segments; views.clips must "
                      "be 8")
    assert not (tmp_path / "run" / "failures.csv").exists()
    assert not (tmp_path / "run" / "parts").exists()
    result = run_eval("model=mm_tsm_r50", "protocol=zoo", "views=8x3", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'run'}", check=False)
    cli_error(result, "protocol.head: zoo's softmax_per_location is not a head mmaction2's "
                      "models take (they take pooled_logits); pass another protocol")


# ---- weights=auto never scores a real data set with random weights (issue 31) -----------------

def real_set(action_set) -> list[str]:
    """The generated set read as a real Kinetics-400 copy (data=kinetics400: not generated)."""
    return ["data=kinetics400", f"data.csv={action_set / 'validate.csv'}",
            f"data.root={action_set}",
            f"data.class_names={action_set / 'kinetics_classnames.json'}"]


def unreachable(tmp_path, suffix: str) -> str:
    """A checkpoint URL nothing answers (port 9, discard) whose file is in no hub cache."""
    return f"model.checkpoint_url=http://127.0.0.1:9/{tmp_path.name}-none{suffix}"


@pytest.mark.parametrize("framework, model, needs, where", [
    ("pytorchvideo", ["model=slowfast_tiny", "model.weights=auto"], None,
     "it is read from the torch hub cache at {hub}/checkpoints/{name}-none.pyth, downloaded "
     "from http://127.0.0.1:9/{name}-none.pyth on first use, which failed here"),
    ("torchvision", ["model=r3d_18"], None,
     "it is read from the torch hub cache at {hub}/checkpoints/{name}-none.pth, downloaded "
     "from http://127.0.0.1:9/{name}-none.pth on first use, which failed here"),
    ("transformers", ["model=videomae_base_k400", "model.source=nobody/not-cached"],
     "transformers", "it is downloaded from the Hugging Face hub, else read from its cache ({hf}) "
     "as nobody/not-cached, which failed here: download it there with "
     "`hf download nobody/not-cached`"),
    ("mmaction2", ["model=mm_x3d_m"], "mmaction",
     "it is read from the torch hub cache at {hub}/checkpoints/{name}-none.pth, downloaded "
     "from http://127.0.0.1:9/{name}-none.pth on first use, which failed here"),
])
def test_weights_auto_without_a_checkpoint_stops_a_real_data_set_run(framework, model, needs,
                                                                       where, action_set, tmp_path):
    """No checkpoint to be had: before any video, one line saying where it goes, how it would
    be had, and that model.weights=random asks for random weights on purpose."""
    if needs:
        pytest.importorskip(needs)
    suffix = ".pyth" if framework == "pytorchvideo" else ".pth"
    url = [] if framework == "transformers" else [unreachable(tmp_path, suffix)]
    result = run_eval(*model, *url, "model.num_classes=4", *real_set(action_set), "views=1x1",
                      "device=cpu", f"hydra.run.dir={tmp_path / 'run'}",
                      f"results_dir={tmp_path / 'results'}", check=False)
    hf_cache = ""
    if framework == "transformers":
        from huggingface_hub.constants import HF_HUB_CACHE as hf_cache
    where = where.format(hub=torch.hub.get_dir(), name=tmp_path.name, hf=hf_cache)
    name = model[0].split("=")[1]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: model.weights=auto: no checkpoint for {name}, and kinetics400 "
                           "is a real data set, which is never scored with random weights: ")
    assert where in line, line
    assert line.endswith("; or pass model.weights=PATH; model.weights=random measures random "
                         "weights on purpose")
    assert not (tmp_path / "run" / "parts").exists()  # evaluated nothing
    assert not (tmp_path / "run" / "failures.csv").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_weights_auto_without_a_checkpoint_still_runs_the_generated_sample(tmp_path):
    """The sample set keeps the loud random-init run (make eval-r50 offline in a fresh clone)."""
    out = tmp_path / "run"
    result = run_eval("model=slowfast_tiny", "model.weights=auto", unreachable(tmp_path, ".pyth"),
                      "data=sample", "views=1x1", "device=cpu", "cost.flops=false",
                      "cost.throughput_iters=0", f"hydra.run.dir={out}",
                      f"results_dir={tmp_path / 'results'}")
    assert "Evaluating with RANDOM weights" in result.stdout + result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"] == "random-init" and metrics["videos_evaluated"] == 3


# ---- checkpoint directories and files of the other frameworks (issue 31) ----------------------

@pytest.fixture(scope="module")
def videomae_dir(tmp_path_factory):
    """A tiny VideoMAE saved as save_pretrained does, and the model config that loads it."""
    pytest.importorskip("transformers")
    sys.path.insert(0, str(Path(__file__).parent))
    from test_transformers import build_quiet, tiny_cfg

    path = tmp_path_factory.mktemp("hf") / "videomae"
    torch.manual_seed(0)
    build_quiet(tiny_cfg("videomae_base_k400")).save_pretrained(path)
    return path, tiny_cfg


def broken_copy(source: Path, target: Path, name: str, content: bytes | None) -> Path:
    shutil.copytree(source, target)
    if content is None:
        (target / name).unlink()
    else:
        (target / name).write_bytes(content)
    return target


@pytest.mark.parametrize("name, content, message", [
    ("config.json", b"{not json", "{dir}/config.json: not readable JSON (Expecting property name"),
    ("config.json", b"[1, 2]", "{dir}/config.json: expected a JSON object, got a JSON list"),
    ("config.json", json.dumps({"model_type": "bert"}).encode(),
     "{dir}/config.json: model_type 'bert', but model.builder.architecture videomae loads "
     "'videomae' checkpoints"),
    ("model.safetensors", b"not a checkpoint at all" * 8,
     "{dir}: not a loadable videomae checkpoint directory: SafetensorError: "),
    ("model.safetensors", None,
     "{dir}: not a loadable videomae checkpoint directory: OSError: "),
    ("preprocessor_config.json", b"{oops", "{dir}/preprocessor_config.json: not readable JSON"),
])
def test_a_broken_transformers_checkpoint_directory_is_one_line_naming_the_file(
        videomae_dir, name, content, message, tmp_path):
    from benchmark.run.models import build_model

    saved, tiny_cfg = videomae_dir
    path = broken_copy(saved, tmp_path / "ckpt", name, content)
    with pytest.raises(WeightsError) as caught:
        build_model(tiny_cfg("videomae_base_k400", weights=str(path)))
    assert str(caught.value).startswith(message.format(dir=path)), caught.value
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_an_mmaction2_checkpoint_is_one_line_naming_it(tmp_path, videos):
    """The mmaction2 adapter reads its checkpoints as the run's loader does: a file that is not
    torch.save's says so, one holding code is refused without the unsafe hint, a folder is a
    folder."""
    pytest.importorskip("mmaction")
    from benchmark.frameworks import mmaction2

    module = torch.nn.Linear(2, 2)
    for path in not_checkpoints(tmp_path, videos):
        with pytest.raises(mmaction2.CheckpointError) as caught:
            mmaction2.load_checkpoint(module, path)
        assert str(caught.value) == (f"{path}: not a PyTorch checkpoint (torch.save's zip or "
                                     "legacy format)")
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": NeedsCode()}, evil)
    with pytest.raises(mmaction2.CheckpointError, match="refused: the checkpoint holds objects "
                                                        "that need code") as caught:
        mmaction2.load_checkpoint(module, evil)
    assert "weights_only=False" not in str(caught.value) and "\n" not in str(caught.value)
    cfg = compose_eval("model=mm_x3d_m", f"model.weights={tmp_path}")
    with pytest.raises(mmaction2.CheckpointError, match=f"^model.weights={tmp_path}: is a "
                                                        "directory, not a file$"):
        mmaction2.resolve_weights(cfg.model)


def test_cli_bad_checkpoints_of_transformers_and_mmaction2_are_one_line(videomae_dir, tmp_path,
                                                                        action_set):
    saved, _ = videomae_dir
    path = broken_copy(saved, tmp_path / "ckpt", "config.json", b"{not json")
    result = run_eval("model=videomae_base_k400", f"model.weights={path}", "model.num_classes=4",
                      "model.input.num_frames=4", "model.input.side_size=32",
                      "model.input.crop_size=32", "model.builder.preprocessor.shortest_edge=32",
                      "model.builder.preprocessor.crop_size=[32,32]", *real_set(action_set),
                      "views.clips=1", "views.crops=1", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'run'}", check=False)
    cli_error(result, f"{path}/config.json: not readable JSON (Expecting property name enclosed "
                      "in double quotes: line 1 column 2 (char 1))")
    pytest.importorskip("mmaction")
    text = tmp_path / "x3d.pth"
    text.write_text("this is not a checkpoint\n")
    result = run_eval("model=mm_x3d_m", f"model.weights={text}", "data=sample", "device=cpu",
                      f"hydra.run.dir={tmp_path / 'run2'}", check=False)
    cli_error(result, f"{text}: not a PyTorch checkpoint (torch.save's zip or legacy format)")


# ---- annotation files and subset lists through the CLI (issue 31) ----------------------------

def annotation_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    """(overrides, the expected line) for a malformed line of each data set's official files."""
    ssv2 = tmp_path / "ssv2"
    ssv2.mkdir()
    labels = ssv2 / "labels.json"
    labels.write_text(json.dumps({"Pushing something": "0"}))
    listed = ssv2 / "validation.json"
    listed.write_text(json.dumps([{"id": "1", "template": "Pushing [something]"}, {"id": "2"}]))
    ucf = tmp_path / "ucfTrainTestlist"
    ucf.mkdir()
    (ucf / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    (ucf / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\nYoYo v_YoYo_g02_c01.avi\n")
    hmdb = tmp_path / "testTrainMulti_7030_splits"
    hmdb.mkdir()
    (hmdb / "sword_test_split1.txt").write_text("a.avi 2\nb.avi 3\n")
    return [
        (["data=ssv2", f"data.csv={listed}", f"data.class_names={labels}",
          f"data.root={tmp_path}"],
         f"{listed}: entry 2: expected an object with 'id' and 'template', got {{\"id\": \"2\"}}"),
        (["data=ssv2", f"data.csv={labels}", f"data.class_names={labels}",
          f"data.root={tmp_path}"],
         f"{labels}: expected a JSON list of {{id, template, ...}} "
         "(something-something-v2-validation.json), got a JSON dict"),
        (["data=ucf101", f"data.csv={ucf}", "data.split=1", f"data.root={tmp_path}"],
         f"{ucf / 'testlist01.txt'}:2: expected '<Class>/<video>.avi' (as "
         "'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi'), got 'YoYo v_YoYo_g02_c01.avi'"),
        (["data=hmdb51", f"data.csv={hmdb}", "data.split=1", f"data.root={tmp_path}"],
         f"{hmdb / 'sword_test_split1.txt'}:2: expected '<video>.avi <0|1|2>' (0 unused, 1 train, "
         "2 test), got 'b.avi 3'"),
        (["data=ucf101", f"data.csv={ucf}", "data.split=4"],
         "data.split: 4 is not a UCF101 split; the official splits are 1, 2 and 3"),
    ]


def test_malformed_annotation_files_stop_the_run_naming_file_and_line(tmp_path):
    """SSv2, UCF101 and HMDB51's official files, each with a malformed line: ``evaluate`` stops
    with the ManifestError the CLI prints as its one line (below), before any video. In process:
    a CLI process each cost 4.5 s of start-up for what its one line shows once."""
    for n, (overrides, line) in enumerate(annotation_cases(tmp_path)):
        run_dir = tmp_path / f"run{n}"
        cfg = compose_eval("model=slowfast_tiny", *overrides, "device=cpu",
                           f"results_dir={tmp_path / 'results'}")
        with pytest.raises(ManifestError) as err:
            evaluate(cfg, run_dir, overrides=[])
        assert str(err.value) == line
        assert not (run_dir / "parts").exists()


def test_cli_a_malformed_subset_list_is_one_line(tmp_path, action_set):
    """Through the CLI: one line naming the file and line, no traceback, no video evaluated."""
    subset = tmp_path / "ids.txt"
    subset.write_text("a\nb c\n")
    result = run_eval("model=slowfast_tiny", *real_set(action_set), f"data.subset={subset}",
                      "device=cpu", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    cli_error(result, f"{subset}:2: expected one video id a line, got 'b c'")
    assert not (tmp_path / "run" / "parts").exists()
