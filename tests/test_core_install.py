"""The core install (``pip install -e .``: no hf, mmaction or decoders extra) runs a pytorchvideo
model; an optional framework costs nothing until a model of it is asked for, and then stops the
run with one line naming what to install (issue 31).

The optional packages are installed here, so the runs below hide them: a ``sitecustomize`` on
PYTHONPATH puts an import hook first that refuses them, as if they were not installed.
"""

import json
import os

import pandas as pd
import pytest

from conftest import run_eval

OPTIONAL = ("transformers", "huggingface_hub", "mmaction", "mmengine", "mmcv", "torchcodec",
            "decord")

HIDE = f'''
import sys

class NotInstalled:
    """Refuses the optional packages, as an environment without them would."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
'''


@pytest.fixture(scope="module")
def core_env(tmp_path_factory):
    """The environment of a run in which the optional packages cannot be imported."""
    folder = tmp_path_factory.mktemp("core")
    (folder / "sitecustomize.py").write_text(HIDE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


def one_line(result, start: str) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), lines
    return lines[0]


def test_a_pytorchvideo_model_evaluates_without_the_optional_packages(core_env, action_set,
                                                                       tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    run_eval("model=slowfast_tiny", "model.num_classes=4", f"model.weights={tiny_checkpoint}",
             "data=kinetics400", f"data.csv={action_set / 'validate.csv'}",
             f"data.root={action_set}",
             f"data.class_names={action_set / 'kinetics_classnames.json'}", "views=1x1",
             "device=cpu", "cost.throughput_iters=0", f"results_dir={tmp_path / 'results'}",
             f"hydra.run.dir={out}", env=core_env)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos_evaluated"] == 4 and metrics["videos_failed"] == 0
    assert len(pd.read_parquet(out / "predictions.parquet")) == 4
    versions = metrics["versions"]
    assert versions["pytorchvideo"] and versions["torchvision"]  # the core's, recorded
    for name in ("transformers", "mmaction2", "mmengine", "mmcv"):
        assert versions[name] == "not installed", name


@pytest.mark.parametrize("override, line", [
    ("model=videomae_base_k400", "model=videomae_base_k400: transformers is not installed here "
                                 "(transformers cannot be imported); install it with "
                                 "pip install -e '.[hf]'"),
    ("model=mm_x3d_m", "model=mm_x3d_m: mmaction2 is not installed here (mmaction, mmengine, "
                       "mmcv cannot be imported); install it with pip install --no-deps "
                       "mmaction2==1.2.0 mmengine==0.10.7 mmcv-lite==2.1.0 && pip install -e "
                       "'.[mmaction]'"),
    ("decoder=torchcodec", "decoder=torchcodec: torchcodec is not installed"),
    ("decoder=decord", "decoder=decord: decord is not installed"),
])
def test_asking_for_an_optional_framework_names_its_extra_in_one_line(core_env, override, line,
                                                                      tmp_path):
    result = run_eval(override, "device=cpu", f"hydra.run.dir={tmp_path / 'run'}", check=False,
                      env=core_env)
    said = one_line(result, line)
    assert "pip install" in said and ".[" in said  # the extra to install
    assert not (tmp_path / "run" / "parts").exists()
