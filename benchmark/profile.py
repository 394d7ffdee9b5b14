"""Entry point: ``python -m benchmark.profile [--model NAME] [--device cuda] ...``.

Where a model's forward pass spends its time on a device: ``torch.profiler`` over a few passes of
one view batch (random weights: time does not depend on them), summed by kind of work
(convolutions, batch norm, activations, additions, pooling, copies) and the most expensive
kernels (GPU) or operators (CPU). It is what tells whether a model is bound by its convolutions
or by the memory-bound work between them, and which convolution is slow (docs/speed.md).
Prints the tables and writes ``results/profiles/<device>-<model>-<precision>-b<batch>.md`` (the
tables) and ``.csv`` (every kernel or operator).
"""

from __future__ import annotations

import argparse
import warnings
from datetime import datetime, timezone
from pathlib import Path

# fvcore and pytorchvideo call torch.jit.script at import time; its deprecation notice is noise.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)

import torch  # noqa: E402

from benchmark import frameworks  # noqa: E402
from benchmark.frameworks import fuse  # noqa: E402
from benchmark.run.device import (PRECISIONS, device_name, precision_problem,  # noqa: E402
                                  prepare_model)
from benchmark.run.settings import resolve_device  # noqa: E402
from benchmark.run.models import UnknownModel, build_model, compose_for_model  # noqa: E402
from benchmark.run.profile import profile_model, summary  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m benchmark.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="slowfast_r50", help="a conf/model config")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    parser.add_argument("--precision", default="bf16", choices=sorted(PRECISIONS))
    parser.add_argument("--batch", type=int, default=None,
                        help="views per forward pass (default: eval.batch_views=auto's)")
    parser.add_argument("--nchw", action="store_true", help="NCDHW instead of channels-last")
    parser.add_argument("--iters", type=int, default=3, help="profiled forward passes")
    parser.add_argument("--fuse", default="none",
                        help="eval.fuse's rewrites (benchmark/frameworks/fuse.py): none, auto, bn+stem, ...")
    parser.add_argument("--top", type=int, default=20, help="kernels/operators listed")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    problem = precision_problem(args.precision, device)
    if problem:
        raise SystemExit(f"error: {problem.replace('precision=', '--precision ', 1)}")
    batch = args.batch or (3 if device.type == "cpu" else 60)
    try:
        cfg = compose_for_model(args.model)
        model = build_model(cfg.model)
    except UnknownModel as err:
        raise SystemExit(f"error: --model {args.model}: {err}") from None
    try:
        rewrites = fuse.resolve(args.fuse, device.type)
    except fuse.FuseError as err:
        raise SystemExit(f"error: --fuse {args.fuse}: {str(err).split(': ', 1)[1]}") from None
    channels_last = not args.nchw
    runner = prepare_model(model.module, device, channels_last, compile=False, fuse=rewrites,
                           adapter=frameworks.get(str(cfg.model.framework)))
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    example = [x.to(device).contiguous(memory_format=layout) for x in model.spec.example(batch)]
    table, convs = profile_model(runner, example, device, args.precision, args.iters)
    kinds = summary(table)
    what = "kernels" if device.type == "cuda" else "operators"
    header = (f"`python -m benchmark.profile`: {model.name}, {device_name(device)}, "
              f"{args.precision}, {'channels-last' if channels_last else 'NCDHW'}, batch {batch}, "
              f"fuse {fuse.label(rewrites)}, "
              f"milliseconds of {what} per forward pass (mean of {args.iters}); torch "
              f"{torch.__version__}"
              + (f", cuDNN {torch.backends.cudnn.version()}" if device.type == "cuda" else "")
              + f"; {datetime.now(timezone.utc).isoformat(timespec='seconds')}.")
    top = table.head(args.top).assign(ms=lambda t: t.ms.round(2),
                                      name=lambda t: t.name.str.slice(0, 120))
    stem = (args.results_dir / "profiles"
            / (f"{device.type}-{model.name}-{args.precision}-b{batch}"
               + (f"-fuse-{fuse.label(rewrites)}" if rewrites else "")))
    stem.parent.mkdir(parents=True, exist_ok=True)
    shapes = convs.head(args.top).assign(ms=lambda t: t.ms.round(2))
    text = "\n\n".join([header, kinds.to_markdown(index=False), top.to_markdown(index=False),
                         "Convolutions by input x weight shape (record_shapes):",
                         shapes.to_markdown(index=False)])
    stem.with_suffix(".md").write_text(text + "\n")
    table.to_csv(stem.with_suffix(".csv"), index=False)
    print(text)
    print(f"profile: {stem.with_suffix('.md')}")
    return stem.with_suffix(".md")


if __name__ == "__main__":
    main()
