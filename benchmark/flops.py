"""Entry point: ``python -m benchmark.flops [--models NAME ...]`` (``make flops``).

Builds every model config that has published numbers (random weights: FLOPs and parameters do
not depend on them), counts its GFLOPs per view on its test input and its parameters, and writes
``results/flops.csv`` and ``.md`` beside the model zoo's numbers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

# fvcore and pytorchvideo call torch.jit.script at import time; its deprecation notice is noise.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)

from omegaconf import OmegaConf  # noqa: E402

from benchmark import frameworks  # noqa: E402
from benchmark.results import cost  # noqa: E402
from benchmark.run.models import (CONF_DIR, UnknownModel, build_model,  # noqa: E402
                                  compose_for_model, offline_class_names)
from benchmark.results.tables import (FLOPS_SHOWN, flops_row, to_markdown, write_flops_table,  # noqa: E402
                              zoo_published)

log = logging.getLogger("benchmark.flops")


def measure(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        start = time.perf_counter()
        try:
            cfg = compose_for_model(name)
        except UnknownModel as err:
            raise SystemExit(f"error: --models {name}: {err}") from None
        adapter = frameworks.get(str(cfg.model.framework))
        # A framework that runs only under its own protocols (transformers) counts its model
        # with its protocol's head; X-CLIP classifies by the text of Kinetics-400's 400 names.
        own = adapter.OWN_PROTOCOLS_ONLY
        model = build_model(cfg.model, str(cfg.protocol.head) if own else "pooled_logits",
                            class_names=offline_class_names()[0] if own else None)
        # Both attention conventions where the adapter has them (gflops_sdpa).
        counts = cost.adapter_flop_counts(adapter, model.module, model.spec, sdpa=True)
        framework_count = adapter.framework_gflops(model.module, model.spec)
        if framework_count is not None:  # the convention its published figures use (mmaction2)
            counts["gflops_framework"] = framework_count
        counts["params"] = sum(p.numel() for p in model.module.parameters())
        published = (OmegaConf.to_container(cfg.model.published) if cfg.model.published
                     else {})
        rows.append(flops_row(name, model.spec, f"{cfg.views.clips}x{cfg.views.crops}",
                              counts, cost.params_m(model.module), published))
        log.info("%s: %.2f GFLOPs (%.2f with norm layers), %.2f M params [%.1f s]", name,
                 counts["gflops"], counts["gflops_with_norm"], rows[-1]["params_m"],
                 time.perf_counter() - start)
    return rows


def wired(names: list[str]) -> list[str]:
    """The models whose framework the registry knows (benchmark/frameworks/__init__.py's KNOWN)."""
    from benchmark.frameworks import KNOWN

    return [n for n in names
            if str(OmegaConf.load(CONF_DIR / "model" / f"{n}.yaml").get("framework")) in KNOWN]


def keep_others(rows: list[dict], csv: Path) -> list[dict]:
    """With ``--models``, the other models' rows of an existing table are kept (measured then,
    unchanged), so measuring a few models does not drop the rest; sorted by model."""
    if not csv.is_file():
        return rows
    import pandas as pd

    measured = {r["model"] for r in rows}
    old = pd.read_csv(csv)
    kept = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
            for r in old.to_dict("records") if r["model"] not in measured]
    return sorted(kept + rows, key=lambda r: r["model"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.flops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="model configs (default: every conf/model/*.yaml with published "
                             "numbers)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    names = args.models or wired(zoo_published().model.tolist())
    rows = measure(names)
    extra = ""
    if args.models:
        before = len(rows)
        rows = keep_others(rows, args.results_dir / "flops.csv")
        if len(rows) > before:
            extra = (f" Measured then: {', '.join(names)}; the other rows are kept from the "
                     "earlier table (python -m benchmark.flops --models ...).")
    table = write_flops_table(rows, args.results_dir / "flops", extra)
    print(to_markdown(table, shown=FLOPS_SHOWN))
    print(f"table: {args.results_dir / 'flops.md'}")


if __name__ == "__main__":
    main()
