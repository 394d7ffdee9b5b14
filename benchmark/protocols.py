"""``python -m benchmark.protocols [overrides]`` (``make protocols``): the same model and data
under each protocol (conf/protocol/), one table (results/protocols.csv/.md); the work is
benchmark/run/protocol_compare.py."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmark.protocols [overrides]`` (``make protocols``): see ``compare``."""
    import argparse
    import sys
    from pathlib import Path

    from benchmark import CONF_DIR
    from benchmark.run.regression import TOY_OVERRIDES, CheckError, merge_overrides
    from benchmark.results.tables import write_table
    from benchmark.run.protocol_compare import compare

    parser = argparse.ArgumentParser(prog="python -m benchmark.protocols",
                                     description=compare.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for benchmark.eval, on "
                        "top of the toy model on the toy set (e.g. model=slowfast_r50 "
                        "data=kinetics400 data.csv=... data.root=... device=cuda)")
    parser.add_argument("--out", type=Path, default=Path("results/protocols"),
                        help="the table's path without suffix (.csv and .md are written)")
    parser.add_argument("--run-dir", type=Path, default=Path("outputs/protocols"),
                        help="where each protocol's run goes (replaced each time)")
    # torchvision's protocol needs a torchvision model's input (resize_size): not a default.
    parser.add_argument("--protocols", default="zoo,pytorchvideo,pytorchvideo_main,mmaction2",
                        type=lambda names: [n for n in names.split(",") if n],
                        help="conf/protocol names, comma-separated; the first is the one the "
                        "others are compared with")
    args = parser.parse_args(argv)
    unknown = [n for n in args.protocols if not (CONF_DIR / "protocol" / f"{n}.yaml").is_file()]
    if unknown or not args.protocols:
        print(f"error: --protocols: no conf/protocol/{(unknown or [''])[0]}.yaml", file=sys.stderr)
        return 2
    try:
        table, metrics = compare(merge_overrides(TOY_OVERRIDES, args.overrides), args.run_dir,
                                 args.protocols, default=args.protocols[0])
    except CheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    v = metrics["versions"]
    note = (f"`make protocols` (python -m benchmark.protocols {' '.join(args.overrides)}): "
            f"{metrics['model']} ({metrics['weights']} weights) on {metrics['dataset']}, "
            f"{metrics['clips']}x{metrics['crops']} views, {metrics['device']} "
            f"{metrics['precision']}; torch {v['torch']}, pytorchvideo {v['pytorchvideo']}, "
            f"av {v['av']}; finished {metrics['finished']}. Every column is over the same "
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
