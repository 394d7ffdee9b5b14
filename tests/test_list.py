"""Finding names: ``python -m benchmark.list`` prints what there is, one line each; a mistyped
model, data set, protocol or key gets the nearest name."""

import subprocess
import sys

import pytest

from benchmark.run.schema import config_error_line

from conftest import REPO, compose_eval


def listed(*kinds: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.list", *kinds], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_list_models_prints_framework_data_set_protocol_views_and_published_top1():
    result = listed("models")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert lines["slowfast_r50"] == ["slowfast_r50", "pytorchvideo", "kinetics400", "zoo",
                                     "10x3", "top-1", "76.94"]
    assert lines["videomae_base_ssv2"][1:5] == ["transformers", "ssv2", "videomae_ssv2", "2x3"]
    assert lines["r3d_18"][1:5] == ["torchvision", "kinetics400", "torchvision", "5x1"]
    assert " ".join(lines["slowfast_toy"][2:]) == "- zoo 10x3 no published top-1"
    assert len(lines) == len(list((REPO / "conf" / "model").glob("*.yaml")))


def test_list_data_protocols_decoders_and_a_mistyped_kind():
    result = listed("data", "protocols", "decoders")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# data" in out and "# protocols" in out and "# decoders" in out
    assert any(line.split()[:3] == ["ucf101", "format", "ucf101"] for line in out.splitlines())
    assert any(line.split()[:2] == ["videomae", "transformers"] for line in out.splitlines())
    assert any(line.split()[0] == "pyav" for line in out.splitlines())
    wrong = listed("model")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == ("error: model: not one of models, data, protocols, decoders; "
                                    "did you mean models?")


@pytest.mark.parametrize("override, line", [
    ("model=slowfast_r5", "model=slowfast_r5: no conf/model/slowfast_r5.yaml; did you mean "
                          "slowfast_r50? (python -m benchmark.list models)"),
    ("data=ucf10", "data=ucf10: no conf/data/ucf10.yaml; did you mean ucf101? "
                   "(python -m benchmark.list data)"),
    ("protocol=videomea", "protocol=videomea: no conf/protocol/videomea.yaml; did you mean "
                          "videomae? (python -m benchmark.list protocols)"),
    ("model.num_clases=3", "model.num_clases: no such setting in model; did you mean "
                           "model.num_classes?"),
    ("model.builder.model_num_clas=101", "model.builder.model_num_clas: no such setting in "
                                         "model.builder; did you mean model.builder.model_num_class?"),
])
def test_a_mistyped_name_gets_the_nearest(override, line):
    with pytest.raises(Exception) as caught:
        compose_eval("model=slowfast_r50", override)
    assert config_error_line(caught.value) == line
