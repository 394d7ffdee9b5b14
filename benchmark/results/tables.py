"""Reports: tables (CSV for tools, Markdown for people) and plots, built from finished runs.

- ``results/evaluations.csv`` / ``.md``: one row per measurement, keyed by everything that
  changes the result or the speed (model, weights, dataset, the data evaluated: CSV and its hash,
  the data root and the copy's fingerprint, ``data.limit``; protocol, views, device, precision,
  TF32, the ``eval.fuse`` rewrites, compile, batch_views, channels_last), so a rerun replaces its
  row and a run that differs in any of them is a row of its own. Every row shows its coverage
  (videos evaluated / listed). Measured top-1/top-5 carry a seeded 95% bootstrap interval
  (``+-`` in the Markdown); the published numbers (pytorchvideo model zoo) sit in their own
  columns beside the measured ones, never in their place, and only beside the checkpoint they
  were measured with (``official``; each row names its checkpoint: hub id @ revision or file @
  SHA-256 prefix, in the key), with the measured minus published
  delta only where the run is comparable (official weights, the published views and protocol,
  the full list, and at least ``report.min_coverage`` of it evaluated).
  Where the tables go: ``results_dir`` (``tables_dir``).
- Per run, in its folder: ``report.md``, ``per_class.csv``/``.md`` (worst class first),
  ``confusions.csv``/``.md`` (most confused class pairs), and the two plots.
- Plots (PNG, in the run folder and ``results/``): top-1 against GFLOPs per view with the zoo's
  published points, and model-only views/s per device and precision.
- ``results/flops.csv`` / ``.md``: every zoo model's GFLOPs and params (``make flops``).

``python -m benchmark.report RUN_OR_SWEEP_DIR...`` (benchmark/report.py) rebuilds all of it from the runs' files
(metrics.json, predictions.parquet, .hydra/config.yaml) without evaluating anything again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from string import Formatter

import fvcore
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from benchmark.data.files import file_problem
from benchmark.data.manifest import ManifestError, read_class_names
from benchmark.results.metrics import MIN_COVERAGE, bootstrap_ci, confused_pairs, per_class_accuracy
from benchmark import CONF_DIR
from benchmark.data.files import atomic_write, file_lock

log = logging.getLogger(__name__)

# One row, one measurement: everything that changes the result (the data copy too: the same CSV
# over another root is another measurement) or the speed (how the model ran).
EVAL_KEY = ["model", "weights", "checkpoint", "dataset", "split", "data", "subset", "root",
            "data_fingerprint", "limit", "protocol", "decoder", "device", "precision", "tf32",
            "fuse", "compile", "batch_views", "channels_last", "views"]
# The views and protocol the zoo's numbers were measured with, unless a model's
# ``published.views`` / ``published.protocol`` say otherwise.
PUBLISHED_VIEWS = "10x3"
PUBLISHED_PROTOCOL = "zoo"
EVAL_COLUMNS = EVAL_KEY + [
    "videos", "coverage", "found", "decodable", "found_fraction", "min_found_fraction",
    "found_below_threshold", "leakage", "subset_sha256",
    "label_map", "top1", "top1_ci95", "published_top1", "top1_delta",
    "top5", "top5_ci95", "published_top5", "top5_delta", "no_delta_because",
    "mean_class_accuracy",
    "gflops", "published_gflops", "gflops_delta",
    "params_m", "published_params_m", "params_delta",
    "views_per_s", "videos_per_s",
    "decoder_version", "decoder_notes",
    "torch", "pytorchvideo", "av", "benchmark", "benchmark_source", "finished",
]
EVAL_NOTE = (
    "Rows: one per finished `python -m benchmark.eval` run (`make eval-r50`, a sweep's jobs) or "
    "`make report RUNS=...`, one per measurement: keyed by model, weights, checkpoint (hub id @ "
    "revision or file @ SHA-256 prefix), dataset, data (CSV, "
    "root, data fingerprint), limit, protocol, decoder (shown when not PyAV), views, device, "
    "precision, tf32 and how the model ran (eval.fuse, compile, batch_views, channels_last); "
    "evaluations.csv holds every column "
    "(versions, finished, no_delta_because). evaluated/listed: the run's coverage of its list. "
    "found_below_threshold: fewer listed videos on disk than data.min_found_fraction, shown as "
    "FOUND TOO FEW first in the data cell. split: UCF101/HMDB51's split id; "
    "subset: the data.subset list's file name @ its sha256 prefix (subset_sha256 in full); "
    "leakage: test videos also in the split's training list; decodable: found videos that "
    "decoded. top-1/top-5 in %: measured `+-` half the width of the seeded 95% bootstrap "
    "interval over videos, then in brackets the pytorchvideo model zoo's published number "
    "(Kinetics-400; torchvision's models: their weights' meta; shown only beside the official "
    "checkpoint, the one it was measured with) and measured - published, the "
    "delta only for runs comparable with the zoo's (official weights, the published views and "
    f"protocol, the full list with at least report.min_coverage, {MIN_COVERAGE:g} by default, of "
    "its videos evaluated). data: dataset, CSV@sha256 prefix, data root, data.limit, listed "
    "videos found on disk and the first 12 characters of the data fingerprint (sha256 over the "
    "found videos' (id, file size) pairs: equal on the same copy). GFLOPs per view: fvcore conv "
    "+ linear (see flops.md for the zoo's conventions). views/s: model only; videos/s: end to "
    "end."
)
FLOPS_COLUMNS = [
    "model", "input", "views", "gflops", "gflops_with_norm", "gmacs_flop_counter", "gflops_sdpa",
    "gflops_framework", "published_gflops", "gflops_delta", "gflops_with_norm_delta",
    "flops_match", "params_m", "published_params_m", "params_delta", "params", "published_params",
    "params_match", "published_top1", "published_top5", "source",
]


def cell(*parts, sep: str = ", "):
    """A Markdown cell built from a row's columns: each part is a ``str.format`` template over
    the row (left out when a column it names is empty) or a function of the row."""
    def render(row: dict) -> str:
        shown = []
        for part in parts:
            if callable(part):
                shown.append(part(row))
            elif all(row.get(name, "") for _, name, _, _ in Formatter().parse(part) if name):
                shown.append(part.format_map(row))
        return sep.join(text for text in shown if text)
    return render


def measured(name: str):
    """``76.1 +-0.6 (76.94, -0.8)``: the value, half its 95% interval, the published value and
    measured - published, each only where the row has it."""
    def render(row: dict) -> str:
        if not row.get(name, ""):
            return ""
        beside = cell("{published_%s}" % name, lambda r: _signed(r.get(f"{name}_delta", "")))(row)
        return cell("{%s}" % name, "+-{%s_ci95}" % name, sep=" ")(row) + (
            f" ({beside})" if beside else "")
    return render


def _signed(text: str) -> str:
    return "" if not text else text if text.startswith("-") else "+" + text


def _device_cell(row: dict) -> str:
    return cell("{device} {precision}", lambda r: "tf32" if r.get("tf32") == "True" else "")(row)


def _ran_cell(row: dict) -> str:
    """How the model ran (the speed's key columns): ``batch 3, channels_last, fuse bn+relu``."""
    layout = {"True": "channels_last", "False": "no channels_last"}
    return cell("batch {batch_views}", lambda r: layout.get(r.get("channels_last", ""), ""),
                "fuse {fuse}", lambda r: "compiled" if r.get("compile") == "True" else "")(row)


def too_few(row: dict) -> str:
    """``**FOUND TOO FEW: 80% < 98%**`` for a run below ``data.min_found_fraction`` ("" else)."""
    if row.get("found_below_threshold") != "True":
        return ""
    share = lambda name: f"{100 * float(row[name]):.3g}%" if row.get(name) else "?"
    return f"**FOUND TOO FEW: {share('found_fraction')} < {share('min_found_fraction')}**"


def _coverage_cell(row: dict) -> str:
    """``12/19881 (0.1%)``: videos evaluated / listed and that share."""
    share = row.get("coverage", "")
    return cell("{videos}", lambda r: f"({100 * float(share):.3g}%)" if share else "",
                sep=" ")(row)


# The evaluations table for people (evaluations.md); evaluations.csv keeps EVAL_COLUMNS.
EVAL_SHOWN = [
    ("model", "model"),
    ("weights", cell("{weights}", lambda r: "" if r.get("checkpoint") in ("", r.get("weights"))
                     else r["checkpoint"])),
    ("data: CSV, root, found/listed, fingerprint",
     cell(lambda r: too_few(r), "{dataset}", "split {split}", "{data}", "subset {subset}", "{root}",
          "limit {limit}", "found {found}", "decodable {decodable}", "leakage {leakage}",
          "{data_fingerprint}")),
    ("evaluated/listed", _coverage_cell),
    ("protocol", cell("{protocol}", lambda r: "" if r.get("decoder", "") in ("", "pyav")
                      else f"decoder {r['decoder']}")),
    ("views", "views"),
    ("device, precision", _device_cell),
    ("how it ran", _ran_cell),
    ("top-1 % (published, delta)", measured("top1")),
    ("top-5 % (published, delta)", measured("top5")),
    ("GFLOPs/view", "gflops"),
    ("params M", "params_m"),
    ("views/s", "views_per_s"),
    ("videos/s", "videos_per_s"),
]
# The FLOPs table for people (flops.md); flops.csv keeps FLOPS_COLUMNS.
FLOPS_SHOWN = [
    ("model", "model"),
    ("input", "input"),
    ("views", "views"),
    ("GFLOPs conv + linear (delta)", cell("{gflops}", "({gflops_delta})", sep=" ")),
    ("GFLOPs with norm (delta)", cell("{gflops_with_norm}", "({gflops_with_norm_delta})", sep=" ")),
    ("GFLOPs SDPA, attention not counted", "gflops_sdpa"),
    ("GFLOPs framework's counter", "gflops_framework"),
    ("published GFLOPs", "published_gflops"),
    ("GFLOPs match", "flops_match"),
    ("params M (delta)", cell("{params_m}", "({params_delta})", sep=" ")),
    ("published params M", "published_params_m"),
    ("params match", "params_match"),
]
# results_dir=auto on a generated data set (tables_dir), relative to the command's directory.
GENERATED_RESULTS = Path("outputs") / "results"
# At most this many columns in a Markdown table: a table for people fits a screen (the CSV beside
# it keeps every column for tools).
MAX_SHOWN_COLUMNS = 14


class ReportError(ValueError):
    """A folder or file that is not a finished run; the message names it."""


# ---- rows and tables ----------------------------------------------------------------------------

def _pct(x):
    return None if x is None else round(100 * x, 2)


def _round(x, digits=2):
    """``digits`` decimals, but never rounding a small number (a tiny model's GFLOPs) to 0."""
    if x is None:
        return None
    return round(x, digits) if abs(x) >= 10 ** (1 - digits) else float(f"{x:.2g}")


def _delta(measured, published):
    return None if measured is None or published is None else round(measured - published, 2)


def coverage(metrics: dict) -> float | None:
    """The share of the listed videos the run evaluated."""
    listed = metrics.get("videos_listed")
    return metrics["videos_evaluated"] / listed if listed else None


def no_delta_because(metrics: dict, published: dict,
                     min_coverage: float = MIN_COVERAGE) -> str:
    """Why the run's accuracy does not compare with the zoo's ("" when it does): a model with
    no published numbers (one from a source) says so; else it must be
    the data set the published numbers are on (``published.dataset``, Kinetics-400 by
    default), the official weights, the views and protocol the published numbers were
    measured with, and the whole list (no ``data.limit`` subset, no deliberately broken run)
    with at least ``min_coverage`` of its videos evaluated."""
    if not published:  # a model from a source (model=hf, model=mmaction2): nothing to compare
        return f"no published numbers for {metrics['model']}"
    views = f"{metrics['clips']}x{metrics['crops']}"
    share = coverage(metrics)
    published_on = published.get("dataset", "kinetics400")
    reasons = [
        (metrics["dataset"] != published_on,
         f"dataset {metrics['dataset']}, published on {published_on}"),
        (metrics["weights"] != "official",
         f"weights {metrics['weights']}: not the checkpoint the published numbers are of"),
        (views != str(published.get("views", PUBLISHED_VIEWS)),
         f"views {views}, published {published.get('views', PUBLISHED_VIEWS)}"),
        (bool(metrics.get("fault")), f"views.fault={metrics.get('fault')}"),
        (metrics.get("limit") is not None, f"data.limit={metrics.get('limit')}"),
        (metrics.get("protocol") != published.get("protocol", PUBLISHED_PROTOCOL),
         f"protocol {metrics.get('protocol')}, published "
         f"{published.get('protocol', PUBLISHED_PROTOCOL)}"),
        (share is None or share < min_coverage,
         f"{metrics['videos_evaluated']} of {metrics.get('videos_listed')} listed videos "
         f"evaluated, below report.min_coverage {min_coverage:g}"),
    ]
    return "; ".join(reason for failed, reason in reasons if failed)


def comparable(metrics: dict, published: dict, min_coverage: float = MIN_COVERAGE) -> bool:
    """Whether the run's accuracy compares with the zoo's (``no_delta_because`` says why not)."""
    return not no_delta_because(metrics, published, min_coverage)


def data_label(metrics: dict) -> str:
    """The data evaluated, for the table key: CSV file name @ the first 8 hex of its SHA-256."""
    if not metrics.get("csv_sha256"):
        return ""  # a run from before the key had it
    return f"{Path(str(metrics['csv'])).name}@{metrics['csv_sha256'][:8]}"


def eval_row(metrics: dict, published: dict, ci: dict | None = None,
             min_coverage: float = MIN_COVERAGE) -> dict:
    """A table row from a run's metrics.json (accuracies in percent, as the zoo prints them);
    ``ci``: ``bootstrap_ci``'s intervals, shown as their half width; accuracy deltas only for a
    comparable run (``no_delta_because``)."""
    ci = ci or {}
    if (metrics["dataset"] != published.get("dataset", "kinetics400")
            or metrics["weights"] != "official"):
        # A published accuracy is its data set's (the zoo's: Kinetics-400) and its checkpoint's
        # (``official``: the one the model config names), nothing else's.
        published = {k: v for k, v in published.items() if k not in ("top1", "top5")}
    because = no_delta_because(metrics, published, min_coverage)
    accuracy_delta = not because
    share = coverage(metrics)

    def half_width(name):
        low, high = ci.get(name, (None, None))
        return None if low is None else round(100 * (high - low) / 2, 2)

    top1, top5 = _pct(metrics["top1"]), _pct(metrics["top5"])
    gflops, params = _round(metrics.get("gflops")), _round(metrics.get("params_m"))
    return {
        "model": metrics["model"], "weights": metrics["weights"],
        # Runs from before the identity was recorded: their weights label.
        "checkpoint": metrics.get("checkpoint", metrics["weights"]),
        "label_map": metrics.get("label_map"), "dataset": metrics["dataset"],
        "data": data_label(metrics), "root": metrics.get("root"), "limit": metrics.get("limit"),
        "split": metrics.get("split"), "subset": subset_label(metrics),
        "device": metrics["device"], "precision": metrics["precision"],
        "tf32": metrics.get("tf32", False),
        # How the model ran: what views_per_s was measured with (and float rounding may move).
        "fuse": metrics.get("fuse"), "compile": metrics.get("compile"),
        "batch_views": metrics.get("batch_views"), "channels_last": metrics.get("channels_last"),
        # A deliberately broken run (views.fault) never takes a real run's row.
        "views": f"{metrics['clips']}x{metrics['crops']}"
                 + (f" fault={metrics['fault']}" if metrics.get("fault") else ""),
        # Runs from before the protocols named only their clip spacing.
        "protocol": metrics.get("protocol") or f"spacing={metrics.get('spacing')}",
        # Runs from before the decoder group decoded with PyAV.
        "decoder": metrics.get("decoder") or "pyav",
        "decoder_version": metrics.get("decoder_version") or metrics["versions"].get("av"),
        "decoder_notes": metrics.get("videos_with_decoder_notes"),
        "videos": f"{metrics['videos_evaluated']}/{metrics['videos_listed']}",
        "coverage": None if share is None else round(share, 4),
        **data_copy(metrics),
        "top1": top1, "top1_ci95": half_width("top1"), "published_top1": published.get("top1"),
        "top1_delta": _delta(top1, published.get("top1")) if accuracy_delta else None,
        "top5": top5, "top5_ci95": half_width("top5"), "published_top5": published.get("top5"),
        "top5_delta": _delta(top5, published.get("top5")) if accuracy_delta else None,
        "no_delta_because": because or None,
        "mean_class_accuracy": _pct(metrics["mean_class_accuracy"]),
        "gflops": gflops, "published_gflops": published.get("gflops"),
        "gflops_delta": _delta(gflops, published.get("gflops")),
        "params_m": params, "published_params_m": published.get("params_m"),
        "params_delta": _delta(params, published.get("params_m")),
        "views_per_s": _round(metrics.get("views_per_s"), 3),
        "videos_per_s": _round(metrics.get("videos_per_s"), 4),
        "torch": metrics["versions"]["torch"], "pytorchvideo": metrics["versions"]["pytorchvideo"],
        "av": metrics["versions"]["av"], "benchmark": metrics["versions"].get("benchmark"),
        "benchmark_source": metrics["versions"].get("benchmark_source"),
        "finished": metrics["finished"],
    }


def subset_label(metrics: dict) -> str | None:
    """The ``data.subset`` list, for the table key: file name @ the first 8 hex of its SHA-256."""
    if not metrics.get("subset"):
        return None
    return f"{metrics['subset']}@{str(metrics.get('subset_sha256'))[:8]}"


def data_copy(metrics: dict) -> dict:
    """Which copy of the data: listed files found (and decodable), the data fingerprint's first
    12 characters, the found fraction against ``data.min_found_fraction``, the test videos also
    in the training list, the subset list's hash (empty for runs from before they were
    recorded)."""
    listed = metrics.get("videos_listed")
    copy = {"found": None, "data_fingerprint": None}
    if "videos_found" in metrics:
        copy = {"found": f"{metrics['videos_found']}/{listed}",
                "data_fingerprint": str(metrics["data_fingerprint"])[:12]}
    decodable = metrics.get("videos_decodable")
    fraction = metrics.get("found_fraction")
    return {**copy, "decodable": None if decodable is None else f"{decodable}/{listed}",
            "found_fraction": None if fraction is None else round(fraction, 4),
            "min_found_fraction": metrics.get("min_found_fraction"),
            "found_below_threshold": metrics.get("found_below_threshold"),
            "leakage": metrics.get("leakage"), "subset_sha256": metrics.get("subset_sha256")}


def to_markdown(table: pd.DataFrame, note: str = "", shown: list | None = None) -> str:
    """The table for people: ``shown``, (header, column name or ``cell``) pairs, picks and
    combines its columns (every column when None); never more than MAX_SHOWN_COLUMNS."""
    if shown is None:
        people = table.astype(object).fillna("")
    else:
        rows = [{k: "" if pd.isna(v) else str(v) for k, v in r.items()}
                for r in table.to_dict("records")]
        people = pd.DataFrame([[how(r) if callable(how) else r.get(how, "") for _, how in shown]
                               for r in rows], columns=[header for header, _ in shown])
    if len(people.columns) > MAX_SHOWN_COLUMNS:
        raise ValueError(f"{len(people.columns)} columns in a table for people (at most "
                         f"{MAX_SHOWN_COLUMNS}): choose them with `shown`")
    # Cells as the CSV has them (no reformatting of numbers) when they were built.
    text = people.to_markdown(index=False, disable_numparse=shown is not None)
    return (note + "\n\n" if note else "") + text + "\n"


def write_table(stem: Path, table: pd.DataFrame, note: str = "",
                shown: list | None = None) -> None:
    """``stem``.csv (every column, for tools) and ``stem``.md (``shown``, for reading): the one
    writer of every results table."""
    atomic_write(stem.with_suffix(".csv"), lambda p: table.to_csv(p, index=False))
    atomic_write(stem.with_suffix(".md"),
                 lambda p: p.write_text(to_markdown(table, note, shown)))


def upsert_table(stem: Path, row: dict, key: list[str], columns: list[str],
                 note: str = "", shown: list | None = None) -> pd.DataFrame:
    """Replace the row with ``row``'s key in ``stem``.csv (or add it); rewrite .csv and .md.
    Under ``stem``'s file lock, re-reading the table inside it (concurrent runs keep every row)."""
    with file_lock(stem):
        return _upsert(stem, row, key, columns, note, shown)


def _upsert(stem: Path, row: dict, key: list[str], columns: list[str], note: str,
            shown: list | None) -> pd.DataFrame:
    csv_path = stem.with_suffix(".csv")
    table = read_table(csv_path, key)
    table = pd.DataFrame(columns=columns) if table is None else table
    new = pd.DataFrame([{k: "" if v is None else str(v) for k, v in row.items()}], columns=columns)
    if not table.empty:
        # A column the table lacks (one added to the key since) is empty in each old row.
        same = (table.reindex(columns=key, fill_value="").fillna("").astype(str)
                == new[key].iloc[0]).all(axis=1)
        table = table[~same]
    table = pd.concat([table, new], ignore_index=True).sort_values(key, ignore_index=True)
    table = table.reindex(columns=columns)
    write_table(stem, table, note, shown)
    return table


def read_table(csv_path: Path, key: list[str]) -> pd.DataFrame | None:
    """A results table (as strings) with its ``key`` columns; None if there is none yet. Anything
    else at that path (empty, not CSV, other columns) is a ReportError naming it."""
    if not csv_path.exists() and not csv_path.is_symlink():
        return None
    problem = file_problem(csv_path)
    remedy = "move it away or set results_dir"
    if problem:
        raise ReportError(f"{csv_path}: {problem}; {remedy}")
    try:
        table = pd.read_csv(csv_path, dtype=str)
    except pd.errors.EmptyDataError:
        raise ReportError(f"{csv_path}: the file is empty, not a table; {remedy}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise ReportError(f"{csv_path}: not a CSV table ({str(err).strip().splitlines()[0]}); "
                          f"{remedy}") from None
    # None of the key columns: another file. (A table from an older version may lack a key
    # column added since; upsert_table fills it in.)
    if not set(key) & set(table.columns):
        raise ReportError(f"{csv_path}: not a table of this kind: none of the columns "
                          f"{','.join(key)}; {remedy}")
    if "decoder" in key and "decoder" not in table.columns:
        table["decoder"] = "pyav"  # every run decoded with PyAV before the decoder joined the key
    return table


def check_eval_table(results_dir: Path) -> None:
    """Fail before a run if its row could not be added to ``results_dir``/evaluations.csv.

    A table from before a key column was added is read: its rows keep that column empty, so a
    new run never replaces one of them (nothing says it measured the same thing) and both stay."""
    read_table(Path(results_dir) / "evaluations.csv", EVAL_KEY)


def tables_dir(cfg) -> Path:
    """Where a run's cross-run tables go: ``results_dir``, or for ``auto`` ``results/`` in the
    directory the command ran from, except on a generated data set (``data.synthetic``: the
    sample, the toy set), whose tables go to ``outputs/results/`` there: trying the harness
    changes no tracked file, and a row on generated videos never lands among real ones."""
    setting = str(cfg.get("results_dir") or "auto")
    if setting != "auto":
        return Path(setting)
    cwd = Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()
    generated = cfg.get("data") is not None and cfg.data.get("synthetic") is not None
    return cwd / GENERATED_RESULTS if generated else cwd / "results"


def zoo_published(conf_dir: Path = CONF_DIR) -> pd.DataFrame:
    """The published numbers of every model config that has them (``conf/model/*.yaml``)."""
    rows = []
    for path in sorted((conf_dir / "model").glob("*.yaml")):
        published = OmegaConf.load(path).get("published") or {}
        if published:
            rows.append({"model": path.stem, **OmegaConf.to_container(published)})
    return pd.DataFrame(rows, columns=["model", "dataset", "top1", "top5", "gflops", "params_m"])


# ---- one run ------------------------------------------------------------------------------------

def read_metrics(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{run_dir / 'metrics.json'}: cannot read: {err}") from None


def _read_run(run_dir: Path) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """metrics.json and the (probs, labels) of predictions.parquet."""
    metrics = read_metrics(run_dir)
    path = run_dir / "predictions.parquet"
    try:
        predictions = pd.read_parquet(path, columns=["label", "probs"])
    except (OSError, ValueError, KeyError) as err:
        raise ReportError(f"{path}: cannot read the run's predictions: {err}") from None
    labels = torch.tensor(predictions["label"].to_numpy(), dtype=torch.long)
    probs = torch.tensor([list(p) for p in predictions["probs"]], dtype=torch.float32)
    return metrics, probs.reshape(len(labels), -1 if len(labels) else 0), labels


def run_class_names(metrics: dict) -> list[str]:
    """Names from the class-name file the run used when it is still there (else none)."""
    source = Path(str(metrics.get("class_names", "")))
    if source.suffix == ".json" and source.is_file():
        try:
            return read_class_names(source)
        except ManifestError as err:
            log.warning("%s", err)
    return []


def _named_tables(probs: torch.Tensor, labels: torch.Tensor,
                  names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-class and confused-pair tables with class names, accuracies in percent."""
    if len(labels) == 0:
        return (pd.DataFrame(columns=["class_id", "class", "videos", "top1", "top5",
                                      "most_confused_with", "confused_videos"]),
                pd.DataFrame(columns=["true_id", "true", "predicted_id", "predicted", "videos",
                                      "share"]))
    per_class = per_class_accuracy(probs, labels)
    per_class.insert(1, "class", [names[i] for i in per_class.class_id])
    per_class["top1"], per_class["top5"] = _pcts(per_class.top1), _pcts(per_class.top5)
    per_class.insert(6, "most_confused_with",
                     [names[int(i)] if pd.notna(i) else "" for i in per_class.most_confused_id])
    per_class = per_class.drop(columns="most_confused_id")
    pairs = confused_pairs(probs, labels)
    pairs.insert(1, "true", [names[i] for i in pairs.true_id])
    pairs.insert(3, "predicted", [names[i] for i in pairs.predicted_id])
    pairs["share"] = _pcts(pairs.share)
    return per_class, pairs


def _pcts(series: pd.Series) -> pd.Series:
    return (100 * series.astype(float)).round(2)


def _summary(metrics: dict, row: dict, ci: dict, per_class: pd.DataFrame,
             pairs: pd.DataFrame) -> str:
    """report.md: the run's numbers beside the published ones, its worst classes and confusions."""
    def interval(name):
        low, high = ci[name]
        return "" if low is None else f"{100 * low:.2f} to {100 * high:.2f}"

    def show(x):
        return "" if x is None else str(x)

    numbers = pd.DataFrame([
        ["top-1 (%)", show(row["top1"]), interval("top1"), show(row["published_top1"]),
         show(row["top1_delta"])],
        ["top-5 (%)", show(row["top5"]), interval("top5"), show(row["published_top5"]),
         show(row["top5_delta"])],
        ["mean class accuracy (%)", show(row["mean_class_accuracy"]), "", "", ""],
        ["GFLOPs per view", show(row["gflops"]), "", show(row["published_gflops"]),
         show(row["gflops_delta"])],
        ["params (M)", show(row["params_m"]), "", show(row["published_params_m"]),
         show(row["params_delta"])],
        ["views/s (model only)", show(row["views_per_s"]), "", "", ""],
        ["videos/s (end to end)", show(row["videos_per_s"]), "", "", ""],
    ], columns=["", "measured", "95% bootstrap interval", "published (zoo)", "delta"])
    failed = metrics["videos_failed"]
    lines = [
        f"# {metrics['model']} on {metrics['dataset']}: {row['views']} views, protocol "
        f"{row['protocol']}, {metrics['device']} {metrics['precision']}",
        "",
        f"Weights: {metrics['weights']}. Videos: {metrics['videos_evaluated']} evaluated of "
        f"{metrics['videos_listed']} listed" + (f", {failed} failed (failures.csv)" if failed else "")
        + f". Finished {metrics['finished']}.",
        "",
        (f"Data: {row['found']} listed files found, fingerprint {row['data_fingerprint']} "
         "(sha256 of the found videos' ids and file sizes: runs on the same copy share it)."
         if row.get("found") else "Data: no fingerprint recorded."),
        *(["", f"{too_few({k: str(v) for k, v in row.items()})}: fewer of the listed videos are "
           "on disk than data.min_found_fraction; the accuracy is not comparable with a full "
           "copy's."] if row.get("found_below_threshold") else []),
        "",
        numbers.to_markdown(index=False),
        "",
        (f"No top-1/top-5 delta to the published numbers: {row['no_delta_because']}."
         if row.get("no_delta_because") else
         "top-1/top-5 delta: measured - published (the run compares with the published one)."),
        "",
        "Interval: percentile bootstrap over the videos (1000 resamples, seed 0). GFLOPs: fvcore "
        "conv + linear; most of the zoo's numbers also count norm layers (results/flops.md).",
        "",
        "## Worst classes (all in per_class.md)",
        "",
        per_class.head(15).to_markdown(index=False) if len(per_class) else "No videos evaluated.",
        "",
        "## Most confused pairs (true -> predicted top-1; all in confusions.md)",
        "",
        pairs.head(15).to_markdown(index=False) if len(pairs) else "No confusions.",
        "",
        "![top-1 against GFLOPs per view](accuracy_vs_gflops.png)",
        "",
        "![views per second](views_per_s.png)",
        "",
    ]
    return "\n".join(lines)


def report_run(run_dir: Path, published: dict, results_dir: Path | None = None,
               class_names: list[str] | None = None,
               min_coverage: float = MIN_COVERAGE) -> dict:
    """Write a finished run's report files from its run files; with ``results_dir``, also its
    row in evaluations.csv/.md and the plots over all rows there. Returns the row."""
    run_dir = Path(run_dir)
    metrics, probs, labels = _read_run(run_dir)
    num_classes = probs.shape[1] if len(labels) else 0
    names = list(class_names or run_class_names(metrics))
    names += [f"class {i}" for i in range(len(names), num_classes)]  # ids without a name
    ci = bootstrap_ci(probs, labels)
    row = eval_row(metrics, published, ci, min_coverage)
    per_class, pairs = _named_tables(probs, labels, names)
    write_table(run_dir / "per_class", per_class,
                "Top-1/top-5 accuracy per class in %, worst first; most_confused_with: the class "
                "its videos are most often predicted as (top-1).")
    write_table(run_dir / "confusions", pairs,
                "Most frequent mistakes: true class -> top-1 prediction; share: % of the true "
                "class's videos.")
    zoo = zoo_published()
    rows = pd.DataFrame([row])
    plot_accuracy_vs_gflops(rows, zoo, run_dir / "accuracy_vs_gflops.png")
    plot_views_per_s(rows, run_dir / "views_per_s.png")
    atomic_write(run_dir / "report.md",
                 lambda p: p.write_text(_summary(metrics, row, ci, per_class, pairs)))
    if results_dir is not None:
        stem = Path(results_dir) / "evaluations"
        with file_lock(stem):  # the plots too: the last writer draws the table with every row
            table = _upsert(stem, row, EVAL_KEY, EVAL_COLUMNS, EVAL_NOTE, EVAL_SHOWN)
            plot_accuracy_vs_gflops(table, zoo, Path(results_dir) / "accuracy_vs_gflops.png")
            plot_views_per_s(table, Path(results_dir) / "views_per_s.png")
    return row


# ---- plots --------------------------------------------------------------------------------------
# matplotlib's object API (Figure, no pyplot): PNGs render with the Agg canvas and no GUI backend
# or global state is touched.

def _numbers(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    table = table.copy()
    for column in columns:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def plot_accuracy_vs_gflops(rows: pd.DataFrame, zoo: pd.DataFrame, path: Path) -> None:
    """Top-1 against GFLOPs per view (log scale): the zoo's published points (hollow circles, one
    colour per model) and the measured runs (filled squares in their model's colour, with their
    95% interval), a dotted line joining a run to its model's published point."""
    rows = _numbers(rows, ["top1", "top1_ci95", "gflops", "top1_delta"]).dropna(subset=["top1", "gflops"])
    rows = rows[rows.gflops > 0]
    zoo = _numbers(zoo, ["top1", "gflops"]).dropna(subset=["top1", "gflops"])
    if "dataset" in zoo:  # the published points are Kinetics-400's (SSv2 models' are not)
        zoo = zoo[zoo.dataset.fillna("kinetics400") == "kinetics400"]
    colours = {m: f"C{i % 10}" for i, m in enumerate(zoo.model)}
    markers = {m: "ovD^"[i // 10 % 4] for i, m in enumerate(zoo.model)}
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    ax = fig.subplots()
    for z in zoo.itertuples():
        ax.scatter(z.gflops, z.top1, s=70, marker=markers[z.model], facecolors="none",
                   edgecolors=colours[z.model], linewidths=1.5, label=f"{z.model} (published)")
    for r in rows.itertuples():
        colour = colours.get(r.model, "black")
        ax.errorbar(r.gflops, r.top1, yerr=0 if pd.isna(r.top1_ci95) else r.top1_ci95, fmt="s",
                    color=colour, capsize=3, label=f"{r.model}: {r.dataset}, {r.views} views, "
                                                   f"{r.device} {r.precision}, {r.weights}")
        same = zoo[zoo.model == r.model]
        if len(same) and pd.notna(r.top1_delta):  # joined only where the run is comparable
            ax.plot([r.gflops, same.gflops.iloc[0]], [r.top1, same.top1.iloc[0]], ":",
                    color=colour, linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per view (fvcore; 1 multiply-add = 1 flop; log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Top-1 accuracy against cost per view\n"
                 "hollow: published (pytorchvideo zoo, Kinetics-400); filled squares: measured "
                 "runs, bars: 95% bootstrap interval", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.savefig(path, dpi=120)


def plot_views_per_s(rows: pd.DataFrame, path: Path) -> None:
    """Model-only throughput, one bar per model, device and precision, coloured by device."""
    rows = _numbers(rows, ["views_per_s"]).dropna(subset=["views_per_s"])
    rows = rows.sort_values("views_per_s")
    fig = Figure(figsize=(9, 1.5 + 0.45 * max(len(rows), 1)), layout="constrained")
    ax = fig.subplots()
    if rows.empty:
        ax.text(0.5, 0.5, "no throughput measured (cost.throughput_iters=0)", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        colours = {d: f"C{i}" for i, d in enumerate(sorted(rows.device.unique()))}
        labels = [f"{r.model} · {r.precision} · {r.views} · {r.dataset}" for r in rows.itertuples()]
        bars = ax.barh(labels, rows.views_per_s, color=[colours[d] for d in rows.device])
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in rows.views_per_s], padding=3, fontsize=8)
        if rows.views_per_s.max() / rows.views_per_s.min() > 100:
            ax.set_xscale("log")
        ax.legend(handles=[bars[list(rows.device).index(d)] for d in colours],
                  labels=[f"device: {d}" for d in colours], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_xlabel("views per second (model only, after a warm-up pass)")
        ax.grid(True, axis="x", alpha=0.3)
    ax.set_title("Model-only throughput per device and precision (model · precision · views · "
                 "data)", fontsize=10)
    fig.savefig(path, dpi=120)


# ---- FLOPs table (make flops) -------------------------------------------------------------------

def flops_row(name: str, spec, views: str, counts: dict, params_m: float,
              published: dict) -> dict:
    """One model's measured GFLOPs (each convention) and params beside the published numbers
    (the pytorchvideo zoo's, or torchvision's weights meta: ``published.source``). ``params``:
    the exact count, matched against ``published.num_params`` where the source gives it."""
    gflops, with_norm = round(counts["gflops"], 2), round(counts["gflops_with_norm"], 2)
    macs = counts.get("gmacs_flop_counter")
    macs = None if macs is None else round(macs, 2)
    # transformers' models: fvcore's count as SDPA hides the attention matmuls (``gflops`` is
    # under eager attention, the matmuls counted); None for the others.
    sdpa = counts.get("gflops_sdpa")
    sdpa = None if sdpa is None else round(sdpa, 2)
    params = round(params_m, 2)
    exact = counts.get("params")
    # A framework's own counter where its published figures come from it (mmaction2's
    # get_flops.py: mmengine's counter on extract_feat); None for the others.
    own = counts.get("gflops_framework")
    own = None if own is None else round(own, 2)
    pub_g, pub_p, pub_n = (published.get("gflops"), published.get("params_m"),
                           published.get("num_params"))
    digits = _digits(pub_g)
    matches = [label for value, label in ((gflops, "conv + linear"),
                                          (with_norm, "with norm layers"),
                                          (macs, "flop_counter MACs"),
                                          (own, "framework's counter"))
               if pub_g is not None and value is not None
               and round(value, digits) == round(pub_g, digits)]
    match = "" if pub_g is None else ("yes: " + ", ".join(matches) if matches else "no")
    if pub_n is not None and exact is not None:
        params_match = "yes (exact)" if exact == pub_n else "no"
    else:
        params_match = "" if pub_p is None else (
            "yes" if round(params, _digits(pub_p)) == round(pub_p, 2) else "no")
    frames = f"{spec.num_frames}x{spec.crop_size}x{spec.crop_size}"
    if spec.alpha:
        frames += f" (slow {spec.num_frames // spec.alpha})"
    return {
        "model": name, "input": frames, "views": views,
        "gflops": gflops, "gflops_with_norm": with_norm, "gmacs_flop_counter": macs,
        "gflops_sdpa": sdpa, "gflops_framework": own, "published_gflops": pub_g,
        "gflops_delta": _delta(gflops, pub_g), "gflops_with_norm_delta": _delta(with_norm, pub_g),
        "flops_match": match, "params_m": params, "published_params_m": pub_p,
        "params_delta": _delta(params, pub_p), "params": exact, "published_params": pub_n,
        "params_match": params_match,
        "published_top1": published.get("top1"), "published_top5": published.get("top5"),
        "source": published.get("source", "pytorchvideo model zoo" if published else ""),
    }


def _digits(published) -> int:
    """The decimals a published figure gives, at most 2: a metafile's 36.3 or 88 (88.0 in its
    YAML) is matched to its own digits, the zoo's 65.71 to two."""
    if published is None:
        return 2
    value = float(published)
    if value == int(value):
        return 0
    return min(2, len(repr(value).split(".")[1]))


def write_flops_table(rows: list[dict], stem: Path, extra: str = "") -> pd.DataFrame:
    """results/flops.csv and .md, with how the numbers were made (``extra``: appended)."""
    table = pd.DataFrame(rows, columns=FLOPS_COLUMNS)
    for column in ("params", "published_params"):  # exact counts: integers, blank where unknown
        table[column] = table[column].astype("Int64")
    note = (
        "GFLOPs per view at batch 1 on each model's test input (input: frames x crop x crop), "
        "counted with fvcore (1 multiply-add = 1 flop), and parameters in millions, beside the "
        "pytorchvideo model zoo's published numbers (delta = measured - published). "
        "conv + linear: conv and linear layers (+ attention matmuls); with norm: plus the norm "
        "layers "
        "as fvcore counts them in training mode (5 flops per element). The zoo's table mixes the "
        "two: slowfast_r50 8x8 and slow_r50 8x8 match conv + linear, every other entry matches "
        "the count with norm layers (fvcore's training-mode estimate), which is also why "
        "slowfast_r101's 127.20 is not its conv + linear 125.91. GFLOPs match says which "
        "one a row matches; the evaluations table's GFLOPs are conv + linear. "
        "`gmacs_flop_counter`: torch.utils.flop_counter's count halved (it counts 2 per "
        "multiply-add). torchvision's `_ops` (source: its weights' meta, with `num_params`, "
        "matched exactly in `params`) is in MACs on a 16-frame input: it equals "
        "`gmacs_flop_counter` where the test clip has 16 frames, and S3D's (128 frames) and "
        "Swin3D's (32) counts here are 8x and 2x `_ops` (the same count at 16 frames equals it: "
        "docs/models.md); counts are never adjusted. The transformers models (VideoMAE, "
        "TimeSformer, ViViT, X-CLIP; published figures in multiply-adds with the attention "
        "matmuls): conv + linear is counted under eager attention (the matmuls included), "
        "`GFLOPs SDPA` as fvcore counts the run's SDPA attention (the matmuls hidden); X-CLIP "
        "per view, its 400 class prompts' text encoded once per run, not counted; its params are "
        "the whole XCLIPModel. The mmaction2 models (mm_*; published: their metafiles, top-1 "
        "and top-5 in flops.csv): `GFLOPs framework's counter` is mmaction2's get_flops.py "
        "convention (mmengine's counter on extract_feat: the backbone, no head) at the test "
        "crop, the resolution the metafiles' figures were measured at (SlowFast R50 4x16's 36.3 "
        "and I3D's 43.5 at 256 px although the metafiles say 224x224), but for TSM-SSv2, whose "
        "32.88 is at 224 px (32.87 here) and whose test crop is 256; a 2D model's view is its "
        "segments (TSN 25, TSM 8 frames; TSM-SSv2 samples its 8 twice: 2 views per crop). "
        "flops.csv holds every column.\n\n"
        f"Rows: every model config given, measured by `make flops` (python -m benchmark.flops), "
        f"random weights, torch {torch.__version__}, "
        f"fvcore {fvcore.__version__}, "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}.{extra}"
    )
    write_table(stem, table, note, FLOPS_SHOWN)
    return table


# ---- rebuilding from run folders (python -m benchmark.report) ------------------------------------

def find_runs(folders: list[Path]) -> list[Path]:
    """Finished runs (folders holding metrics.json) given as themselves or under a sweep folder."""
    runs: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise ReportError(f"{folder}: no such folder")
        found = [folder] if (folder / "metrics.json").is_file() else sorted(
            p.parent for p in folder.rglob("metrics.json"))
        if not found:
            raise ReportError(f"{folder}: no finished run in it (no metrics.json)")
        runs += [r for r in found if r not in runs]
    return runs


def run_min_coverage(run_dir: Path) -> float:
    """The run's ``report.min_coverage`` (.hydra/config.yaml), else the default."""
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.is_file():
        return float(OmegaConf.select(OmegaConf.load(saved), "report.min_coverage",
                                      default=MIN_COVERAGE))
    return MIN_COVERAGE


def run_published(run_dir: Path, model: str) -> dict:
    """The published numbers the run was configured with (.hydra/config.yaml), else the zoo's."""
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.is_file():
        published = OmegaConf.load(saved).get("model", {}).get("published")
        return OmegaConf.to_container(published) if published else {}
    zoo = zoo_published().set_index("model")
    return zoo.loc[model].dropna().to_dict() if model in zoo.index else {}
