"""``python -m benchmark.protocols [overrides]`` (``make protocols``): the same model and data
under each protocol (conf/protocol/), one table (results/protocols.csv/.md). What a protocol is:
benchmark/frameworks/clips.py."""

from __future__ import annotations

from benchmark.frameworks.clips import protocol_from_config


def compare(overrides: list[str], run_root, protocols: list[str], default: str = "zoo"):
    """The same model and data under each protocol, through the real entry point: one row per
    protocol with its top-1/top-5, and against ``default``'s run the share of videos whose top-1
    changes and the largest probability difference."""
    import json
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from omegaconf import OmegaConf

    from benchmark.run.regression import merge_overrides, run_eval

    rows, base = [], None
    for name in [default, *(p for p in protocols if p != default)]:
        run_dir = Path(run_root) / name
        result = run_eval(merge_overrides(overrides, [f"protocol={name}"]), run_dir)
        probs = pd.read_parquet(run_dir / "predictions.parquet").set_index("video_id").probs
        base = probs if base is None else base
        shared = probs.index.intersection(base.index)  # videos both runs evaluated
        ours, theirs = (np.stack(p[shared].map(np.asarray)) for p in (probs, base))
        # The protocol as the run had it (its resolved config), not as the preset reads now.
        ran = protocol_from_config(OmegaConf.load(run_dir / ".hydra" / "config.yaml").protocol)
        rows.append({
            "protocol": name, "clips": ran.clips, "head": ran.head, "combine": ran.combine,
            "videos": result["videos"],
            "top1": round(100 * result["top1"], 2), "top5": round(100 * result["top5"], 2),
            f"top1_changed_vs_{default}": round(100 * float(np.mean(
                ours.argmax(1) != theirs.argmax(1))), 2),
            f"max_prob_diff_vs_{default}": float(f"{np.abs(ours - theirs).max():.3g}"),
        })
    metrics = json.loads((Path(run_root) / default / "metrics.json").read_text())
    return pd.DataFrame(rows), metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmark.protocols [overrides]`` (``make protocols``): see ``compare``."""
    import argparse
    import sys
    from pathlib import Path

    from benchmark import CONF_DIR
    from benchmark.run.regression import TOY_OVERRIDES, CheckError, merge_overrides
    from benchmark.results.tables import write_table

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
    parser.add_argument("--protocols", default="zoo,pytorchvideo,pytorchvideo_main",
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
            f"av {v['av']}; finished {metrics['finished']}. top1/top5 and the share of videos "
            f"whose top-1 changes against {args.protocols[0]} in %; max_prob_diff: the largest "
            f"difference of one class's averaged probability from {args.protocols[0]}'s, over "
            "the videos both evaluated.")
    write_table(args.out, table, note)
    print(table.to_markdown(index=False))
    print(f"table: {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
