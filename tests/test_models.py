import pytest
import torch

from benchmark.frameworks.common import hub_cache_path
from benchmark.run.models import RANDOM_INIT, WeightsError, build_model, load_checkpoint

from conftest import compose_eval


def tiny(weights: str, classes: int = 4):
    return build_model(compose_eval("model=slowfast_tiny", f"model.num_classes={classes}",
                                    f"model.weights={weights}").model)


def test_official_layout_and_plain_state_dict_load(tiny_checkpoint, tmp_path):
    expected = torch.load(tiny_checkpoint, weights_only=True)["model_state"]
    model = tiny(str(tiny_checkpoint))
    assert model.weights.startswith("tiny.pyth@") and len(model.weights) == len("tiny.pyth@") + 8
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, expected[key])
    plain = tmp_path / "plain.pt"
    torch.save(expected, plain)
    assert torch.equal(tiny(str(plain)).module.state_dict()["blocks.6.proj.weight"],
                       expected["blocks.6.proj.weight"])
    assert not model.module.training


def test_mismatching_checkpoint_names_the_keys(tiny_checkpoint):
    with pytest.raises(WeightsError, match=r"missing keys \[.*\], unexpected keys \[\], "
                                           r"wrong shapes \[blocks.6.proj.bias, blocks.6.proj.weight\]"):
        tiny(str(tiny_checkpoint), classes=7)
    module = tiny("random").module
    state = torch.load(tiny_checkpoint, weights_only=True)["model_state"]
    state["extra.weight"] = state.pop("blocks.6.proj.weight")
    path = tiny_checkpoint.parent / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing keys \[blocks.6.proj.weight\], "
                                           r"unexpected keys \[extra.weight\]"):
        load_checkpoint(module, path)


class Arbitrary:
    """A class a checkpoint should not be able to make us import and build."""


def test_pickles_that_need_code_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_state": Arbitrary()}, path)
    with pytest.raises(WeightsError, match="refused: .*weights_only=True"):
        tiny(str(path))
    with pytest.raises(WeightsError, match="no such file"):
        tiny(str(tmp_path / "absent.pt"))


def test_official_weights_come_from_the_hub_cache(tiny_checkpoint, tmp_path, monkeypatch):
    """`auto` finds the checkpoint where torch.hub keeps it; offline it falls back loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/TINY_TEST.pyth"
    overrides = ["model=slowfast_tiny", "model.num_classes=4", f"model.checkpoint_url={url}"]
    cache = hub_cache_path(url)
    assert cache == tmp_path / "torch" / "hub" / "checkpoints" / "TINY_TEST.pyth"
    # No file and no network here: auto -> random init; pretrained -> an error saying where to put it.
    assert build_model(compose_eval(*overrides, "model.weights=auto").model).weights == RANDOM_INIT
    with pytest.raises(WeightsError, match=f"cannot get the official checkpoint {url}.*{cache}"):
        build_model(compose_eval(*overrides, "model.weights=pretrained").model)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(tiny_checkpoint.read_bytes())
    model = build_model(compose_eval(*overrides, "model.weights=pretrained").model)
    assert model.weights == "official"
    expected = torch.load(tiny_checkpoint, weights_only=True)["model_state"]
    assert torch.equal(model.module.state_dict()["blocks.6.proj.weight"], expected["blocks.6.proj.weight"])
