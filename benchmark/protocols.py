"""``python -m benchmark.protocols [--model NAME] [overrides]`` (``make protocols``): the same
model and data under each protocol (conf/protocol/), one table (results/protocols.csv/.md; with
``--model``, a transformers model under its authors' protocol and the model card's,
results/protocols-<model>.csv/.md); the work is benchmark/run/protocol_compare.py."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmark.protocols [overrides]`` (``make protocols``): see ``compare``."""
    import argparse
    import sys
    from pathlib import Path

    from benchmark import CONF_DIR
    from benchmark.run.regression import TOY_OVERRIDES, CheckError, merge_overrides
    from benchmark.results.tables import write_table
    from benchmark.run.protocol_compare import compare, model_setting

    parser = argparse.ArgumentParser(prog="python -m benchmark.protocols",
                                     description=compare.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for benchmark.eval, on "
                        "top of the toy model on the toy set (e.g. model=slowfast_r50 "
                        "data=kinetics400 data.csv=... data.root=... device=cuda)")
    parser.add_argument("--model", default=None,
                        help="a transformers model (conf/model name): its authors' protocol "
                        "against the model card's (<authors'>_processor), its own views and "
                        "weights (auto), on the toy set unless the overrides say otherwise")
    parser.add_argument("--out", type=Path, default=None,
                        help="the table's path without suffix (.csv and .md are written; "
                        "default results/protocols, with --model results/protocols-<model>)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where each protocol's run goes (replaced each time; default "
                        "outputs/protocols, with --model outputs/protocols-<model>)")
    # torchvision's protocol needs a torchvision model's input (resize_size): not a default.
    parser.add_argument("--protocols", default=None,
                        type=lambda names: [n for n in names.split(",") if n],
                        help="conf/protocol names, comma-separated; the first is the one the "
                        "others are compared with (default zoo,pytorchvideo,pytorchvideo_main,"
                        "mmaction2; with --model its authors' and the card's)")
    args = parser.parse_args(argv)
    base, protocols, suffix = TOY_OVERRIDES, ["zoo", "pytorchvideo", "pytorchvideo_main",
                                              "mmaction2"], ""
    if args.model is not None:
        try:
            base, protocols = model_setting(args.model, TOY_OVERRIDES)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        suffix = f"-{args.model}"
    args.protocols = args.protocols or protocols
    args.out = args.out or Path(f"results/protocols{suffix}")
    args.run_dir = args.run_dir or Path(f"outputs/protocols{suffix}")
    unknown = [n for n in args.protocols if not (CONF_DIR / "protocol" / f"{n}.yaml").is_file()]
    if unknown or not args.protocols:
        print(f"error: --protocols: no conf/protocol/{(unknown or [''])[0]}.yaml", file=sys.stderr)
        return 2
    try:
        table, metrics = compare(merge_overrides(base, args.overrides), args.run_dir,
                                 args.protocols, default=args.protocols[0])
    except CheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    v = metrics["versions"]
    command = " ".join([*(["--model", args.model] if args.model else []), *args.overrides])
    note = (f"`make protocols` (python -m benchmark.protocols {command}): "
            f"{metrics['model']} ({metrics['weights']} weights) on {metrics['dataset']}, "
            f"{metrics['clips']}x{metrics['crops']} views, {metrics['device']} "
            f"{metrics['precision']}; torch {v['torch']}, "
            + "".join(f"{k} {v[k]}, " for k in ("pytorchvideo", "transformers") if v.get(k))
            + f"av {v['av']}; finished {metrics['finished']}. Every column is over the same "
            "videos: those every protocol's run evaluated (videos; evaluated: each run's own "
            "evaluated/listed). top1/top5 and the share of videos whose top-1 changes against "
            f"{args.protocols[0]} in %; max_prob_diff: the largest difference of one class's "
            f"averaged probability from {args.protocols[0]}'s.")
    write_table(args.out, table, note)
    print(table.to_markdown(index=False))
    print(f"table: {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
