"""Cost of a model: FLOPs (model-zoo convention), parameters, model-only throughput."""

from __future__ import annotations

import contextlib
import time

import torch
from fvcore.nn import FlopCountAnalysis

# fvcore operator keys that the model zoo counts. Its tables predate fvcore's batch-norm
# handle, so they are conv + linear only (linear may also trace as addmm / matmul / bmm).
_ZOO_OPS = ("conv", "linear", "addmm", "matmul", "bmm")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    """Put the model in eval mode and restore each submodule's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def gflops_per_view(model: torch.nn.Module, example: list[torch.Tensor]) -> float:
    """GFLOPs of one view at batch 1, model-zoo convention: fvcore counts (1 multiply-add = 1 flop)
    of conv + linear only (not batch norm, pooling...)."""
    with _eval_mode(model), torch.no_grad():
        # Fresh list: pytorchvideo's multipathway model mutates its input list in place.
        analysis = FlopCountAnalysis(model, (list(example),))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    return sum(n for op, n in by_op.items() if op in _ZOO_OPS) / 1e9


def params_m(model: torch.nn.Module) -> float:
    """Millions of parameters."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def model_views_per_s(
    model: torch.nn.Module,
    example: list[torch.Tensor],
    device: torch.device,
    warmup: int = 1,
    iters: int = 3,
) -> float:
    """Model-only throughput: `example` is a batch of views (list of pathway tensors, batch dim
    first, already on device). Returns views per second = batch * iters / seconds."""
    cuda = device.type == "cuda"
    with _eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            model(list(example))  # fresh list each call: the model may mutate it
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            model(list(example))
        if cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return example[0].shape[0] * iters / seconds
