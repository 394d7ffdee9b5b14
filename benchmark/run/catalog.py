"""What there is to name: the model, data set, protocol and decoder configs, one line each
(``python -m benchmark.list``). Each model line is its config as the CLI composes it, so the
protocol and views it shows are the ones a run with ``model=<name>`` gets."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmark import CONF_DIR
from benchmark.data import decoders
from benchmark.run import schema  # noqa: F401  (registers the config schemas compose reads)
from benchmark.run.sources import TAKES

KINDS = ("models", "data", "protocols", "decoders")
# A kind -> its config group (conf/<group>/).
GROUP = {"models": "model", "data": "data", "protocols": "protocol", "decoders": "decoder"}


def names(kind: str) -> list[str]:
    """The options of ``kind``'s config group, sorted."""
    return sorted(p.stem for p in (CONF_DIR / GROUP[kind]).glob("*.yaml"))


def model_lines() -> list[tuple[str, ...]]:
    """(name, framework, data set, protocol, views, published top-1) per model config."""
    rows = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for name in names("models"):
            cfg = compose("eval", overrides=[f"model={name}"])
            published = OmegaConf.to_container(cfg.model.published, resolve=False)
            top1 = published.get("top1")
            if name in TAKES:  # model=hf model.source=..., model=mmaction2 model.config=...
                rows.append((name, str(cfg.model.framework), f"model.{TAKES[name][0]}=",
                             "protocol and views from it", "", "no published top-1"))
                continue
            if name == "module":  # benchmark/api.py's nn.Module
                rows.append((name, "-", "benchmark.api.evaluate(module=...)",
                             "the protocol and input given", "", "no published top-1"))
                continue
            rows.append((name, str(cfg.model.framework),
                         str(published.get("dataset", "kinetics400")) if top1 is not None else "-",
                         str(cfg.protocol.name), f"{cfg.views.clips}x{cfg.views.crops}",
                         f"top-1 {top1}" if top1 is not None else "no published top-1"))
    return rows


def data_lines() -> list[tuple[str, ...]]:
    """(name, format, generated or where it is read from) per data set config."""
    rows = []
    for name in names("data"):
        raw = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
        where = ("generated here" if raw.get("synthetic") else
                 "needs data.csv and data.root (docs/data.md)")
        rows.append((name, f"format {raw.get('format', 'kinetics')}", where))
    return rows


def protocol_lines() -> list[tuple[str, ...]]:
    """(name, framework, clips, head, spatial, combine) per protocol config."""
    rows = []
    for name in names("protocols"):
        raw = OmegaConf.load(CONF_DIR / "protocol" / f"{name}.yaml")
        rows.append((name, str(raw.get("framework", "pytorchvideo")), f"clips {raw.clips}",
                     f"head {raw.head}", f"spatial {raw.spatial}", f"combine {raw.combine}"))
    return rows


def decoder_lines() -> list[tuple[str, ...]]:
    """(name, installed version or why it cannot run here) per decoder."""
    rows = []
    for name in names("decoders"):
        try:
            decoders.check_available(name)
            rows.append((name, decoders.version(name)))
        except decoders.BackendUnavailable as err:
            rows.append((name, f"unavailable: {err}"))
    return rows


LINES = {"models": model_lines, "data": data_lines, "protocols": protocol_lines,
         "decoders": decoder_lines}


def aligned(rows: list[tuple[str, ...]]) -> str:
    """Rows as columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(max(map(len, rows)))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)
