"""``python -m benchmark.profile``: the forward pass's time by kind of work, on a real model."""

import pandas as pd
import pytest
import torch

from benchmark.profile import main
from benchmark.run.profile import kind_of
from benchmark.run.models import build_model, compose_for_model


def test_names_fall_into_kinds():
    assert kind_of("aten::mkldnn_convolution") == "conv/linear"
    assert kind_of("sm80_xmma_fprop_implicit_gemm_indexed_bf16bf16") == "conv/linear"
    assert kind_of("void at::native::batch_norm_elementwise(at::Tensor)") == "batch norm"
    assert kind_of("aten::clamp_min") == "activation" and kind_of("aten::add") == "addition"
    assert kind_of("aten::addmm") == "conv/linear" and kind_of("aten::empty") == "other"


def test_profile_writes_the_kinds_and_the_top_operators(tmp_path, capsys):
    path = main(["--model", "slowfast_tiny", "--device", "cpu", "--precision", "fp32",
                 "--batch", "2", "--iters", "1", "--top", "200", "--results-dir", str(tmp_path)])
    assert path == tmp_path / "profiles" / "cpu-slowfast_tiny-fp32-b2.md"
    text = path.read_text()
    assert "slowfast_tiny" in text and "batch 2" in text and text in capsys.readouterr().out + "\n"
    # Every operator in the CSV, with its kind and calls per pass: one convolution per Conv3d of
    # the model, one batch norm per BatchNorm3d (counts, not times: which kind leads the time
    # depends on the machine's load, and a busy CI machine once put batch norm first).
    table = pd.read_csv(path.with_suffix(".csv")).set_index("name")
    module = build_model(compose_for_model("slowfast_tiny").model).module
    def count(kind):
        return sum(isinstance(m, kind) for m in module.modules())
    assert table.loc["aten::conv3d", "calls"] == count(torch.nn.Conv3d) > 0
    assert table.loc["aten::conv3d", "kind"] == "conv/linear"
    assert table.loc["aten::batch_norm", "calls"] == count(torch.nn.BatchNorm3d) > 0
    assert table.loc["aten::batch_norm", "kind"] == "batch norm" and table.ms.min() > 0
    assert table.calls.min() >= 1 and "| conv/linear" in text
    # record_shapes: the convolutions by shape, the stems' 3-channel inputs among them
    assert "Convolutions by input x weight shape" in text and "fuse none" in text
    # every shape listed (--top 200): the stem's time is not always among the top 20 (a loaded
    # make test once left it out)
    assert "2x3x8x32x32" in text  # the tiny model's fast stem input: batch 2, RGB, 8 frames


def test_an_unknown_model_is_one_line():
    with pytest.raises(SystemExit, match="error: --model nonsense: no conf/model/nonsense.yaml"):
        main(["--model", "nonsense", "--device", "cpu", "--precision", "fp32"])
