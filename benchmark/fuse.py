"""``python -m benchmark.fuse``: model-only time of each ``eval.fuse`` rewrite set (what
.ci/gpu-check's model stage runs). The rewrites: benchmark/frameworks/fuse.py (which fit a
model: its adapter's ``rewrites``); the timing: benchmark/run/timing.py."""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd
import torch

from benchmark import frameworks
from benchmark.frameworks import fuse
from benchmark.run.device import precision_problem
from benchmark.run.settings import resolve_device
from benchmark.run.models import build_model, compose_for_model
from benchmark.run.timing import time_variants


def main(argv: list[str] | None = None) -> list[dict]:
    """``python -m benchmark.fuse``: model-only time of each rewrite set, random weights."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.fuse", description=main.__doc__)
    parser.add_argument("--model", default="slowfast_r50")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--batch", type=int, default=None, help="default: 3 on a CPU, 60 on a GPU")
    parser.add_argument("--iters", type=int, default=3, help="timed rounds")
    parser.add_argument("--variants", default="none,bn,bn+stem,bn+relu",
                        help="eval.fuse values, comma-separated (the first is the baseline)")
    parser.add_argument("--nchw", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile each variant")
    parser.add_argument("--json", type=str, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as err:  # the device is not on this machine: one line
        raise SystemExit(f"error: --device {args.device}: {str(err).split(': ', 1)[1]}") from None
    problem = precision_problem(args.precision, device)
    if problem:
        raise SystemExit(f"error: {problem}")
    variants = [v for v in args.variants.split(",")
                if all(fuse.DEVICE_ONLY.get(n, device.type) == device.type for n in v.split("+"))]
    for variant in variants:
        try:
            fuse.resolve(variant, device.type)
        except fuse.FuseError as err:
            raise SystemExit(f"error: --variants: {str(err).split(': ', 1)[1]}") from None
    torch.manual_seed(0)
    cfg = compose_for_model(args.model)
    model = build_model(cfg.model)
    batch = args.batch or (3 if device.type == "cpu" else 60)
    layout = torch.contiguous_format if args.nchw else torch.channels_last_3d
    example = [x.to(device).contiguous(memory_format=layout) for x in model.spec.example(batch)]
    load = os.getloadavg()[0]
    rows = time_variants(model.module, frameworks.get(str(cfg.model.framework)), example, device,
                         args.precision, variants, args.iters,
                         not args.nchw, args.compile)
    print(f"{model.name}, {device}, {args.precision}, {'NCDHW' if args.nchw else 'channels-last'}"
          f", batch {batch}, {args.iters} interleaved rounds{', compiled' if args.compile else ''}"
          f"; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(pd.DataFrame(rows).to_markdown(index=False))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model.name, "device": str(device), "precision": args.precision,
                       "batch": batch, "compile": args.compile, "rows": rows,
                       "torch": torch.__version__}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
