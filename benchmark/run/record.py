"""What a run records: its identity (what determines its predictions: a run resumes only work
with the same one, and the ranks of one run must share it), each video's prediction or failure,
and the metrics record (metrics.json and the run's table row).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import platform
from datetime import datetime, timezone
from pathlib import Path

import av
import torch
from omegaconf import DictConfig, OmegaConf

from benchmark import frameworks
from benchmark.data import decoders
from benchmark.data.manifest import Manifest, Video
from benchmark.frameworks import fuse
from benchmark.frameworks.views import InputSpec
from benchmark.results import cost
from benchmark.results.metrics import accuracy
from benchmark.run import distributed
from benchmark.run.device import autocast
from benchmark.run.models import Model
from benchmark.run.settings import SettingsError, decoder_name, fuse_rewrites
from benchmark.run.store import RunStore, fingerprint

log = logging.getLogger(__name__)


NON_FINITE = "non-finite probabilities"  # a failure reason's start: decoded, then overflowed


class StrictFailure(RuntimeError):
    """strict=true and a video could not be evaluated."""


class NothingEvaluated(RuntimeError):
    """No listed video could be evaluated: an error, never an empty result with status ok."""


def run_identity(cfg: DictConfig, model: Model, manifest: Manifest, device: torch.device,
                 batch_views: int, tf32: bool, rewrites: tuple[str, ...] | None = None) -> dict:
    """What determines a run's predictions: a run resumes only work with the same identity, and
    the ranks of one run must all have it. Anything here that changes changes the predictions
    (or may: batch size and layout move the float rounding), so one run never mixes them.
    ``rewrites``: the ``eval.fuse`` rewrites made (default: those it names)."""
    csv = Path(cfg.data.csv).resolve()
    return {
        "model": {"name": model.name, "builder": OmegaConf.to_container(cfg.model.builder),
                  "input": model.spec, "num_classes": model.num_classes,
                  "output": str(cfg.model.output)},
        "weights": {"label": model.weights, "sha256": model.checkpoint_sha256,
                    "url": cfg.model.checkpoint_url},
        "seed": int(cfg.seed),
        # A format that reads several files (a UCF101 split folder) hashes them all.
        "data": {"csv": str(csv), "subset_sha256": manifest.subset_sha256,
                 "csv_sha256": manifest.list_sha256 or hashlib.sha256(csv.read_bytes()).hexdigest(),
                 "root": str(Path(cfg.data.root or ".").resolve()), "limit": cfg.data.limit,
                 "class_names": hashlib.sha256("\n".join(manifest.class_names).encode()).hexdigest(),
                 "decode_timeout_s": cfg.data.decode_timeout_s},
        "views": OmegaConf.to_container(cfg.views),
        "protocol": OmegaConf.to_container(cfg.protocol),
        "device": device.type,
        "decoder": {"name": decoder_name(cfg), "version": decoders.version(decoder_name(cfg))},
        "precision": str(cfg.precision),
        "run": {"batch_views": batch_views, "channels_last": bool(cfg.eval.channels_last),
                "compile": bool(cfg.compile), "tf32": tf32,
                "fuse": fuse.label(fuse_rewrites(cfg, device) if rewrites is None else rewrites)},
        "versions": {k: v for k, v in versions().items() if k != "python"},
    }


def data_identity(cfg: DictConfig, identity: dict) -> dict:
    """What was evaluated, for metrics.json and the table key: a 100-video ``data.limit`` run,
    another CSV or the same CSV over another root is a row of its own, never the full list's."""
    data = identity["data"]
    return {"csv": data["csv"], "csv_sha256": data["csv_sha256"], "root": data["root"],
            "limit": data["limit"]}


def check_ranks_agree(identity: dict, ranks: distributed.Ranks) -> None:
    """Under torchrun every rank must evaluate the same run (weights, data, settings, code): any
    rank whose fingerprint differs from rank 0's stops every rank, saying what differs."""
    identities = distributed.all_gather(identity, ranks)
    prints = [fingerprint(i) for i in identities]
    differ = {rank: sorted(k for k in set(i) | set(identities[0])
                           if json_of(i.get(k)) != json_of(identities[0].get(k)))
              for rank, i in enumerate(identities) if prints[rank] != prints[0]}
    if differ:
        raise SettingsError("ranks disagree on the run's fingerprint: " + "; ".join(
            f"rank {r} differs from rank 0 in {', '.join(keys) or 'its fingerprint'}"
            for r, keys in differ.items()) + " (every rank must see the same weights, data, "
            "settings and code); stopping")


def json_of(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def record_prediction(store: RunStore, video: Video, probs: torch.Tensor, strict: bool,
                      note: str | None = None) -> bool:
    """Store ``video``'s probabilities; NaN or inf in them (an fp16 overflow) makes the video a
    failure with the reason, never a silent miss. Returns whether it was a prediction."""
    finite = torch.isfinite(probs)
    if bool(finite.all()):
        store.add_prediction(video.video_id, video.path, video.label, probs, note)
        return True
    reason = (f"{NON_FINITE}: {int(probs.isnan().sum())} NaN and "
              f"{int(probs.isinf().sum())} inf of {probs.numel()} (the model's output overflowed?)")
    log.warning("%s: %s", video.path or video.video_id, reason)
    store.add_failure(video.video_id, video.path, reason)
    if strict:
        store.flush()
        raise StrictFailure(f"{video.path or video.video_id}: {reason} (strict=true)")
    return False


def check_some_evaluated(store: RunStore, listed: int, order: list[str]) -> None:
    """A run in which no video could be evaluated is an error: its failures are written (for
    the reasons), no metrics.json and no table row; its progress.json says so, and no later run
    adopts its failures (they may be the setup's, not the videos')."""
    if store.predictions:
        return
    store.write_failures(order)
    store.mark_nothing_evaluated()
    reasons = sorted({str(r["reason"]) for r in store.failures})
    raise NothingEvaluated(
        f"no video could be evaluated: {len(store.failures)} of {listed} listed failed"
        + (f" (first reason: {reasons[0]}; all in {store.run_dir / 'failures.csv'})" if reasons else ""))


def copy_fields(manifest: Manifest) -> dict:
    """Which copy the run read, for metrics.json and its row (benchmark/data/subset.py): split,
    leakage count, subset list name and SHA-256, found fraction against its threshold."""
    fields = manifest.copy_fields()
    del fields["videos_found"]  # metrics.json's comes with the data fingerprint
    return {**fields, "min_found_fraction": manifest.min_found_fraction}


def decodable(store: RunStore) -> int:
    """Listed videos that decoded: the predicted ones and those whose model output was not
    finite (decoded, then failed); not-found, undecodable and timed-out videos are not."""
    return len(store.predictions) + sum(str(r["reason"]).startswith(NON_FINITE)
                                        for r in store.failures)


def measure_cost(module: torch.nn.Module, runner: torch.nn.Module, spec: InputSpec,
                 cfg: DictConfig, device: torch.device, batch_views: int) -> dict:
    """GFLOPs per view (zoo convention) and params of ``module``; model-only views/s of
    ``runner`` (the module as the run calls it: layout, compile) on the device."""
    result = {"gflops": None, "params_m": cost.params_m(module), "views_per_s": None}
    # The adapter's layout and attention convention (results/cost.py's adapter_flop_counts).
    adapter = frameworks.get(str(cfg.model.framework))
    if cfg.cost.flops:
        result["gflops"] = cost.adapter_flop_counts(adapter, module, spec, device)["gflops"]
    if cfg.cost.throughput_iters > 0:
        layout = torch.channels_last_3d if cfg.eval.channels_last else torch.contiguous_format
        example = [x.to(device).contiguous(memory_format=layout)
                   for x in cost.example_views(adapter, spec, batch_views)]
        with autocast(device, str(cfg.precision)):
            result["views_per_s"] = cost.model_views_per_s(
                runner, example, device, warmup=1, iters=int(cfg.cost.throughput_iters))
    return result


def versions() -> dict[str, str]:
    """The versions a run records: torch, every framework's (its adapter's ``version()``), PyAV,
    Python and the harness's own."""
    found = {"torch": torch.__version__}
    for name in frameworks.KNOWN:
        found.update(frameworks.get(name).version())
    return {**found, "av": av.__version__, "python": platform.python_version(),
            **harness_version()}


@functools.lru_cache(maxsize=1)
def harness_version() -> dict[str, str]:
    """The harness's own version and a hash of its package's .py sources (read once, ~0.1 MB):
    an edit to the code that makes predictions is a different run, installed or not."""
    try:
        version = importlib.metadata.version("benchmark")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"benchmark": version,
            "benchmark_source": source_digest(Path(__file__).resolve().parents[1])}


def source_digest(package: Path) -> str:
    """SHA-256 (16 hex) of a package's .py files, their names included."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def metrics_record(cfg: DictConfig, identity: dict, model: Model, manifest: Manifest,
                   store: RunStore, *, protocol: str, processes: int, found: int,
                   data_print: str, cost_fields: dict, evaluated_now: int,
                   seconds: float) -> dict:
    """metrics.json of a finished run (its table row's fields): what ran (the identity's
    settings), on which copy of the data, the accuracy over the stored predictions, its cost
    and speed, and the versions."""
    settings = identity["run"]
    probs, labels = store.probs_and_labels()
    return {
        "model": model.name, "weights": model.weights, "dataset": manifest.name,
        **data_identity(cfg, identity), "protocol": protocol,
        "device": identity["device"], "decoder": identity["decoder"]["name"],
        "decoder_version": identity["decoder"]["version"],
        "videos_with_decoder_notes": sum(isinstance(r.get("decoder_note"), str)
                                         for r in store.predictions),
        "precision": str(cfg.precision), "tf32": settings["tf32"],
        "batch_views": settings["batch_views"], "channels_last": settings["channels_last"],
        "compile": settings["compile"], "fuse": settings["fuse"],
        "clips": int(cfg.views.clips), "crops": int(cfg.views.crops), "fault": cfg.views.fault,
        "processes": processes,
        "videos_listed": len(manifest.videos), "videos_found": found,
        "videos_decodable": decodable(store), **copy_fields(manifest),
        "data_fingerprint": data_print, "videos_evaluated": len(store.predictions),
        "videos_failed": len(store.failures), "duplicates_in_csv": len(manifest.duplicates),
        **accuracy(probs, labels, model.num_classes),
        "class_names": manifest.class_names_source,
        **cost_fields,
        "videos_per_s": evaluated_now / seconds if evaluated_now and seconds > 0 else None,
        "seconds": seconds,
        "resumed_from": str(store.resumed_from) if store.resumed_from else None,
        "versions": versions(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
