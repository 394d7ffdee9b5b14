import math

import benchmark.frameworks.pytorchvideo  # noqa: F401  (must precede pytorchvideo imports)
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from pytorchvideo.models.slowfast import create_slowfast
from torch.utils.flop_counter import FlopCounterMode

from benchmark.results.cost import gflops_per_view, model_views_per_s, params_m


class Plain(torch.nn.Module):
    """Conv3d -> BN -> flatten -> Linear, taking a one-pathway list like the real models."""

    def __init__(self):
        super().__init__()
        self.seq = torch.nn.Sequential(
            torch.nn.Conv3d(3, 4, kernel_size=3, padding=1),
            torch.nn.BatchNorm3d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 2 * 4 * 4, 5),
        )

    def forward(self, xs):
        return self.seq(xs[0])


def tiny_slowfast():
    torch.manual_seed(0)
    return create_slowfast(
        model_depth=18,
        model_num_class=8,
        stem_dim_outs=(8, 1),
        head_pool_kernel_sizes=((2, 1, 1), (8, 1, 1)),
        dropout_rate=0.0,
    )


def tiny_input():
    return [torch.randn(1, 3, 2, 32, 32), torch.randn(1, 3, 8, 32, 32)]


def test_gflops_by_hand_excludes_batch_norm():
    model, x = Plain(), [torch.randn(1, 3, 2, 4, 4)]
    conv_macs = (4 * 2 * 4 * 4) * (3 * 3 * 3 * 3)  # output elements x (C_in * k^3)
    linear_macs = (4 * 2 * 4 * 4) * 5
    assert gflops_per_view(model, x) * 1e9 == pytest.approx(conv_macs + linear_macs)
    # fvcore's default total also counts batch norm; the zoo convention does not.
    analysis = FlopCountAnalysis(model.eval(), (x,)).unsupported_ops_warnings(False)
    assert analysis.by_operator()["batch_norm"] > 0
    assert analysis.total() > conv_macs + linear_macs


def test_tiny_slowfast_gflops_params():
    model, x = tiny_slowfast(), tiny_input()
    model.train()
    g = gflops_per_view(model, x)
    assert model.training and all(m.training for m in model.modules())  # mode restored
    assert len(x) == 2  # caller's list untouched
    # Independent counter: torch counts 2 flops per multiply-add, conv + matmul only.
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(list(x))
    assert g == pytest.approx(counter.get_total_flops() / 2 / 1e9, rel=1e-9)
    assert params_m(model) == sum(p.numel() for p in model.parameters()) / 1e6


def test_model_views_per_s_runs_in_eval_and_restores_mode():
    model, x = tiny_slowfast(), tiny_input()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(m.training))
    for start_mode in (False, True, False):  # several calls: a fresh list each time
        model.train(start_mode)
        vps = model_views_per_s(model, x, torch.device("cpu"), warmup=1, iters=2)
        assert math.isfinite(vps) and vps > 0
        assert model.training == start_mode
    assert seen and not any(seen)  # every forward ran in eval mode
    assert len(x) == 2


@pytest.mark.slow
def test_slowfast_r50_matches_zoo():
    from pytorchvideo.models.hub import slowfast_r50

    model = slowfast_r50(pretrained=False)
    x = [torch.randn(1, 3, 8, 256, 256), torch.randn(1, 3, 32, 256, 256)]
    assert round(gflops_per_view(model, x), 2) == 65.71
    assert round(params_m(model), 2) == 34.57


def test_flop_counts_with_norm_adds_fvcores_training_mode_norm_count():
    from benchmark.results.cost import flop_counts

    model, x = Plain(), [torch.randn(1, 3, 2, 4, 4)]
    bn = model.seq[1]
    stats = bn.running_mean.clone(), bn.running_var.clone()
    counts = flop_counts(model, x)
    compute = (4 * 2 * 4 * 4) * (3 * 3 * 3 * 3) + (4 * 2 * 4 * 4) * 5  # conv + linear, as above
    assert counts["gflops"] * 1e9 == pytest.approx(compute)
    # Batch norm over 4 x 2 x 4 x 4 elements at fvcore's training-mode 5 flops each (with affine).
    assert counts["gflops_with_norm"] * 1e9 == pytest.approx(compute + 5 * 128)
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
