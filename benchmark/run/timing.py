"""Model-only timing of ``eval.fuse``'s rewrite sets (``python -m benchmark.fuse``)."""

from __future__ import annotations

import time

import torch
from torch import nn

from benchmark.frameworks import fuse
from benchmark.frameworks.api import Adapter
from benchmark.run.device import autocast, clock, prepare_model


def time_variants(module: nn.Module, adapter: Adapter, example: list[torch.Tensor],
                  device: torch.device, precision: str, variants: list[str], iters: int,
                  channels_last: bool = True, compile: bool = False) -> list[dict]:
    """Model-only seconds per forward pass of each ``eval.fuse`` variant, the passes
    interleaved (variant after variant, ``iters`` rounds) so that other work on the machine
    slows all of them alike; one untimed warm-up pass each (kernel choice, compiling). On a
    CPU also the process's CPU seconds per pass (all threads), which other processes taking
    cores inflate less than the wall time. ``adapter``: the model's framework's (which
    rewrites fit its models)."""
    runners = {v: prepare_model(module, device, channels_last, compile,
                                fuse.resolve(v, device.type), adapter)
               for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    with torch.inference_mode(), autocast(device, precision):
        for runner in runners.values():
            runner(list(example))
        for _ in range(iters):
            for variant, runner in runners.items():
                start, cpu_start = clock(device), time.process_time()
                runner(list(example))
                seconds[variant].append(clock(device) - start)
                cpu[variant].append(time.process_time() - cpu_start)
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    base, cpu_base = median(seconds[variants[0]]), median(cpu[variants[0]])
    rows = []
    for variant, times in seconds.items():
        middle = median(times)
        rows.append({"fuse": fuse.label(fuse.resolve(variant, device.type)), "setting": variant,
                     "median_s": round(middle, 4), "min_s": round(min(times), 4),
                     "max_s": round(max(times), 4),
                     "views_per_s": round(example[0].shape[0] / middle, 2),
                     f"speedup_vs_{variants[0]}": round(base / middle, 3),
                     **({"cpu_s": round(median(cpu[variant]), 4),
                         f"cpu_speedup_vs_{variants[0]}": round(cpu_base / median(cpu[variant]), 3)}
                        if device.type == "cpu" else {})})
    return rows
