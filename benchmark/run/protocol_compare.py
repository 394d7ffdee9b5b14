"""The same model and data under each protocol (``make protocols``): the runs through the real
entry point and their table over the videos every run evaluated. What a protocol is:
benchmark/frameworks/clips.py."""

from __future__ import annotations

import torch

from benchmark.frameworks import protocol_from_config
from benchmark.run.schema import ProtocolSchema


def model_setting(name: str, base: list[str]) -> tuple[list[str], list[str]]:
    """For ``--model NAME`` (a transformers model): ``base``'s overrides (the toy set on the CPU)
    without its model, weights, protocol and views, then ``model=NAME`` (its weights ``auto``: the
    hub cache's checkpoint, else random init, and its authors' views); and the protocols to
    compare: its authors' (``published.protocol``) first, then the model card's
    (``<authors'>_processor``)."""
    from omegaconf import OmegaConf

    from benchmark import CONF_DIR

    file = CONF_DIR / "model" / f"{name}.yaml"
    if not file.is_file():
        raise ValueError(f"--model: no conf/model/{name}.yaml")
    authors = OmegaConf.load(file).get("published", {}).get("protocol")
    card = f"{authors}_processor"
    if authors is None or not (CONF_DIR / "protocol" / f"{card}.yaml").is_file():
        raise ValueError(f"--model {name}: no model card protocol beside its authors' "
                         f"(conf/protocol/{card}.yaml)")
    dropped = ("model", "model.weights", "protocol", "views")
    kept = [o for o in base if o.split("=", 1)[0].lstrip("+~") not in dropped]
    return [*kept, f"model={name}"], [str(authors), card]


def compare(overrides: list[str], run_root, protocols: list[str], default: str = "zoo"):
    """The same model and data under each protocol, through the real entry point: one row per
    protocol (``protocol_table``), ``default``'s run the one the others are compared with."""
    from pathlib import Path

    from benchmark.run.regression import merge_overrides, run_eval

    runs = {}
    for name in [default, *(p for p in protocols if p != default)]:
        runs[name] = Path(run_root) / name
        run_eval(merge_overrides(overrides, [f"protocol={name}"]), runs[name])
    return protocol_table(runs, default)


def protocol_table(runs: dict, default: str):
    """A row per finished run (protocol name -> run dir): top-1/top-5, and against
    ``default``'s run the share of videos whose top-1 changes and the largest probability
    difference, all over the same videos: those every run evaluated (a video one protocol
    failed on would otherwise count in the others' top-1 only). ``videos``: how many that is;
    ``evaluated``: each run's own evaluated/listed. Returns (table, ``default``'s metrics)."""
    import json
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from omegaconf import OmegaConf

    from benchmark.results.metrics import accuracy
    from benchmark.run.regression import CheckError

    predictions = {name: pd.read_parquet(Path(d) / "predictions.parquet",
                                         columns=["video_id", "label", "probs"]).set_index("video_id")
                   for name, d in runs.items()}
    shared = predictions[default].index
    for table in predictions.values():
        shared = shared[shared.isin(table.index)]  # in the default run's order
    if not len(shared):
        raise CheckError("no video was evaluated by every protocol's run: nothing to compare")
    probs = {name: np.stack(table.probs[shared].map(np.asarray)) for name, table in
             predictions.items()}
    labels = torch.tensor(predictions[default].label[shared].to_numpy(), dtype=torch.long)
    rows = []
    for name, run_dir in runs.items():
        run_dir = Path(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        ours, theirs = probs[name], probs[default]
        top = accuracy(torch.from_numpy(ours), labels, ours.shape[1])
        # The protocol as the run had it (its resolved config), not as the preset reads now.
        # Its keys over the schema's defaults (a run saved before a key existed has none).
        saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml").protocol
        ran = protocol_from_config(OmegaConf.merge(OmegaConf.structured(ProtocolSchema), saved))
        rows.append({
            "protocol": name, "clips": ran.clips, "head": ran.head, "combine": ran.combine,
            "spatial": ran.spatial, "precision": ran.precision or "",
            "videos": len(shared),
            "evaluated": f"{metrics['videos_evaluated']}/{metrics['videos_listed']}",
            "top1": round(100 * top["top1"], 2), "top5": round(100 * top["top5"], 2),
            f"top1_changed_vs_{default}": round(100 * float(np.mean(
                ours.argmax(1) != theirs.argmax(1))), 2),
            f"max_prob_diff_vs_{default}": float(f"{np.abs(ours - theirs).max():.3g}"),
        })
    metrics = json.loads((Path(runs[default]) / "metrics.json").read_text())
    return pd.DataFrame(rows), metrics
