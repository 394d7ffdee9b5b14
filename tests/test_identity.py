"""The run's fingerprint changes with everything that changes its predictions, and TF32."""

import shutil

import pytest
import torch

from benchmark.run.device import set_tf32
from benchmark.run.record import run_identity, source_digest
from benchmark.run.settings import batch_views_for
from benchmark.data.load import load_dataset
from benchmark.run.models import build_model
from benchmark.run.store import fingerprint

from conftest import REPO, compose_eval


@pytest.fixture
def identity_of(action_set, tiny_checkpoint, tmp_path, monkeypatch):
    """fingerprint(run_identity) of the tiny model on the generated set with ``overrides``;
    weights=auto finds its checkpoint in a private torch hub cache (the URL is never reached)."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_checkpoint, tmp_path / "hub" / "checkpoints" / "tiny.pyth")
    base = ["model=slowfast_tiny", "model.num_classes=4", "model.weights=auto",
            "model.checkpoint_url=http://127.0.0.1:9/tiny.pyth", "data=kinetics400",
            f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
            f"data.class_names={action_set / 'kinetics_classnames.json'}", "device=cpu"]

    def identity_of(*overrides, tf32=False):
        cfg = compose_eval(*base, *overrides)
        model = build_model(cfg.model)
        assert model.weights == ("official" if cfg.model.weights == "auto" else model.weights)
        identity = run_identity(cfg, model, load_dataset(cfg.data), torch.device("cpu"),
                                batch_views_for(cfg.eval.batch_views, "cpu"), tf32)
        return fingerprint(identity), identity

    return identity_of


def test_the_fingerprint_covers_what_changes_predictions(identity_of, tmp_path):
    base, identity = identity_of()
    assert identity_of()[0] == base  # stable
    assert set(identity["versions"]) == {"torch", "torchvision", "pytorchvideo", "transformers",
                                         "mmaction2", "mmengine", "mmcv",
                                         "av", "benchmark", "benchmark_source"}
    for override in ["model.output=probs", "eval.batch_views=4", "eval.channels_last=false",
                     "compile=true", "data.decode_timeout_s=5",
                     "model.checkpoint_url=http://127.0.0.1:9/other/tiny.pyth", "data.limit=2",
                     "protocol=pytorchvideo"]:
        assert identity_of(override)[0] != base, override
    assert identity_of(tf32=True)[0] != base
    # weights=auto: the label says "official" either way, the checkpoint's content decides.
    cached = tmp_path / "hub" / "checkpoints" / "tiny.pyth"
    state = torch.load(cached, weights_only=True)
    name = next(iter(state["model_state"]))
    state["model_state"][name] = state["model_state"][name] + 1
    torch.save(state, cached)
    assert identity_of()[0] != base


def test_the_source_digest_changes_with_the_code(tmp_path):
    copy = tmp_path / "benchmark"
    shutil.copytree(REPO / "benchmark", copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_digest(copy)
    assert before == source_digest(REPO / "benchmark")
    with open(copy / "views.py", "a") as f:
        f.write("# an edit\n")
    assert source_digest(copy) != before


def test_tf32_is_off_for_cuda_unless_asked():
    """cuDNN's default TF32 convolutions are turned off (fp32 means fp32) and the state is what
    the run records; a CPU has none."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        assert set_tf32(torch.device("cuda", 0), False) is False
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert set_tf32(torch.device("cuda", 0), True) is True and torch.backends.cudnn.allow_tf32
        assert set_tf32(torch.device("cpu"), True) is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
