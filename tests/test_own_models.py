"""Your model, not only ours: a fine-tuned checkpoint with its own class count, its class names
matched to the data set's by name, and every row naming its checkpoint. The checkpoints are
built here: a 101-class SlowFast, tiny save_pretrained VideoMAEs whose id2label is in another
order than the data set's, a Hugging Face hub cache written in its own folder layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.run.models import WeightsError, build_model

from conftest import REPO, compose_eval, run_eval
from test_datasets import UCF_CLASSES, crlf, render

BY_NAME = "name"  # benchmark/run/labels.py's, as metrics.json records it
# A 101-class UCF101 classInd.txt: the pairs sorted() orders otherwise, then fillers.
UCF101 = UCF_CLASSES + [f"Sport{i:03d}" for i in range(len(UCF_CLASSES), 101)]


def one_hot_head(weight: torch.Tensor, bias: torch.Tensor, index: int) -> None:
    """A head that answers class ``index`` whatever it sees (so the mapping decides the id)."""
    with torch.no_grad():
        weight.zero_()
        bias.zero_()
        bias[index] = 10.0


def test_a_101_class_slowfast_checkpoint_on_a_ucf101_layout(tmp_path):
    """model=slowfast_r50 model.num_classes=101 model.weights=PATH builds the 101-class head
    from that one key; the checkpoint's classes are in sorted folder order (torchvision's
    UCF101), named by model.class_names: its outputs are moved to classInd.txt's ids."""
    from pytorchvideo.models.hub import slowfast_r50

    torch.manual_seed(0)
    module = slowfast_r50(pretrained=False, model_num_class=101)
    by_folder = sorted(UCF101)  # HammerThrow before Hammering, JumpRope before JumpingJack
    one_hot_head(module.blocks[6].proj.weight, module.blocks[6].proj.bias,
                 by_folder.index("JumpRope"))
    checkpoint = tmp_path / "slowfast_ucf101.pyth"
    torch.save({"model_state": module.state_dict()}, checkpoint)
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(by_folder) + "\n")
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_bytes(crlf([f"{i} {c}" for i, c in enumerate(UCF101, 1)]))
    test = ["JumpRope/v_JumpRope_g01_c01.avi", "Hammering/v_Hammering_g01_c01.avi"]
    (splits / "testlist01.txt").write_bytes(crlf(test))
    (splits / "trainlist01.txt").write_bytes(crlf([]))
    for n, line in enumerate(test):
        render(tmp_path / "UCF-101" / line, "moving up", n, 25, codec="mpeg4", pix_fmt="yuv420p")
    out = tmp_path / "out"
    run_eval("model=slowfast_r50", "model.num_classes=101", f"model.weights={checkpoint}",
             f"model.class_names={names}", "data=ucf101", f"data.csv={splits}",
             f"data.root={tmp_path / 'UCF-101'}", "views=1x1", "device=cpu", "cost.flops=false",
             "cost.throughput_iters=0", f"results_dir={tmp_path / 'results'}",
             f"hydra.run.dir={out}")
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = pd.read_parquet(out / "predictions.parquet")
    probs = torch.tensor([list(p) for p in predictions.probs])
    assert probs.shape == (2, 101)
    # classInd's JumpRope is id 5; by position the head's answer would be sorted()'s id.
    assert probs.argmax(1).tolist() == [UCF101.index("JumpRope")] * 2
    assert metrics["label_map"] == BY_NAME and metrics["top1"] == 0.5
    assert metrics["weights"] == metrics["checkpoint"]
    assert metrics["checkpoint"].startswith("slowfast_ucf101.pyth@")
    row = pd.read_csv(tmp_path / "results" / "evaluations.csv", dtype=str).iloc[0]
    assert row.checkpoint == metrics["checkpoint"] and pd.isna(row.published_top1)
    assert row.no_delta_because.startswith("dataset ucf101, published on kinetics400")


# ---- names matched by name ---------------------------------------------------------------------

def test_names_match_across_case_underscores_spaces_and_quotes():
    from benchmark.run.labels import BY_POSITION, normalised, output_order

    assert normalised('"passing_American_football_(in_game)"') == \
        normalised("passing american  football (in game)")
    assert normalised("massaging person's head") == normalised("massaging persons head")
    assert output_order(["B", "a_x", "C"], ["A X", "b", "c"], "name", "x") == ([1, 0, 2], BY_NAME)
    assert output_order(["b", "a"], ["a", "b"], "position", "x") == (None, BY_POSITION)


def test_names_that_do_not_match_stop_the_run_naming_them():
    from benchmark.run.labels import LabelMapError, output_order

    with pytest.raises(LabelMapError) as err:
        output_order(["moving left", "jumping", "x1", "x2", "x3", "x4", "x5"],
                     ["moving left", "moving up", "x1", "x2", "x3", "x4", "x6"], "name", "id2label")
    assert str(err.value) == (
        "model.label_map=name: the model's 7 class names (id2label) do not match the data "
        "set's 7: model only: jumping, x5; data set only: moving up, x6 "
        "(model.label_map=position trusts the order)")
    with pytest.raises(LabelMapError, match="name 'a b' twice"):
        output_order(["a_b", "A B"], ["a b", "c"], "name", "x")


@pytest.fixture(scope="module")
def tiny_videomae_named(tmp_path_factory):
    """save_pretrained VideoMAEs with id2label in another order than the action set's
    (moving left/right/up/down), spelt another way, answering "Moving Up" whatever they see;
    and one naming a class the data set lacks."""
    transformers = pytest.importorskip("transformers")

    def save(name: str, labels: list[str]) -> Path:
        torch.manual_seed(0)
        config = transformers.VideoMAEConfig(
            image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
            num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
            num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)})
        model = transformers.VideoMAEForVideoClassification(config)
        one_hot_head(model.classifier.weight, model.classifier.bias, labels.index("Moving Up"))
        path = tmp_path_factory.mktemp("hf") / name
        model.save_pretrained(path)
        return path

    return {"reordered": save("reordered", ["moving_down", "Moving Up", "moving right",
                                            "moving left"]),
            "other": save("other", ["moving_down", "Moving Up", "moving right", "jumping"])}


def videomae_overrides(path: Path) -> list[str]:
    return ["model=videomae_base_k400", f"model.weights={path}", "model.num_classes=4",
            "model.input.num_frames=4", "model.input.side_size=32", "model.input.crop_size=32",
            "model.builder.preprocessor.shortest_edge=32",
            "model.builder.preprocessor.crop_size=[32,32]"]


def test_an_hf_checkpoints_id2label_is_matched_to_the_data_set(tiny_videomae_named, action_set,
                                                               tmp_path):
    """id2label [down, up, right, left] against the data set's [left, right, up, down]: the
    run answers the data set's "moving up" for every video (by position it would be "moving
    right"), and records the mapping."""
    data = ["data=kinetics400", f"data.csv={action_set / 'validate.csv'}",
            f"data.root={action_set}", f"data.class_names={action_set / 'kinetics_classnames.json'}"]
    common = [*data, "views=1x1", "device=cpu", "cost.flops=false", "cost.throughput_iters=0",
              "data.workers=0", f"results_dir={tmp_path / 'results'}"]
    names = json.loads((action_set / "kinetics_classnames.json").read_text())
    up = {n.strip('"'): i for n, i in names.items()}["moving up"]
    for mapping, answer in (("name", up), ("position", 1)):
        out = tmp_path / mapping
        run_eval(*videomae_overrides(tiny_videomae_named["reordered"]), *common,
                 f"model.label_map={mapping}", f"hydra.run.dir={out}")
        predictions = pd.read_parquet(out / "predictions.parquet")
        probs = torch.tensor([list(p) for p in predictions.probs])
        assert probs.argmax(1).tolist() == [answer] * len(predictions), mapping
        assert json.loads((out / "metrics.json").read_text())["label_map"] == mapping
    cfg = compose_eval(*videomae_overrides(tiny_videomae_named["other"]))
    with pytest.raises(WeightsError, match="model only: jumping; data set only: moving left "):
        build_model(cfg.model, "model", class_names=list(up_names(names)))


def up_names(names: dict) -> list[str]:
    return [n.strip('"') for n, _ in sorted(names.items(), key=lambda item: item[1])]


# ---- the checkpoint's identity -----------------------------------------------------------------

def hub_cache(root: Path, repo: str, snapshot: Path, revision: str) -> None:
    """``repo`` in a Hugging Face hub cache laid out as huggingface_hub writes it
    (models--org--name/refs/main, snapshots/<commit>/)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    shutil.copytree(snapshot, folder / "snapshots" / revision)


def test_a_named_config_is_model_hf_with_its_hub_id_and_only_that_is_official(
        tiny_videomae_named, tmp_path, monkeypatch):
    """model=videomae_base_k400 is model=hf model.source=<its hub id> under its own protocol:
    offline, the hub cache's snapshot gives the architecture, classes, frames and sizes (its
    stored 224 px, 16 frames, 400 classes are for random init only); the row is official, named
    by hub id @ revision. model=hf with that hub id on Kinetics becomes the named config, with
    its published numbers; on SSv2 it is another family's test. The named config with another
    hub id is that checkpoint, not official, and sits beside no published number."""
    from huggingface_hub import constants

    from benchmark.run.sources import from_source

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    base, large = "MCG-NJU/videomae-base-finetuned-kinetics", "MCG-NJU/videomae-large-finetuned-kinetics"
    snapshot = with_preprocessor(tmp_path / "snap")
    shutil.copytree(tiny_videomae_named["reordered"], snapshot, dirs_exist_ok=True)
    hub_cache(tmp_path / "hub", base, snapshot, "a" * 40)
    hub_cache(tmp_path / "hub", large, snapshot, "b" * 40)
    named = from_source(compose_eval("model=videomae_base_k400"), [])
    assert (named.model.num_classes, named.model.input.num_frames, named.model.input.crop_size,
            named.model.input.sampling_rate) == (4, 4, 32, 4)
    assert (named.protocol.name, named.views.clips, named.views.crops) == ("videomae", 5, 3)
    official = build_model(named.model, "model")
    assert (official.weights, official.checkpoint) == ("official", f"{base}@{'a' * 12}")
    hf = from_source(compose_eval("model=hf", f"model.source={base}"), [])
    assert hf.model == named.model and hf.protocol == named.protocol and hf.views == named.views
    assert hf.model.name == "videomae_base_k400" and hf.model.published.top1 == 81.5
    ssv2 = from_source(compose_eval("model=hf", f"model.source={base}", "data=ssv2"), [])
    assert (ssv2.model.name, ssv2.protocol.name, dict(ssv2.model.published)) == (
        base, "videomae_ssv2", {})
    other_cfg = from_source(compose_eval("model=videomae_base_k400", f"model.source={large}"), [])
    other = build_model(other_cfg.model, "model")
    assert other.weights == other.checkpoint == f"{large}@{'b' * 12}"


# ---- a transformers hub id or directory ---------------------------------------------------------

def with_preprocessor(path: Path, side: int = 32) -> Path:
    """The checkpoint's preprocessor_config.json, as the hub's VideoMAE checkpoints carry one."""
    import transformers

    transformers.VideoMAEImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(path)
    return path


def test_model_hf_reads_the_checkpoint_and_picks_its_family_s_protocol(tiny_videomae_named,
                                                                       action_set, tmp_path):
    """model=hf model.source=DIR: architecture, frames, size, classes and normalisation from
    the checkpoint's own files; VideoMAE on a Kinetics-layout set runs under the videomae
    protocol in its 5x3 views, printed at the start; its id2label matched by name."""
    source = with_preprocessor(tmp_path / "ckpt")
    shutil.copytree(tiny_videomae_named["reordered"], source, dirs_exist_ok=True)
    out = tmp_path / "out"
    result = run_eval("model=hf", f"model.source={source}", "data=kinetics400",
                      f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
                      f"data.class_names={action_set / 'kinetics_classnames.json'}", "device=cpu",
                      "cost.throughput_iters=0", "data.workers=0",
                      f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={out}")
    assert (f"model {source}: videomae (videomae on kinetics is tested as videomae_base_k400 "
            "is), 4 classes, 4 frames at 32 px; protocol videomae, views 5x3") in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["model"], metrics["protocol"], metrics["clips"], metrics["crops"]) == (
        "ckpt", "videomae", 5, 3)
    assert metrics["label_map"] == BY_NAME and metrics["weights"].startswith("ckpt@")
    predictions = pd.read_parquet(out / "predictions.parquet")
    names = json.loads((action_set / "kinetics_classnames.json").read_text())
    up = {n.strip('"'): i for n, i in names.items()}["moving up"]
    assert {int(torch.tensor(list(p)).argmax()) for p in predictions.probs} == {up}


def test_model_hf_on_ssv2_a_hub_id_offline_and_what_it_cannot_run(tiny_videomae_named, tmp_path,
                                                                   monkeypatch):
    """A hub id from the hub cache (offline): its revision names the row; VideoMAE on SSv2
    takes videomae_ssv2 (2x3); protocol= on the command line wins; an architecture without its
    authors' protocol here is refused in one line."""
    from huggingface_hub import constants

    from benchmark.run.sources import from_source

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snapshot = with_preprocessor(tmp_path / "snap")
    shutil.copytree(tiny_videomae_named["reordered"], snapshot, dirs_exist_ok=True)
    hub_cache(tmp_path / "hub", "someone/videomae-ssv2-tuned", snapshot, "c" * 40)
    overrides = ["model=hf", "model.source=someone/videomae-ssv2-tuned", "data=ssv2"]
    cfg = from_source(compose_eval(*overrides), overrides)
    assert (cfg.protocol.name, cfg.views.clips, cfg.views.crops) == ("videomae_ssv2", 2, 3)
    assert (cfg.model.num_classes, cfg.model.input.num_frames, cfg.model.input.crop_size) == (4, 4, 32)
    model = build_model(cfg.model, "model")
    assert model.weights == model.checkpoint == f"someone/videomae-ssv2-tuned@{'c' * 12}"
    chosen = [*overrides, "protocol=videomae", "views=1x1"]
    cfg = from_source(compose_eval(*chosen), chosen)
    assert (cfg.protocol.name, cfg.views.clips, cfg.views.crops) == ("videomae", 1, 1)
    other = tmp_path / "vjepa"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "vjepa2",
                                                   "architectures": ["VJEPA2ForVideoClassification"]}))
    with pytest.raises(WeightsError) as err:
        from_source(compose_eval("model=hf", f"model.source={other}"), [])
    assert str(err.value) == (f"model.source={other}: model_type 'vjepa2' "
                              "(VJEPA2ForVideoClassification) has no authors' test protocol here; "
                              "the harness evaluates videomae, timesformer, vivit, xclip")


def test_model_hf_keeps_vivit_s_authors_normalisation(tmp_path):
    """A ViViT checkpoint with the hub's processor (x / 127.5 - 1, then (x - 0.5) / 0.5: [-3, 1])
    is tested under scenic's protocol with scenic's zero-centring ([-1, 1]: mean and std 0.5
    after /255); the processor's values stay for the model card's protocol."""
    transformers = pytest.importorskip("transformers")
    from benchmark.run.sources import from_source

    source = tmp_path / "vivit"
    transformers.VivitForVideoClassification(transformers.VivitConfig(
        image_size=32, num_frames=4, tubelet_size=[2, 16, 16], hidden_size=32,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, num_labels=4)
    ).save_pretrained(source)
    transformers.VivitImageProcessor(size={"shortest_edge": 36},
                                     crop_size={"height": 32, "width": 32}).save_pretrained(source)
    cfg = from_source(compose_eval("model=hf", f"model.source={source}"), [])
    assert (cfg.protocol.name, cfg.model.input.side_size, cfg.model.input.crop_size) == (
        "vivit", 36, 32)
    assert (list(cfg.model.input.mean), list(cfg.model.input.std)) == ([0.5] * 3, [0.5] * 3)
    assert (cfg.model.builder.preprocessor.offset, cfg.model.builder.preprocessor.rescale_factor
            ) == (True, pytest.approx(1 / 127.5))


def test_model_hf_xclip_classifies_any_data_set_by_its_names(action_set, tmp_path):
    """X-CLIP through model=hf on a 4-class set: its classes are the data set's names' text,
    not the 400 of the family's Kinetics config (which refused every other class count)."""
    transformers = pytest.importorskip("transformers")
    from benchmark.api import evaluate

    from tests.test_transformers import TINY

    source = tmp_path / "xclip"
    torch.manual_seed(0)
    transformers.XCLIPModel(transformers.XCLIPConfig(**TINY["xclip"])).save_pretrained(source)
    with_preprocessor(source)
    run = evaluate("model=hf", f"model.source={source}", "data=kinetics400",
                   f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
                   f"data.class_names={action_set / 'kinetics_classnames.json'}", "views=1x1",
                   "device=cpu", "cost.flops=false", "cost.throughput_iters=0", "data.workers=0",
                   run_dir=tmp_path / "run")
    assert (run.metrics["protocol"], run.metrics["model"], run.metrics["videos_evaluated"]) == (
        "xclip", "xclip", 4)
    assert {len(p) for p in run.predictions.probs} == {4}


# ---- an mmaction2 config file and checkpoint ----------------------------------------------------

TSN_BASE = """model = dict(
    type='Recognizer2D',
    backbone=dict(type='ResNet', depth=18, pretrained=None, norm_eval=False),
    cls_head=dict(type='TSNHead', num_classes=400, in_channels=512, spatial_type='avg',
                  consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.0,
                  average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCHW'))
"""
TSN_TEST = """_base_ = ['./base_tsn.py']
model = dict(cls_head=dict(num_classes=4))
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 40)),
    dict(type='%s', crop_size=32),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')]
"""


def test_model_mmaction2_takes_a_config_file_and_a_checkpoint_url(action_set, tmp_path,
                                                                  monkeypatch):
    """model=mmaction2 model.config=FILE model.weights=URL, as tools/test.py takes them: the
    config written here with its own _base_, its test_pipeline read into the views (3 segments,
    one crop); the checkpoint fetched from its URL into the torch hub cache; its dataset_meta's
    classes (another order) matched by name. A transform the harness cannot reproduce is
    refused, naming it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    configs = tmp_path / "my_configs"
    configs.mkdir()
    (configs / "base_tsn.py").write_text(TSN_BASE)
    (configs / "tsn_tiny.py").write_text(TSN_TEST % "CenterCrop")
    cfg = compose_eval("model=mmaction2", f"model.config={configs / 'tsn_tiny.py'}",
                       "model.weights=random")
    from benchmark.run.sources import from_source

    cfg = from_source(cfg, [])
    assert (cfg.model.num_classes, cfg.views.clips, cfg.views.crops) == (4, 3, 1)
    torch.manual_seed(0)
    module = build_model(cfg.model, "pooled_logits").module
    names = up_names(json.loads((action_set / "kinetics_classnames.json").read_text()))
    theirs = list(reversed(names))
    one_hot_head(module.cls_head.fc_cls.weight, module.cls_head.fc_cls.bias,
                 theirs.index("moving up"))
    checkpoint = tmp_path / "served" / "tsn_tiny_ckpt.pth"
    checkpoint.parent.mkdir()
    torch.save({"meta": {"dataset_meta": {"classes": theirs}}, "state_dict": module.state_dict()},
               checkpoint)
    out = tmp_path / "out"
    run_eval("model=mmaction2", f"model.config={configs / 'tsn_tiny.py'}",
             f"model.weights={checkpoint.as_uri()}", "data=kinetics400",
             f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
             f"data.class_names={action_set / 'kinetics_classnames.json'}", "device=cpu",
             "cost.throughput_iters=0", "data.workers=0", f"results_dir={tmp_path / 'results'}",
             f"hydra.run.dir={out}")
    assert (tmp_path / "torch" / "hub" / "checkpoints" / checkpoint.name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["model"], metrics["protocol"], metrics["label_map"]) == (
        "tsn_tiny", "mmaction2", BY_NAME)
    assert metrics["checkpoint"].startswith("tsn_tiny_ckpt.pth@")
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert {int(torch.tensor(list(p)).argmax()) for p in predictions.probs} == {
        names.index("moving up")}
    (configs / "tsn_flip.py").write_text(TSN_TEST % "CenterCrop" + "test_pipeline.insert(4, dict(type='Flip', flip_ratio=1.0))\n")
    with pytest.raises(WeightsError, match="tsn_flip.py: test_pipeline step Flip: not supported"):
        from_source(compose_eval("model=mmaction2", f"model.config={configs / 'tsn_flip.py'}"), [])


# ---- the Python API -----------------------------------------------------------------------------

def readme_example() -> str:
    """The README's Python example, as printed there."""
    text = (REPO / "README.md").read_text()
    start = text.index("```python\n", text.index("## Models: ours and yours")) + len("```python\n")
    return text[start:text.index("```", start)]


def test_the_readme_s_python_example_runs_and_writes_only_its_run_dir(tmp_path):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "random-init" in result.stdout and "video_id" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.py", "runs"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["try"]
    metrics = json.loads((tmp_path / "runs" / "try" / "metrics.json").read_text())
    assert metrics["model"] == "slowfast_tiny" and metrics["videos_evaluated"] == 3
    assert (tmp_path / "runs" / "try" / "results" / "evaluations.csv").is_file()


class MeanColour(torch.nn.Module):
    """A model of one's own: each class is a channel's mean brightness (one pathway)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3, 4)))


def test_the_api_evaluates_a_module_with_an_explicit_protocol_and_input(action_set, tmp_path):
    from benchmark.api import evaluate

    torch.manual_seed(0)
    module = MeanColour(4)
    one_hot_head(module.head.weight, module.head.bias, 2)
    spec = {"num_frames": 4, "sampling_rate": 2, "frames_per_second": 30, "side_size": 32,
            "crop_size": 32, "alpha": None, "mean": [0.45] * 3, "std": [0.225] * 3}
    result = evaluate("data=kinetics400", f"data.csv={action_set / 'validate.csv'}",
                      f"data.root={action_set}",
                      f"data.class_names={action_set / 'kinetics_classnames.json'}",
                      "views=1x1", "views.clips=2", "device=cpu", "data.workers=0", run_dir=tmp_path / "run", module=module,
                      protocol="pytorchvideo", input=spec, num_classes=4)
    assert result.metrics["protocol"] == "pytorchvideo" and result.metrics["clips"] == 2
    assert result.metrics["weights"].startswith("MeanColour@")
    assert len(result.predictions) == result.metrics["videos_evaluated"] == 4
    assert {int(torch.tensor(list(p)).argmax()) for p in result.predictions.probs} == {2}
    with pytest.raises(ValueError, match="did you mean pytorchvideo"):
        evaluate(run_dir=tmp_path / "bad", module=module, protocol="pytorchvideos", input=spec,
                 num_classes=4)
