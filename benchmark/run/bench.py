"""``make bench`` (program: ``benchmark/bench.py``): the reference pipeline against the harness.

In one process, on the same generated videos (``conf/data/bench.yaml``: 10 s, 30 fps, 340x256)
and the same weights (one module for both):

1. ``reference``: pytorchvideo 0.1.5's own 10x3 pipeline as a pytorchvideo user writes it
   (its adapter's ``reference_views``: frameworks/pytorchvideo/reference.py's
   ``LabeledVideoDataset``, decoding each clip anew, the card's
   transforms, ``UniformCropVideo`` per crop), the model per view: batch 1, fp32, NCDHW,
   ``torch.no_grad``; the harness runs the same protocol (``protocol=pytorchvideo``). For a
   transformers model (``model=videomae_base_k400``, or each of ``bench.transformers`` after
   the main rows) the card's pipeline is its checkpoint's video processor per clip on the
   frames its authors' protocol picks (``frameworks/transformers.py``'s ``reference_views``),
   and the harness runs the model card's protocol (``protocol=<authors'>_processor``: those
   frames, the processor's pixels) and the authors' views;
2. ``harness``: the harness's own path (loader workers decode once and cut uint8 clips, the
   views are built on the device, ``predict``) with the settings in ``conf/bench.yaml`` (the
   same keys as ``conf/eval.yaml``: precision, compile, eval.batch_views, ...), over
   ``bench.harness_videos`` videos (cycling through the reference's).

Per video it records data seconds (decoding + building views), model seconds, total seconds,
views/s, the share of the time the model waited for data, and RSS; for the model, the achieved
GMAC/s (fvcore GFLOPs per view x views / model seconds) against the device's matrix-product
GMAC/s measured in the same run. Then the RSS check: the harness over ``bench.rss_videos`` videos
with a tiny model, RSS after the first and after the last.
Writes ``bench.json`` into the run dir and updates ``results/bench-<device>.csv`` / ``.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
import copy
import json
import logging
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import psutil
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark import frameworks
from benchmark.results import cost
from benchmark.frameworks import fuse, protocol_from_config
from benchmark.frameworks.api import Adapter
from benchmark.data.decode import decode_threads
from benchmark.run.device import (
    device_name,
    PRECISIONS,
    Stopwatch,
    clock,
    prepare_model,
    precision_problem,
    reuse_freed_memory,
)
from benchmark.run.batches import on_device, predict
from benchmark.run.clip_loader import video_loader
from benchmark.run.record import versions
from benchmark.run.settings import (
    SettingsError,
    batch_views_for,
    check_settings,
    fuse_rewrites,
    loader_workers,
    resolve_device,
    settle_channels_last,
)
from benchmark.data.load import load_dataset
from benchmark.data.manifest import Video
from benchmark.run.models import (CONF_DIR, build_model, compose_for_model,
                                  offline_class_names)
from benchmark.results.tables import cell, upsert_table
from benchmark.frameworks.views import InputSpec

log = logging.getLogger("benchmark")

BENCH_KEY = ["model", "device", "pipeline", "precision", "batch_views", "channels_last", "compile",
             "fuse", "workers"]
BENCH_COLUMNS = BENCH_KEY + [
    "videos", "views_per_video", "data_s", "model_s", "total_s", "views_per_s",
    "data_wait_fraction", "gmacs_per_s", "matmul_gmacs_per_s", "peak_fraction", "peak_rss_mb",
    "rss_first_mb", "rss_last_mb", "data_speedup", "model_speedup", "total_speedup",
    "others_cpu", "weights", "device_name", "torch", "finished",
]


def _how_it_ran(row: dict) -> str:
    return cell("{precision}", "batch {batch_views}",
                lambda r: {"True": "channels-last", "False": "NCDHW"}.get(r.get("channels_last"),
                                                                           ""),
                lambda r: "compiled" if r.get("compile") == "True" else "",
                lambda r: f"fuse {r['fuse']}" if r.get("fuse") and r["pipeline"] != "reference"
                else "", "workers {workers}")(row)


# The table for people (bench-<device>.md); the CSV keeps BENCH_COLUMNS.
BENCH_SHOWN = [
    ("pipeline", "pipeline"),
    ("model, weights", cell("{model}", "{weights}")),
    ("how it ran", _how_it_ran),
    ("videos x views", cell("{videos} x {views_per_video}")),
    ("data s", "data_s"),
    ("model s", "model_s"),
    ("total s", "total_s"),
    ("views/s", "views_per_s"),
    ("data wait", "data_wait_fraction"),
    ("GMAC/s (fraction of matmul's)", cell("{gmacs_per_s}", "({peak_fraction} of "
                                           "{matmul_gmacs_per_s})", sep=" ")),
    ("RSS MB: peak; first -> last", cell("{peak_rss_mb}", "{rss_first_mb} -> {rss_last_mb}",
                                         sep="; ")),
    ("speedup data / model / total", cell("{data_speedup} / {model_speedup} / {total_speedup}")),
    ("others' CPU", "others_cpu"),
    ("machine, torch, finished", cell("{device_name}", "torch {torch}", "{finished}")),
]
BENCH_NOTE = (
    "Rows: `make bench` (python -m benchmark.bench), one per pipeline and settings, the latest "
    "run of each; bench-<device>.csv holds every column. Seconds per video (means), 10 s 340x256 "
    "generated videos (the harness may cycle through them: `videos`). reference: the model card's "
    "pipeline, batch 1, fp32: pytorchvideo 0.1.5's (LabeledVideoDataset, a decode per clip, "
    "NCDHW) or, for a transformers model (bench.transformers), its checkpoint's video processor "
    "per clip on frames PyAV decodes anew per clip, the model per view; harness: this package's "
    "path (decoding in loader `workers` overlaps the model), each model under the protocol and "
    "views its published number used. NCDHW / channels-last: the layout of (B, C, T, H, W) "
    "views; a transformers model's are (B, T, C, H, W), contiguous, shown as NCDHW. data s: "
    "decoding + "
    "building views; model s: forward passes (CUDA events on a GPU); total s: wall time / "
    "videos; data wait: share of the wall time the model loop waited for the loader; GMAC/s: "
    "fvcore GFLOPs per view x views / model s, then its fraction of a matrix product's GMAC/s in "
    "the row's precision, measured in the same run (best of before, between and after the "
    "pipelines; bench.matmul_size). RSS: the main process's high-water mark; first -> last: main "
    "process + loader workers after the first and the last video. speedup = reference / "
    "harness, same run. others' CPU: the share of the machine's CPU time other processes took "
    "while the pipeline ran (they slow it, unevenly: compare quiet runs). fuse: the exact "
    "inference rewrites the harness made (eval.fuse, benchmark/frameworks/fuse.py; "
    "bn and relu fit pytorchvideo's blocks only: none in a transformers or mmaction2 model); "
    "with bench.compare_fuse it also runs without them (fuse none). reference (mmaction2): "
    "mmaction2 1.2.0's own test loop on an mm_* model (its Compose of the config's "
    "test_pipeline with decord, then model.test_step on the video's views as one batch, fp32; "
    "`make bench ARGS=\"model=mm_x3d_m precision=fp32 eval.fuse=none bench.rss_videos=0\"`)."
)


# ---- memory ---------------------------------------------------------------------------------

def reset_peak_rss() -> None:
    """Start a new RSS high-water mark for this process (Linux; elsewhere it spans the run)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """This process's RSS high-water mark since the last ``reset_peak_rss``: VmHWM on Linux
    (getrusage's maximum also keeps what the parent held before a spawned child's exec)."""
    with contextlib.suppress(OSError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB here


def tree_rss_mb() -> float:
    """Memory now of this process and its children (the loader workers): the sum of their
    proportional set sizes where the system has them (Linux), so that pages a forked worker
    shares with this process count once, else of their RSS."""
    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
    return total / 2**20


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far on the whole machine, and by this process and its children."""
    machine = psutil.cpu_times()
    busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
    me = psutil.Process()
    times = me.cpu_times()
    ours = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            ours += sum(child.cpu_times()[:2])
    return busy, ours


def others_share(start: tuple[float, float], wall_s: float) -> float:
    """The share of the machine's CPU capacity other processes used since ``start``."""
    busy, ours = cpu_seconds()
    return max(0.0, (busy - start[0]) - (ours - start[1])) / (wall_s * psutil.cpu_count())


# ---- the two pipelines ----------------------------------------------------------------------

def run_reference(module: torch.nn.Module, videos: list[Video], spec: InputSpec, clips: int,
                  crops: int, device: torch.device, views_of: Callable
                  ) -> tuple[list[dict], list[torch.Tensor], float]:
    """Per-video timings and mean softmax of the model card's pipeline (``views_of``:
    ``card_pipeline``'s), and the seconds of its untimed warm-up: the first video's first clip
    through the whole pipeline (codec set-up, oneDNN's kernel choice), as ``run_harness`` warms
    up."""
    start = time.perf_counter()
    reference_video(module, videos[0].path, spec, 1, crops, device, views_of)
    warmup_s = time.perf_counter() - start
    rows, predictions = [], []
    for video in videos:
        reset_peak_rss()
        start = time.perf_counter()
        data, model_s, probs = reference_video(module, video.path, spec, clips, crops, device,
                                               views_of)
        rows.append(video_row(video, len(probs), data, model_s, time.perf_counter() - start))
        predictions.append(torch.stack(probs).mean(0))
    return rows, predictions, warmup_s


def reference_video(module: torch.nn.Module, path: Path, spec: InputSpec, clips: int, crops: int,
                    device: torch.device, views_of: Callable
                    ) -> tuple[float, float, list[torch.Tensor]]:
    """(data seconds, model seconds, each view's softmax) of one video through the reference."""
    data = model_s = 0.0
    probs = []
    views = views_of(path, spec, clips, crops)
    with torch.no_grad():
        while True:
            tick = time.perf_counter()
            view = next(views, None)
            if view is not None:
                view = [x.to(device) for x in view]  # as the card does
            data += time.perf_counter() - tick
            if view is None:
                return data, model_s, probs
            tick = time.perf_counter()
            probs.append(module(view).softmax(dim=-1)[0].cpu())
            model_s += clock(device) - tick


def run_harness(runner: torch.nn.Module, videos: list[Video], count: int, spec: InputSpec,
                cfg: DictConfig, device: torch.device, gflops: float
                ) -> tuple[dict, list[torch.Tensor]]:
    """The harness's path over ``count`` videos (cycling through ``videos``): its summary and
    each video's mean softmax.

    The loader, ``on_device`` and ``predict`` as ``evaluate`` runs them. Untimed warm-up first:
    one full view batch of the first video through the same path (codec set-up, kernel choice,
    compiling, the allocator's first growth), so the timings are a long run's steady state.
    Decoding overlaps the model, so a video's total is the run's wall time over its videos;
    data seconds are the workers' decoding (slowed by whatever ran beside it) plus building the
    views; ``data_wait_fraction`` is the share of the wall time the model loop waited for the
    loader (on a GPU: time the device had nothing to do).
    """
    crops = int(cfg.views.crops)
    batch_views = batch_views_for(cfg.eval.batch_views, device.type)
    order = [i % len(videos) for i in range(count)]
    loader = video_loader(videos, [0, *order], spec, cfg, device,
                          frameworks.timing(str(cfg.protocol.clips)))
    items = iter(on_device(loader, device))
    settings = (spec, crops, batch_views, device, str(cfg.precision), bool(cfg.eval.channels_last))
    # uniform_crop, or a transformers protocol's; how its views combine
    spatial = {"spatial": frameworks.spatial(str(cfg.protocol.spatial)),
               "combine": str(cfg.protocol.combine)}

    first = next(items)
    if first.failure is not None:
        raise RuntimeError(f"{videos[0].path}: {first.failure}")
    start = time.perf_counter()
    need = -(-batch_views // crops)  # clips for one full batch
    warm = first.clips.repeat(-(-need // first.clips.shape[0]), 1, 1, 1, 1)[:need]
    for _ in predict(runner, [("warm-up", warm)], *settings, **spatial):
        pass
    warmup_s = clock(device) - start

    decode_s, waited, views = [], 0.0, 0
    rss: list[dict] = []  # memory after the first and the last video

    def loaded():
        nonlocal waited, views
        for position in range(count):
            tick = time.perf_counter()
            item = next(items)
            waited += time.perf_counter() - tick
            if item.failure is not None:
                raise RuntimeError(f"{videos[item.index].path}: {item.failure}")
            decode_s.append(item.seconds)
            views += item.clips.shape[0] * crops  # a 2D model's segments are one clip
            yield position, item.clips

    stopwatch = Stopwatch(device)
    predictions = []
    reset_peak_rss()
    start = time.perf_counter()
    for position, probs in predict(runner, loaded(), *settings, stopwatch=stopwatch, **spatial):
        predictions.append(probs)
        # Memory of the main process and the workers after the first and the last video
        # (reading every worker's memory map costs milliseconds: not after each one).
        if position in (0, count - 1):
            rss.append({"video": position + 1, "rss_mb": tree_rss_mb()})
    wall = time.perf_counter() - start
    seconds = stopwatch.totals()
    summary = summarise(count, views, sum(decode_s) + seconds["views"], seconds["model"], wall,
                        gflops)
    summary.update({
        "peak_rss_mb": peak_rss_mb(), "rss_first_mb": rss[0]["rss_mb"],
        "rss_last_mb": rss[-1]["rss_mb"], "data_wait_fraction": waited / wall,
        "decode_s": sum(decode_s) / count, "views_s": seconds["views"] / count,
        "warmup_s": warmup_s, "distinct_videos": len(set(order)),
        "rss_samples": rss,
    })
    return summary, predictions


def video_row(video: Video, views: int, data_s: float, model_s: float, total_s: float) -> dict:
    return {"video_id": video.video_id, "views": views, "data_s": data_s, "model_s": model_s,
            "total_s": total_s, "views_per_s": views / total_s, "peak_rss_mb": peak_rss_mb(),
            "rss_mb": tree_rss_mb()}


# ---- summary --------------------------------------------------------------------------------

def summarise(videos: int, views: int, data_s: float, model_s: float, wall_s: float,
              gflops: float) -> dict:
    """Seconds per video, views/s, and the model's GMAC/s (fvcore GFLOPs x views / seconds)."""
    return {
        "videos": videos, "views_per_video": views / videos, "data_s": data_s / videos,
        "model_s": model_s / videos, "total_s": wall_s / videos, "views_per_s": views / wall_s,
        "gmacs_per_s": gflops * views / model_s,
    }


def summarise_reference(rows: list[dict], gflops: float) -> dict:
    """The reference's per-video rows summed up (it runs one video after another)."""
    frame = pd.DataFrame(rows)
    return {**summarise(len(frame), int(frame.views.sum()), frame.data_s.sum(),
                        frame.model_s.sum(), frame.total_s.sum(), gflops),
            "peak_rss_mb": float(frame.peak_rss_mb.max()),
            "rss_first_mb": float(frame.rss_mb.iloc[0]),
            "rss_last_mb": float(frame.rss_mb.iloc[-1])}


def agreement(reference: list[torch.Tensor], harness: list[torch.Tensor]) -> dict:
    """How far the harness's per-video probabilities are from the reference's."""
    ref, ours = torch.stack(reference).float(), torch.stack(harness).float()
    k = min(5, ref.shape[1])
    same_top5 = [set(a.tolist()) == set(b.tolist())
                 for a, b in zip(ref.topk(k, dim=1).indices, ours.topk(k, dim=1).indices)]
    same_order = (ref.topk(k, dim=1).indices == ours.topk(k, dim=1).indices).all(dim=1)
    return {"max_abs_prob_diff": float((ref - ours).abs().max()),
            "top1_agree": float((ref.argmax(1) == ours.argmax(1)).float().mean()),
            "top5_agree": sum(same_top5) / len(same_top5),
            "top5_same": float(same_order.float().mean())}  # the same top-5, in order


def table_row(name: str, summary: dict, settings: dict, speedups: dict, meta: dict) -> dict:
    def rounded(x, digits=3):
        return None if x is None else round(x, digits)

    return {
        "model": meta["model"], "device": meta["device"], "pipeline": name, **settings,
        **{k: rounded(v) if isinstance(v, float) else v for k, v in summary.items()},
        **{k: rounded(v, 2) for k, v in speedups.items()},
        "weights": meta["weights"], "device_name": meta["device_name"],
        "torch": torch.__version__, "finished": meta["finished"],
    }


# ---- the benchmark --------------------------------------------------------------------------

def harness_settings(cfg: DictConfig, device: torch.device) -> dict:
    workers = loader_workers(cfg.data.workers, device.type)
    return {"precision": str(cfg.precision),
            "batch_views": batch_views_for(cfg.eval.batch_views, device.type),
            "channels_last": bool(cfg.eval.channels_last), "compile": bool(cfg.compile),
            "fuse": fuse.label(fuse_rewrites(cfg, device)),
            "workers": workers,
            "decode_threads": decode_threads(cfg.data.decode_threads, workers, device.type)}


REFERENCE_SETTINGS = {"precision": "fp32", "batch_views": 1, "channels_last": False,
                      "compile": False, "fuse": "none", "workers": 0, "decode_threads": 0}


def bench(cfg: DictConfig, run_dir: Path) -> dict:
    """Run the benchmark; write bench.json into ``run_dir`` and the rows into the tables."""
    check_settings(cfg)
    views_of = card_pipeline(cfg)
    device = resolve_device(str(cfg.device.type))
    problem = precision_problem(str(cfg.precision), device)
    if problem:
        raise SettingsError(problem)
    rewrites = fuse_rewrites(cfg, device)
    if int(cfg.bench.videos) < 1:
        raise SettingsError(f"bench.videos: must be >= 1, got {cfg.bench.videos}")
    load_start = os.getloadavg()[0]
    manifest = load_dataset(cfg.data, offline_names=offline_class_names)  # generated on first use
    needed = max(int(cfg.bench.videos), int(cfg.bench.rss_videos))
    if len(manifest.videos) < needed:
        raise SettingsError(f"data: {len(manifest.videos)} videos, the benchmark needs {needed} "
                            "(bench.videos, bench.rss_videos; data.synthetic.videos_per_class)")
    videos = manifest.videos[: int(cfg.bench.videos)]
    torch.manual_seed(int(cfg.seed))
    adapter = frameworks.get(str(cfg.model.framework))
    if views_of is None:  # the framework's own test loop is the reference (mmaction2)
        return bench_own_loop(cfg, run_dir, adapter, device, videos, load_start)
    own = adapter.OWN_PROTOCOLS_ONLY  # its protocols' head; X-CLIP's names
    model = build_model(cfg.model, str(cfg.protocol.head) if own else "pooled_logits",
                        class_names=manifest.class_names if own else None)
    module, spec = model.module.to(device), model.spec
    clips, crops = int(cfg.views.clips), int(cfg.views.crops)
    log.info("benchmark: %s (%s weights) on %s, %d video(s) of %s, %dx%d views; load %.2f",
             model.name, model.weights, device, len(videos), manifest.name, clips, crops, load_start)

    gflops = cost.adapter_flop_counts(adapter, module, spec, device)["gflops"]
    precisions = sorted({"fp32", str(cfg.precision)})
    size = int(cfg.bench.matmul_size)

    def matmul_now() -> dict[str, float]:
        return {p: cost.matmul_gmacs_per_s(device, PRECISIONS[p] or torch.float32, size)
                for p in precisions}

    # The peak is measured before, between and after the pipelines and the best taken: other
    # work on the machine only ever lowers it.
    matmul_samples = [matmul_now()]
    log.info("%.2f GFLOPs (GMACs) per view; matrix product %s GMAC/s", gflops,
             ", ".join(f"{k} {v:.1f}" for k, v in matmul_samples[0].items()))

    # 1. The reference, with the process as a pytorchvideo user has it (default allocator).
    cpu, start = cpu_seconds(), time.perf_counter()
    ref_rows, ref_probs, ref_warmup_s = run_reference(module, videos, spec, clips, crops, device,
                                                      views_of)
    reference = {**summarise_reference(ref_rows, gflops),
                 "others_cpu": others_share(cpu, time.perf_counter() - start)}
    log.info("reference: %.2f s per video", reference["total_s"])
    matmul_samples.append(matmul_now())

    # 2. The harness with its settings, over bench.harness_videos (cycling through the
    # reference's videos; default: the same ones); with bench.compare_fuse and eval.fuse
    # naming rewrites, first the same without them (eval.fuse=none).
    settings = harness_settings(cfg, device)
    if cfg.eval.reuse_memory:
        reuse_freed_memory()
    count = int(cfg.bench.harness_videos or len(videos))
    rewrites = (fuse.applied(fuse.fused(module, rewrites, adapter.rewrites())) if rewrites
                else ())  # those that fit
    variants = [("harness", rewrites)]
    if cfg.bench.compare_fuse and rewrites:
        variants.insert(0, ("harness_unfused", ()))
    sides: dict[str, tuple[dict, dict, list[torch.Tensor]]] = {}
    for name, chosen in variants:
        runner = prepare_model(module, device, settings["channels_last"], settings["compile"],
                               chosen, adapter)
        cpu, start = cpu_seconds(), time.perf_counter()
        summary, probs = run_harness(runner, videos, count, spec, cfg, device, gflops)
        del runner
        summary["others_cpu"] = others_share(cpu, time.perf_counter() - start)
        log.info("%s (fuse %s): %.3f s per video, %.1f views/s, waited for data %.1f%% of the "
                 "time", name, fuse.label(chosen), summary["total_s"], summary["views_per_s"],
                 100 * summary["data_wait_fraction"])
        sides[name] = ({**settings, "fuse": fuse.label(chosen)}, summary, probs)
        matmul_samples.append(matmul_now())
    settings, harness, ours_probs = sides["harness"]
    matmul = {p: max(sample[p] for sample in matmul_samples) for p in precisions}
    for side, precision in ((reference, "fp32"), *((s[1], str(cfg.precision))
                                                  for s in sides.values())):
        side["matmul_gmacs_per_s"] = matmul[precision]
        side["peak_fraction"] = side["gmacs_per_s"] / matmul[precision]

    def speedups_of(side: dict) -> dict:
        return {f"{k}_speedup": reference[f"{k}_s"] / side[f"{k}_s"]
                for k in ("data", "model", "total")}

    speedups = speedups_of(harness)
    rss = rss_check_in_fresh_process(cfg, manifest.videos[: int(cfg.bench.rss_videos)], device)
    if rss:
        log.info("RSS check (%s, %d videos): %.0f MB before, %.0f MB after the first video, "
                 "%.0f MB after the last", rss["model"], rss["videos"], rss["rss_before_mb"],
                 rss["summary"]["rss_first_mb"], rss["summary"]["rss_last_mb"])

    meta = {"model": model.name, "device": device.type, "weights": model.weights,
            "device_name": device_name(device), "threads": torch.get_num_threads(),
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    result = {
        **speedups,
        "model_peak_fraction": harness["peak_fraction"],
        "model_peak_fraction_vs_fp32_matmul": harness["gmacs_per_s"] / matmul["fp32"],
        "model": model.name, "weights": model.weights, "device": device.type,
        "device_name": meta["device_name"], "threads": meta["threads"],
        "gflops_per_view": gflops, "matmul_gmacs_per_s": matmul, "matmul_size": size,
        "matmul_samples": matmul_samples,
        "reference": {**REFERENCE_SETTINGS, "warmup_s": ref_warmup_s, **reference},
        "harness": {**settings, "reuse_memory": bool(cfg.eval.reuse_memory), **harness},
        # The harness's first videos are the reference's videos.
        "agreement": agreement(ref_probs, ours_probs[: len(ref_probs)]),
        **({"harness_unfused": {**sides["harness_unfused"][0], **sides["harness_unfused"][1]},
            # What eval.fuse's rewrites buy: model and total seconds without over with them,
            # and how far they move the probabilities (the same views, the same weights).
            "fuse_model_speedup": sides["harness_unfused"][1]["model_s"] / harness["model_s"],
            "fuse_total_speedup": sides["harness_unfused"][1]["total_s"] / harness["total_s"],
            "fuse_agreement": agreement(sides["harness_unfused"][2], ours_probs)}
           if "harness_unfused" in sides else {}),
        "rss_check": rss,
        "load_average": {"start": load_start, "end": meta["load_end"]},
        "reference_per_video": ref_rows,
        "versions": versions(), "finished": meta["finished"],
    }
    (run_dir / "bench.json").write_text(json.dumps(result, indent=1))

    stem = Path(cfg.results_dir) / f"bench-{device.type}"
    upsert_table(stem, table_row("reference", reference, REFERENCE_SETTINGS, {}, meta),
                 BENCH_KEY, BENCH_COLUMNS, BENCH_NOTE, BENCH_SHOWN)
    for name, (side_settings, side, _) in sides.items():
        upsert_table(stem, table_row("harness", side, side_settings, speedups_of(side), meta),
                     BENCH_KEY, BENCH_COLUMNS, BENCH_NOTE, BENCH_SHOWN)
    if rss:
        upsert_table(stem, table_row("harness (RSS check)", rss["summary"], settings, {},
                                     {**meta, "model": rss["model"], "weights": rss["weights"]}),
                     BENCH_KEY, BENCH_COLUMNS, BENCH_NOTE, BENCH_SHOWN)
    if cfg.bench.transformers:  # after the rows above are written: none is lost
        result["transformers"] = transformers_rows(cfg, run_dir)
        (run_dir / "bench.json").write_text(json.dumps(result, indent=1))
    return result


# ---- the transformers rows ------------------------------------------------------------------

def card_pipeline(cfg: DictConfig):
    """The model card's pipeline for the bench's model, as ``views_of(path, spec, clips,
    crops)``: the protocol's adapter's ``reference_views`` (pytorchvideo 0.1.5's own under
    ``protocol=pytorchvideo``; for a transformers model its checkpoint's video processor per
    clip on the frames its authors' protocol picks, which needs the model card's protocol,
    ``<authors'>_processor``); None for a model whose framework's own
    test loop is the reference (``OWN_TEST_LOOP``: mmaction2). Also turns
    ``eval.channels_last`` off for a framework without that layout, as ``evaluate`` does."""
    settle_channels_last(cfg)
    if frameworks.get(str(cfg.model.framework)).OWN_TEST_LOOP:
        return None  # its own test loop: bench_own_loop
    protocol = protocol_from_config(cfg.protocol)
    adapter = frameworks.get(protocol.framework)
    problem = adapter.reference_problem(protocol)
    if problem:
        raise SettingsError(problem)
    return partial(adapter.reference_views, model_cfg=cfg.model, protocol=protocol)


def model_config(name: str, overrides: list[str]) -> DictConfig:
    """The eval config with ``model=<name>`` (its protocol and views come with it), random
    weights unless ``overrides`` (Hydra overrides, ``bench.transformers_overrides``) name
    others, composed inside this Hydra app."""
    from hydra import compose
    from hydra.errors import HydraException

    if not (CONF_DIR / "model" / f"{name}.yaml").is_file():
        raise SettingsError(f"bench.transformers: no conf/model/{name}.yaml")
    weights = [] if any(o.startswith("model.weights=") for o in overrides) else [
        "model.weights=random"]
    try:
        return compose("eval", overrides=[f"model={name}", *weights, *overrides])
    except HydraException as err:
        raise SettingsError(f"bench.transformers_overrides: {err}") from None


def transformers_rows(cfg: DictConfig, run_dir: Path) -> dict:
    """``bench.transformers``: each named transformers model (random init, seeded) under the
    model card's protocol (``<authors' protocol>_processor``: the authors' frames and views, the
    checkpoint's processor's pixels) with its authors' views, its card pipeline against the
    harness on the same videos with the same harness settings: a bench of its own
    (``bench.json`` in ``run_dir/<name>``, rows in the same table; no RSS check, no fuse
    comparison: the rewrites are pytorchvideo's)."""
    out = {}
    for name in cfg.bench.transformers:
        overrides = [str(o) for o in cfg.bench.transformers_overrides]
        authors = str(model_config(str(name), overrides).protocol.name)
        composed_cfg = model_config(str(name), [f"protocol={authors}_processor", *overrides])
        sub = copy.deepcopy(cfg)
        with open_dict(sub):
            for key in ("model", "protocol", "views"):
                sub[key] = composed_cfg[key]
            sub.bench.transformers = []
            sub.bench.rss_videos = 0
            sub.bench.compare_fuse = False
        if str(sub.model.framework) != "transformers":
            raise SettingsError(f"bench.transformers: {name} is a {sub.model.framework} model")
        (run_dir / str(name)).mkdir(parents=True, exist_ok=True)
        result = bench(sub, run_dir / str(name))
        out[str(name)] = {k: result[k] for k in (
            "model", "weights", "data_speedup", "model_speedup", "total_speedup", "agreement")}
        out[str(name)].update({side: {k: result[side][k] for k in (
            "precision", "batch_views", "views_per_video", "data_s", "model_s", "total_s",
            "views_per_s")} for side in ("reference", "harness")})
        log.info("%s: card pipeline %.2f views/s, harness %.2f views/s (total %.2fx); top-5 the "
                 "same for %.0f%% of the videos", name, result["reference"]["views_per_s"],
                 result["harness"]["views_per_s"], result["total_speedup"],
                 100 * result["agreement"]["top5_agree"])
    return out


def bench_own_loop(cfg: DictConfig, run_dir: Path, adapter: Adapter, device: torch.device,
                   videos: list[Video], load_start: float) -> dict:
    """The harness against a framework's own test loop (its adapter's ``reference_video``:
    mmaction2's Compose of the config's test_pipeline + ``model.test_step``), on the same
    videos and weights: seconds, the speed ratio, and whether each video's top-5 is the same.
    The views must be the config's own (the loop knows no other crops)."""
    model = build_model(cfg.model, str(cfg.protocol.head))
    module, spec = model.module.to(device), model.spec
    clips, crops = int(cfg.views.clips), int(cfg.views.crops)
    segment_views = adapter.segment_views(spec)  # a 2D model's: its clips are its segments
    views = crops * (clips if segment_views is None else segment_views)
    gflops = cost.adapter_flop_counts(adapter, module, spec, device)["gflops"]
    log.info("benchmark: %s (%s weights) against its framework's own test loop on %s, %d "
             "video(s), %dx%d views; load %.2f", model.name, model.weights, device, len(videos),
             clips, crops, load_start)
    # Untimed warm-up: one clip, or a 2D model's segments (all of them make its one view).
    adapter.reference_video(module, cfg.model, videos[0].path,
                            1 if segment_views is None else clips)
    rows, ref_probs = [], []
    cpu, start = cpu_seconds(), time.perf_counter()
    for video in videos:
        reset_peak_rss()
        tick = time.perf_counter()
        data_s, model_s, probs = adapter.reference_video(module, cfg.model, video.path, clips)
        rows.append(video_row(video, views, data_s, model_s, time.perf_counter() - tick))
        ref_probs.append(probs)
    reference = {**summarise_reference(rows, gflops),
                 "others_cpu": others_share(cpu, time.perf_counter() - start)}
    settings = harness_settings(cfg, device)
    runner = prepare_model(module, device, settings["channels_last"], settings["compile"],
                           fuse_rewrites(cfg, device), adapter)
    settings["fuse"] = fuse.label(fuse.applied(runner))
    cpu, start = cpu_seconds(), time.perf_counter()
    harness, probs = run_harness(runner, videos, len(videos), spec, cfg, device, gflops)
    harness["others_cpu"] = others_share(cpu, time.perf_counter() - start)
    matmul = cost.matmul_gmacs_per_s(device, torch.float32, int(cfg.bench.matmul_size))
    for side in (reference, harness):
        side["matmul_gmacs_per_s"], side["peak_fraction"] = matmul, side["gmacs_per_s"] / matmul
    speedups = {f"{k}_speedup": reference[f"{k}_s"] / harness[f"{k}_s"]
                for k in ("data", "model", "total")}
    meta = {"model": model.name, "device": device.type, "weights": model.weights,
            "device_name": device_name(device), "load_end": os.getloadavg()[0],
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    ref_settings = {**REFERENCE_SETTINGS, "batch_views": views}
    result = {**speedups, "model_peak_fraction": harness["peak_fraction"], "model": model.name,
              "weights": model.weights, "device": device.type, "gflops_per_view": gflops,
              "reference": {"pipeline": "reference (own loop)", **ref_settings, **reference},
              "harness": {**settings, **harness},
              "agreement": agreement(ref_probs, probs),
              "rss_check": None, "load_average": {"start": load_start, "end": meta["load_end"]},
              "versions": versions(), "finished": meta["finished"]}
    (run_dir / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    stem = Path(cfg.results_dir) / f"bench-{device.type}"
    upsert_table(stem, table_row(f"reference ({cfg.protocol.framework})", reference,
                                 ref_settings, {}, meta), BENCH_KEY, BENCH_COLUMNS, BENCH_NOTE,
                 BENCH_SHOWN)
    upsert_table(stem, table_row("harness", harness, settings, speedups, meta), BENCH_KEY,
                 BENCH_COLUMNS, BENCH_NOTE, BENCH_SHOWN)
    log.info("the same top-5 in order on %.0f%% of %d videos; probabilities within %.1e",
             100 * result["agreement"]["top5_same"], len(videos),
             result["agreement"]["max_abs_prob_diff"])
    return result


def rss_check_in_fresh_process(cfg: DictConfig, videos: list[Video],
                                device: torch.device) -> dict | None:
    """``rss_check`` in a new (spawned) process, so that the memory the timed runs left to this
    one (freed memory is kept for reuse) neither hides nor fakes growth."""
    if not videos:
        return None
    settings = OmegaConf.to_container(cfg, resolve=True)  # no Hydra context over there
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(rss_check, settings, videos, device).result()


def rss_check(settings: dict, videos: list[Video], device: torch.device) -> dict:
    """The harness over ``videos`` with the tiny model: does the memory grow with the videos?"""
    cfg = OmegaConf.create(settings)
    if cfg.eval.reuse_memory:
        reuse_freed_memory()
    torch.manual_seed(int(cfg.seed))
    model = build_model(compose_for_model(str(cfg.bench.rss_model)).model)
    runner = prepare_model(model.module, device, bool(cfg.eval.channels_last), bool(cfg.compile),
                           fuse.resolve(cfg.eval.fuse, device.type),
                           frameworks.get(str(cfg.model.framework)))
    gflops = cost.gflops_per_view(model.module, [x.to(device) for x in model.spec.example(1)])
    before = tree_rss_mb()
    summary, _ = run_harness(runner, videos, len(videos), model.spec, cfg, device, gflops)
    return {"model": model.name, "weights": model.weights, "videos": len(videos),
            "rss_before_mb": before, "summary": summary}
