"""``make profile`` (program: ``benchmark/profile.py``): where a model's forward pass spends its
time, from ``torch.profiler``: each kernel (GPU) or operator (CPU) by kind of work, and the
convolutions by input shape (docs/speed.md)."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from benchmark.run.device import autocast


# Kind of work -> substrings of kernel (GPU) or operator (CPU) names, tried in this order.
KINDS = {
    "conv/linear": ("conv", "implicit_gemm", "xmma", "cutlass", "nvjet", "gemm", "padding",
                    "addmm", "linear", "aten::mm", "aten::bmm"),
    "batch norm": ("batch_norm", "bn_fw", "batchnorm"),
    "activation": ("clamp", "relu", "sigmoid", "silu", "swish", "gelu"),
    "pooling": ("pool",),
    "addition": ("add",),
    "copy/cat": ("copy", "cat", "memcpy", "memset"),
}


def kind_of(name: str) -> str:
    name = name.lower()
    return next((kind for kind, parts in KINDS.items() if any(p in name for p in parts)), "other")


def profile_model(module: torch.nn.Module, example: list[torch.Tensor], device: torch.device,
                  precision: str, iters: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per kernel (GPU) or operator (CPU): its kind, milliseconds and calls per forward pass;
    and per convolution input shape (``record_shapes``): the device (GPU) or CPU milliseconds
    of its kernels, which says which convolution a slow kernel belongs to. Two untimed passes
    first (cuDNN autotuning, oneDNN's choices)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), autocast(device, precision):
        for _ in range(2):
            module(list(example))  # a fresh list: the model mutates it
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with profile(activities=activities, record_shapes=True) as prof:
            for _ in range(iters):
                module(list(example))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    rows = []
    for event in prof.key_averages():
        if device.type == "cuda":  # the GPU's kernels, not the operators launching them
            if "cuda" not in str(getattr(event, "device_type", "")).lower():
                continue
            self_us = event.self_device_time_total
        else:  # operators' own time (nested operators are not counted twice)
            if not event.key.startswith(("aten::", "mkldnn::")):  # mkldnn: eval.fuse's relu
                continue
            self_us = event.self_cpu_time_total
        if self_us > 0:
            rows.append({"name": event.key, "kind": kind_of(event.key),
                         "ms": self_us / 1e3 / iters, "calls": event.count // iters})
    table = pd.DataFrame(rows).sort_values("ms", ascending=False, ignore_index=True)
    return table, conv_shapes(prof, device, iters)


def conv_shapes(prof, device: torch.device, iters: int) -> pd.DataFrame:
    """Milliseconds per forward pass of ``aten::convolution`` per (input, weight) shape: the
    time of everything it ran (its kernels on a GPU, its operators on a CPU)."""
    rows = []
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key != "aten::convolution":
            continue
        us = event.device_time_total if device.type == "cuda" else event.cpu_time_total
        shapes = event.input_shapes or []
        rows.append({"input": "x".join(map(str, shapes[0])) if shapes else "",
                     "weight": "x".join(map(str, shapes[1])) if len(shapes) > 1 else "",
                     "ms": us / 1e3 / iters, "calls": event.count // iters})
    return (pd.DataFrame(rows, columns=["input", "weight", "ms", "calls"])
            .sort_values("ms", ascending=False, ignore_index=True))


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Milliseconds and share of the total per kind of work, largest first."""
    kinds = Counter()
    for row in table.itertuples():
        kinds[row.kind] += row.ms
    total = sum(kinds.values())
    return pd.DataFrame([{"kind": k, "ms": round(v, 2), "share": round(v / total, 3)}
                         for k, v in kinds.most_common()])
