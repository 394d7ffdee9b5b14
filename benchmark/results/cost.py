"""Cost of a model: FLOPs (model-zoo convention), parameters, model-only throughput."""

from __future__ import annotations

import contextlib
import math
import time

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape, norm_flop_counter

# fvcore operator keys of the compute layers: conv + linear (linear may also trace as addmm /
# matmul / bmm; attention's products are matmul).
_ZOO_OPS = ("conv", "linear", "addmm", "matmul", "bmm")
_NORM_OPS = ("batch_norm", "layer_norm", "group_norm", "instance_norm")


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


_SDPA_OP = "scaled_dot_product_attention"


def _sdpa_macs(inputs, outputs) -> int:
    """fvcore handle: scaled_dot_product_attention's two products from its shapes, QK^T and the
    weights times V, the multiply-adds eager attention's two matmuls are (its scale and softmax
    are not counted either way). Counting them so needs no (tokens x tokens) weights in memory:
    V-JEPA 2 ViT-g's 18,432 tokens would need ~30 GB a layer in eager attention."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def flop_counts(model: torch.nn.Module, example: list[torch.Tensor],
                sdpa_products: bool = False) -> dict[str, float]:
    """GFLOPs of one view at batch 1 under the two conventions the pytorchvideo zoo's table uses, and a third.

    Both are fvcore counts (1 multiply-add = 1 flop). ``gflops``: conv + linear (+ attention
    matmuls) only; the zoo's slowfast_r50 8x8 and slow_r50 8x8 match it. ``gflops_with_norm``
    adds the norm layers as fvcore counts them in training mode (5 flops per element with an
    affine; batch norm in eval mode would count 2): the zoo's other entries match this (checked
    with `make flops`: slowfast_r101's 127.20, X3D, CSN, R(2+1)D, C2D, I3D, MViT).
    ``gmacs_flop_counter``: ``torch.utils.flop_counter`` (counts 2 FLOPs per multiply-add, so
    halved here to MACs; conv, linear and matmul-like ops, attention included, no norms): a
    third convention, against which torchvision's ``_ops`` is checked too (`make flops`).
    ``sdpa_products``: count scaled_dot_product_attention's QK^T and AV in ``gflops`` as eager
    attention's matmuls would be (``gflops_sdpa_products``: their share); fvcore skips it else.
    """
    from torch.utils import flop_counter

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        """torch's counter has SDPA's formula for its CUDA kernels, not for the CPU one."""
        return flop_counter.sdpa_flop_count(query, key, value)

    cpu_kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    with _eval_mode(model), torch.no_grad():
        counter = flop_counter.FlopCounterMode(display=False, custom_mapping={cpu_kernel: cpu_sdpa})
        with counter:
            model(list(example))
        # Fresh list: pytorchvideo's multipathway model mutates its input list in place.
        analysis = FlopCountAnalysis(model, (list(example),))
        # Training-mode batch-norm count without running in training mode (which would update
        # the running statistics): fvcore's own handle for it.
        analysis.set_op_handle("aten::batch_norm", norm_flop_counter(1))
        if sdpa_products:
            analysis.set_op_handle(f"aten::{_SDPA_OP}", _sdpa_macs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    products = by_op.get(_SDPA_OP, 0) / 1e9
    compute = sum(n for op, n in by_op.items() if op in _ZOO_OPS) / 1e9 + products
    norm = sum(n for op, n in by_op.items() if op in _NORM_OPS) / 1e9
    counts = {"gflops": compute, "gflops_with_norm": compute + norm,
              "gmacs_flop_counter": counter.get_total_flops() / 2 / 1e9}
    if sdpa_products:
        counts["gflops_sdpa_products"] = products
    return counts


def gflops_per_view(model: torch.nn.Module, example: list[torch.Tensor]) -> float:
    """GFLOPs of one view at batch 1: fvcore conv + linear counts (see ``flop_counts``)."""
    return flop_counts(model, example)["gflops"]


def example_views(adapter, spec, batch: int = 1) -> list[torch.Tensor]:
    """A random batch of ``batch`` views in the layout the adapter's models take: its own
    ``example_views`` where it has one (transformers: (B, T, C, H, W)), else the (B, C, T, H, W)
    pathways of ``InputSpec.example``."""
    return adapter.example_views(spec, batch)


def adapter_flop_counts(adapter, model: torch.nn.Module, spec, device: torch.device | None = None,
                        sdpa: bool = False) -> dict[str, float]:
    """``flop_counts`` of one view in the adapter's layout (``example_views``), for any
    framework: the one FLOPs helper of ``evaluate``'s cost, ``make flops`` and ``make bench``.

    An adapter whose models have attention convention(s) gives ``counted_as(module, name)``, a
    context in which the model runs as counted. The returned counts are the published figures'
    convention, the attention products counted (eager attention's matmuls, or SDPA's QK^T and AV
    from its shapes: the model runs its SDPA, no attention weights in memory); with
    ``sdpa=True`` also ``gflops_sdpa``, the count as SDPA hides them from fvcore. Without
    ``counted_as`` the model is counted as it runs (no ``gflops_sdpa``).
    """
    example = [x.to(device) if device is not None else x for x in example_views(adapter, spec, 1)]
    if not adapter.FLOP_CONVENTIONS:
        return flop_counts(model, example)
    with adapter.counted_as(model, "sdpa"):  # a model without SDPA runs its eager matmuls
        counts = flop_counts(model, example, sdpa_products=True)
    products = counts.pop("gflops_sdpa_products")
    if sdpa:
        counts["gflops_sdpa"] = counts["gflops"] - products
    return counts


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


def matmul_gmacs_per_s(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                       iters: int = 5) -> float:
    """The device's attainable multiply-accumulate rate: a size^3 matrix product in ``dtype``
    (best of ``iters`` after a warm-up), in GMAC/s. What a model's GMAC/s is measured against."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return size**3 / best / 1e9
