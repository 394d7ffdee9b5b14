import hashlib
import os

import pytest
import torch

from benchmark.frameworks.common import hub_cache_path
from benchmark.run.models import RANDOM_INIT, WeightsError, build_model, load_checkpoint

from conftest import compose_eval, run_eval


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
    # Not the URL conf/model/slowfast_tiny.yaml names: the file's identity, not "official".
    digest = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert model.weights == model.checkpoint == f"TINY_TEST.pyth@{digest[:8]}"
    expected = torch.load(tiny_checkpoint, weights_only=True)["model_state"]
    assert torch.equal(model.module.state_dict()["blocks.6.proj.weight"], expected["blocks.6.proj.weight"])


# ---- a cached official checkpoint is checked against the SHA-256 prefix in its URL's name ----

S3D_URL = "https://download.pytorch.org/models/s3d-d76dad2f.pth"  # conf/model/s3d.yaml's


@pytest.fixture
def s3d_file(tmp_path_factory):
    """A real S3D checkpoint (random weights, torch.save), and its SHA-256."""
    torch.manual_seed(0)
    module = build_model(compose_eval("model=s3d", "model.weights=random").model).module
    path = tmp_path_factory.mktemp("s3d") / "s3d.pth"
    torch.save(module.state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def refusal(cache, found: str, prefix: str) -> str:
    return (f"{cache}: its SHA-256 starts {found}, but {cache.name} says {prefix}: not the "
            f"official checkpoint; delete it to download it again, or pass model.weights={cache} "
            "to evaluate it as your own checkpoint (its row is then not official)")


def test_a_cached_official_checkpoint_whose_hash_is_not_its_url_s_is_refused(s3d_file, tmp_path,
                                                                              monkeypatch):
    """Another file at the official URL's place in the torch hub cache (copied there by hand,
    as the offline workflow does, or a damaged download) stops the run in one line: it is not
    scored, and never labelled official; pass it as model.weights=PATH and it is one's own."""
    from benchmark.run.models import resolve_weights

    path, digest = s3d_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = hub_cache_path(S3D_URL)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(path.read_bytes())
    for weights in ("auto", "pretrained"):
        cfg = compose_eval("model=s3d", f"model.weights={weights}").model
        with pytest.raises(WeightsError) as err:
            build_model(cfg)
        assert str(err.value) == refusal(cache, digest[:8], "d76dad2f")
    model = build_model(compose_eval("model=s3d", f"model.weights={cache}").model)
    assert model.weights == model.checkpoint == f"s3d-d76dad2f.pth@{digest[:8]}"
    # model.weights=URL: the same check of the copy in the cache.
    with pytest.raises(WeightsError, match="its SHA-256 starts"):
        resolve_weights(compose_eval("model=s3d", f"model.weights={S3D_URL}").model)


def test_cli_the_refusal_is_one_line_before_any_video(s3d_file, tmp_path):
    path, digest = s3d_file
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "s3d-d76dad2f.pth"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(path.read_bytes())
    result = run_eval("model=s3d", "data=sample", "device=cpu", f"results_dir={tmp_path / 'res'}",
                      f"hydra.run.dir={tmp_path / 'run'}", check=False,
                      env={**os.environ, "TORCH_HOME": str(tmp_path / "torch")})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {refusal(cache, digest[:8], 'd76dad2f')}"]
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "parts").exists()


def test_a_cached_checkpoint_whose_hash_matches_its_url_s_runs_and_is_official(
        s3d_file, tmp_path, monkeypatch):
    """The file whose SHA-256 starts with its URL's prefix loads strictly, its identity is that
    prefix, it is hashed once for the check and the identity, and it is official where the
    config's own URL is the one it came from."""
    from benchmark.run import models

    path, digest = s3d_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = f"https://download.pytorch.org/models/s3d-{digest[:8]}.pth"
    cache = hub_cache_path(url)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(path.read_bytes())
    cfg = compose_eval("model=s3d", f"model.checkpoint_url={url}").model
    models._file_sha256.cache_clear()
    model = build_model(cfg)
    assert models._file_sha256.cache_info().misses == 1  # one read for the check and identity
    assert model.checkpoint == f"s3d-{digest[:8]}.pth@{digest[:8]}"
    assert model.weights == model.checkpoint  # another URL than conf/model/s3d.yaml's
    expected = torch.load(path, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in model.module.state_dict().items())
    # The config's own URL (no test can make the published file): "official".
    monkeypatch.setattr(models, "published_checkpoint", lambda c: c.checkpoint_url == url)
    assert models.resolve_weights(cfg) == (str(cache), "official")


def test_mmaction2_s_cached_checkpoint_is_checked_too(tmp_path, monkeypatch):
    """mmaction2's URLs carry the prefix (publish_model's sha256sum), its adapter finds the
    cached file itself (LOADS_OWN_WEIGHTS): the file is checked before it is used."""
    pytest.importorskip("mmaction", reason="mmaction2 is not installed (the mmaction extra)")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = compose_eval("model=mm_tsm_r50").model
    cache = hub_cache_path(str(cfg.checkpoint_url))
    assert cache.name.endswith("_20220831-64d69186.pth")
    cache.parent.mkdir(parents=True)
    torch.save({"meta": {}, "state_dict": {"cls_head.fc_cls.bias": torch.zeros(400)}}, cache)
    found = hashlib.sha256(cache.read_bytes()).hexdigest()[:8]
    with pytest.raises(WeightsError) as err:
        build_model(cfg)
    assert str(err.value) == refusal(cache, found, "64d69186")


def test_each_framework_s_check_hash_says_whether_its_urls_carry_a_hash_prefix():
    """torchvision's and mmaction2's official URLs end in the first 8 hex digits of the file's
    SHA-256 (CHECK_HASH); pytorchvideo's carry none (its cache is taken as it is)."""
    from omegaconf import OmegaConf

    from benchmark import CONF_DIR, frameworks
    from benchmark.run.models import _hash_prefix

    seen = set()
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        written = OmegaConf.load(path)
        if written.get("checkpoint_url"):
            prefix = _hash_prefix(str(written.checkpoint_url))
            check = frameworks.get(str(written.framework)).CHECK_HASH
            assert (prefix is not None and len(prefix) == 8) == check, path.name
            seen.add((str(written.framework), check))
    assert seen == {("torchvision", True), ("mmaction2", True), ("pytorchvideo", False)}
    assert _hash_prefix(S3D_URL) == "d76dad2f"
    assert _hash_prefix("https://x/tsm_r50_20220831-64d69186.pth") == "64d69186"
    assert _hash_prefix("https://dl.fbaipublicfiles.com/x/SLOWFAST_8x8_R50.pyth") is None
    assert _hash_prefix("https://x/model-.pth") is None  # an empty prefix checks nothing
