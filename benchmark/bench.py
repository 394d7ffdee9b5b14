"""Entry point: ``python -m benchmark.bench [overrides]``: the reference pipeline against the harness.

In one process, on the same generated videos (``conf/data/bench.yaml``: 10 s, 30 fps, 340x256)
and the same weights (one module for both):

1. ``reference``: the model card's 10x3 pipeline as a pytorchvideo user writes it
   (``benchmark.reference``: ``EncodedVideo.get_clip`` per clip, the card's transforms,
   ``UniformCropVideo`` per crop), the model per view: batch 1, fp32, NCDHW, ``torch.no_grad``;
2. ``harness``: the harness's own path (a loader worker decodes once and cuts uint8 clips, the
   views are built on the device, ``predict_video``) with the settings in ``conf/bench.yaml``
   (the same keys as ``conf/eval.yaml``: precision, compile, eval.batch_views, ...).

Per video it records data seconds (decoding + building views), model seconds, total seconds,
views/s and RSS; for the model, the achieved GMAC/s (fvcore GFLOPs per view x views / model
seconds) against the device's matrix-product GMAC/s measured in the same run. Then the RSS check:
the harness over ``bench.rss_videos`` videos with a tiny model, RSS at the start and the end.
Writes ``bench.json`` into the run dir and updates ``results/bench-<device>.csv`` / ``.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import resource
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

# fvcore and pytorchvideo call torch.jit.script at import time; its deprecation notice is noise.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)

import hydra  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from benchmark import cost  # noqa: E402
from benchmark.decode import decode_threads  # noqa: E402
from benchmark.device import (  # noqa: E402
    PRECISIONS,
    clock,
    prepare_model,
    precision_problem,
    reuse_freed_memory,
)
from benchmark.evaluate import (  # noqa: E402
    SettingsError,
    VideoClipsDataset,
    check_settings,
    predict_video,
    resolve_device,
    versions,
)
from benchmark.manifest import ManifestError, Video, load_dataset  # noqa: E402
from benchmark.models import WeightsError, build_model  # noqa: E402
from benchmark.reference import reference_views  # noqa: E402
from benchmark.report import upsert_table  # noqa: E402
from benchmark.views import InputSpec  # noqa: E402

log = logging.getLogger("benchmark")

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

BENCH_KEY = ["model", "device", "pipeline", "precision", "batch_views", "channels_last", "compile"]
BENCH_COLUMNS = BENCH_KEY + [
    "videos", "views_per_video", "data_s", "model_s", "total_s", "views_per_s",
    "gmacs_per_s", "matmul_gmacs_per_s", "peak_fraction", "peak_rss_mb", "rss_first_mb",
    "rss_last_mb", "data_speedup", "model_speedup", "total_speedup", "others_cpu", "weights",
    "threads", "torch", "finished",
]
BENCH_NOTE = (
    "`make bench` (python -m benchmark.bench): seconds per video (means), 10 s 340x256 generated "
    "videos, 10x3 views. reference: the model card's pipeline (EncodedVideo.get_clip per clip, "
    "batch 1, fp32, NCDHW); harness: this package's path. data_s: decoding + building views; "
    "gmacs_per_s: fvcore GFLOPs per view x views / model_s; peak_fraction: that over a 2048^3 "
    "matrix product in the row's precision, measured in the same run (best of before, between "
    "and after the pipelines). peak_rss_mb: the "
    "largest per-video high-water mark of the main process; rss_first/last_mb: main process + "
    "loader workers after the first and the last video. *_speedup = reference / harness, same "
    "run. others_cpu: the share of the machine's CPU time other processes took while the "
    "pipeline ran (they slow it, unevenly: compare quiet runs)."
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
                  crops: int, spacing: str, device: torch.device
                  ) -> tuple[list[dict], list[torch.Tensor], float]:
    """Per-video timings and mean softmax of the model card's pipeline, and the seconds of its
    untimed warm-up: the first video's first clip through the whole pipeline (codec set-up,
    oneDNN's kernel choice), as ``run_harness`` warms up."""
    start = time.perf_counter()
    reference_video(module, videos[0].path, spec, 1, crops, spacing, device)
    warmup_s = time.perf_counter() - start
    rows, predictions = [], []
    for video in videos:
        reset_peak_rss()
        start = time.perf_counter()
        data, model_s, probs = reference_video(module, video.path, spec, clips, crops, spacing,
                                               device)
        rows.append(video_row(video, len(probs), data, model_s, time.perf_counter() - start))
        predictions.append(torch.stack(probs).mean(0))
    return rows, predictions, warmup_s


def reference_video(module: torch.nn.Module, path: Path, spec: InputSpec, clips: int, crops: int,
                    spacing: str, device: torch.device
                    ) -> tuple[float, float, list[torch.Tensor]]:
    """(data seconds, model seconds, each view's softmax) of one video through the reference."""
    data = model_s = 0.0
    probs = []
    views = reference_views(path, spec, clips, crops, spacing)
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


def run_harness(runner: torch.nn.Module, videos: list[Video], spec: InputSpec, cfg: DictConfig,
                device: torch.device) -> tuple[list[dict], list[torch.Tensor], float]:
    """Per-video timings and mean softmax of the harness's path: the loader and predict_video
    as ``evaluate`` runs them, and the seconds of the untimed warm-up (the first video's first
    clip through the same loader and predict_video: codec set-up, kernel choice, compiling,
    the allocator's first growth; after it the timings are those of a long run's steady state).
    A video's total is the wall time from asking the loader for it to its probabilities, so
    decoding that overlapped the previous video's model is not in it; its data seconds are
    the worker's decoding (slowed by whatever ran beside it) plus the view building."""
    clips, crops = int(cfg.views.clips), int(cfg.views.crops)
    loader = DataLoader(
        VideoClipsDataset(videos, [0, *range(len(videos))], spec, clips, str(cfg.views.spacing),
                          decode_threads(cfg.data.decode_threads, int(cfg.data.workers),
                                         device.type), cfg.data.decode_timeout_s),
        batch_size=None, num_workers=int(cfg.data.workers), pin_memory=device.type == "cuda")
    settings = (int(cfg.eval.batch_views), device, str(cfg.precision), bool(cfg.eval.channels_last))
    rows, predictions, warmup_s = [], [], None
    start = time.perf_counter()
    for item in loader:
        video = videos[item.index]
        if item.failure is not None:
            raise RuntimeError(f"{video.path}: {item.failure}")
        if warmup_s is None:
            predict_video(runner, item.clips[:1], spec, crops, *settings)
            warmup_s = time.perf_counter() - start
        else:
            timings: dict[str, float] = {}
            probs = predict_video(runner, item.clips, spec, crops, *settings, timings=timings)
            now = time.perf_counter()
            rows.append({**video_row(video, clips * crops, item.seconds + timings["views_s"],
                                     timings["model_s"], now - start),
                         "decode_s": item.seconds, "views_s": timings["views_s"]})
            predictions.append(probs)
        reset_peak_rss()
        start = time.perf_counter()
    return rows, predictions, warmup_s


def video_row(video: Video, views: int, data_s: float, model_s: float, total_s: float) -> dict:
    return {"video_id": video.video_id, "views": views, "data_s": data_s, "model_s": model_s,
            "total_s": total_s, "views_per_s": views / total_s, "peak_rss_mb": peak_rss_mb(),
            "rss_mb": tree_rss_mb()}


# ---- summary --------------------------------------------------------------------------------

def summarise(rows: list[dict], gflops: float, matmul: float | None) -> dict:
    """Means per video, and the model's GMAC/s over all of them against the matrix product."""
    frame = pd.DataFrame(rows)
    views, model_s = frame.views.sum(), frame.model_s.sum()
    gmacs = gflops * views / model_s
    return {
        "videos": len(frame), "views_per_video": float(frame.views.mean()),
        "data_s": float(frame.data_s.mean()), "model_s": float(frame.model_s.mean()),
        "total_s": float(frame.total_s.mean()), "views_per_s": float(views / frame.total_s.sum()),
        "gmacs_per_s": gmacs, "matmul_gmacs_per_s": matmul,
        "peak_fraction": gmacs / matmul if matmul else None,
        "peak_rss_mb": float(frame.peak_rss_mb.max()), "rss_first_mb": float(frame.rss_mb.iloc[0]),
        "rss_last_mb": float(frame.rss_mb.iloc[-1]),
    }


def agreement(reference: list[torch.Tensor], harness: list[torch.Tensor]) -> dict:
    """How far the harness's per-video probabilities are from the reference's."""
    ref, ours = torch.stack(reference).float(), torch.stack(harness).float()
    return {"max_abs_prob_diff": float((ref - ours).abs().max()),
            "top1_agree": float((ref.argmax(1) == ours.argmax(1)).float().mean())}


def table_row(name: str, summary: dict, settings: dict, speedups: dict, meta: dict) -> dict:
    def rounded(x, digits=3):
        return None if x is None else round(x, digits)

    return {
        "model": meta["model"], "device": meta["device"], "pipeline": name, **settings,
        **{k: rounded(v) if isinstance(v, float) else v for k, v in summary.items()},
        **{k: rounded(v, 2) for k, v in speedups.items()},
        "weights": meta["weights"], "threads": meta["threads"],
        "torch": torch.__version__, "finished": meta["finished"],
    }


# ---- the benchmark --------------------------------------------------------------------------

def harness_settings(cfg: DictConfig) -> dict:
    return {"precision": str(cfg.precision), "batch_views": int(cfg.eval.batch_views),
            "channels_last": bool(cfg.eval.channels_last), "compile": bool(cfg.compile)}


REFERENCE_SETTINGS = {"precision": "fp32", "batch_views": 1, "channels_last": False,
                      "compile": False}


def bench(cfg: DictConfig, run_dir: Path) -> dict:
    """Run the benchmark; write bench.json into ``run_dir`` and the rows into the tables."""
    check_settings(cfg)
    device = resolve_device(str(cfg.device.type))
    problem = precision_problem(str(cfg.precision), device)
    if problem:
        raise SettingsError(problem)
    if int(cfg.bench.videos) < 1:
        raise SettingsError(f"bench.videos: must be >= 1, got {cfg.bench.videos}")
    load_start = os.getloadavg()[0]
    manifest = load_dataset(cfg.data)  # generated on first use
    needed = max(int(cfg.bench.videos), int(cfg.bench.rss_videos))
    if len(manifest.videos) < needed:
        raise SettingsError(f"data: {len(manifest.videos)} videos, the benchmark needs {needed} "
                            "(bench.videos, bench.rss_videos; data.synthetic.videos_per_class)")
    videos = manifest.videos[: int(cfg.bench.videos)]
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg.model)
    module, spec = model.module.to(device), model.spec
    clips, crops, spacing = int(cfg.views.clips), int(cfg.views.crops), str(cfg.views.spacing)
    log.info("benchmark: %s (%s weights) on %s, %d video(s) of %s, %dx%d views; load %.2f",
             model.name, model.weights, device, len(videos), manifest.name, clips, crops, load_start)

    gflops = cost.gflops_per_view(module, [x.to(device) for x in spec.example(1)])
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
    ref_rows, ref_probs, ref_warmup_s = run_reference(module, videos, spec, clips, crops,
                                                      spacing, device)
    ref_others = others_share(cpu, time.perf_counter() - start)
    log.info("reference: %.1f s per video", pd.DataFrame(ref_rows).total_s.mean())
    matmul_samples.append(matmul_now())

    # 2. The harness with its settings.
    settings = harness_settings(cfg)
    if cfg.eval.reuse_memory:
        reuse_freed_memory()
    runner = prepare_model(module, device, settings["channels_last"], settings["compile"])
    cpu, start = cpu_seconds(), time.perf_counter()
    ours_rows, ours_probs, warmup_s = run_harness(runner, videos, spec, cfg, device)
    ours_others = others_share(cpu, time.perf_counter() - start)
    log.info("harness: %.1f s per video", pd.DataFrame(ours_rows).total_s.mean())
    matmul_samples.append(matmul_now())
    matmul = {p: max(sample[p] for sample in matmul_samples) for p in precisions}

    reference = {**summarise(ref_rows, gflops, matmul["fp32"]), "others_cpu": ref_others}
    harness = {**summarise(ours_rows, gflops, matmul[str(cfg.precision)]),
               "others_cpu": ours_others}
    speedups = {f"{k}_speedup": reference[f"{k}_s"] / harness[f"{k}_s"]
                for k in ("data", "model", "total")}
    rss = rss_check_in_fresh_process(cfg, manifest.videos[: int(cfg.bench.rss_videos)], device)
    if rss:
        log.info("RSS check (%s, %d videos): %.0f MB before, %.0f MB after the first video, "
                 "%.0f MB after the last", rss["model"], rss["videos"], rss["rss_before_mb"],
                 rss["rss_first_mb"], rss["rss_last_mb"])

    meta = {"model": model.name, "device": device.type, "weights": model.weights,
            "threads": torch.get_num_threads(), "load_start": load_start,
            "load_end": os.getloadavg()[0],
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    result = {
        **speedups,
        "model_peak_fraction": harness["peak_fraction"],
        "model_peak_fraction_vs_fp32_matmul": harness["gmacs_per_s"] / matmul["fp32"],
        "model": model.name, "weights": model.weights, "device": device.type,
        "device_name": device_name(device), "threads": meta["threads"],
        "gflops_per_view": gflops, "matmul_gmacs_per_s": matmul, "matmul_size": size,
        "matmul_samples": matmul_samples,
        "reference": {**REFERENCE_SETTINGS, "warmup_s": ref_warmup_s, **reference},
        "harness": {**settings, "workers": int(cfg.data.workers),
                    "decode_threads": decode_threads(cfg.data.decode_threads,
                                                     int(cfg.data.workers), device.type),
                    "reuse_memory": bool(cfg.eval.reuse_memory), "warmup_s": warmup_s, **harness},
        "agreement": agreement(ref_probs, ours_probs),
        "rss_check": rss,
        "load_average": {"start": load_start, "end": meta["load_end"]},
        "per_video": {"reference": ref_rows, "harness": ours_rows},
        "versions": versions(), "finished": meta["finished"],
    }
    (run_dir / "bench.json").write_text(json.dumps(result, indent=1))

    stem = Path(cfg.results_dir) / f"bench-{device.type}"
    upsert_table(stem, table_row("reference", reference, REFERENCE_SETTINGS, {}, meta),
                 BENCH_KEY, BENCH_COLUMNS, BENCH_NOTE)
    upsert_table(stem, table_row("harness", harness, settings, speedups, meta),
                 BENCH_KEY, BENCH_COLUMNS, BENCH_NOTE)
    if rss:
        upsert_table(stem, table_row("harness (RSS check)", rss["summary"], settings, {},
                                     {**meta, "model": rss["model"], "weights": rss["weights"]}),
                     BENCH_KEY, BENCH_COLUMNS, BENCH_NOTE)
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
    model_cfg = OmegaConf.load(CONF_DIR / "model" / f"{cfg.bench.rss_model}.yaml")
    torch.manual_seed(int(cfg.seed))
    model = build_model(model_cfg)
    runner = prepare_model(model.module, device, bool(cfg.eval.channels_last), bool(cfg.compile))
    gflops = cost.gflops_per_view(model.module, [x.to(device) for x in model.spec.example(1)])
    before = tree_rss_mb()
    rows, _, _ = run_harness(runner, videos, model.spec, cfg, device)
    summary = summarise(rows, gflops, None)
    return {"model": model.name, "weights": model.weights, "videos": len(rows),
            "rss_before_mb": before, "rss_first_mb": summary["rss_first_mb"],
            "rss_last_mb": summary["rss_last_mb"],
            "peak_rss_first_mb": rows[0]["peak_rss_mb"], "peak_rss_last_mb": rows[-1]["peak_rss_mb"],
            "summary": summary, "per_video": [{k: r[k] for k in ("rss_mb", "peak_rss_mb")}
                                              for r in rows]}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"cpu ({os.cpu_count()} cores)"


@hydra.main(version_base=None, config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        result = bench(cfg, run_dir)
    except (ManifestError, WeightsError, SettingsError, OSError) as err:
        log.error("%s", err)
        sys.exit(f"error: {err}")
    table = pd.DataFrame([{"pipeline": name, **{k: result[name][k] for k in (
        "precision", "batch_views", "channels_last", "data_s", "model_s", "total_s",
        "views_per_s", "gmacs_per_s", "peak_fraction", "peak_rss_mb", "others_cpu")}}
        for name in ("reference", "harness")])
    print(table.to_markdown(index=False, floatfmt=".3g"))
    print(", ".join(f"{k} {result[k]:.2f}" for k in (
        "data_speedup", "model_speedup", "total_speedup", "model_peak_fraction")))
    if result["rss_check"]:
        rss = result["rss_check"]
        print(f"RSS check ({rss['model']}, {rss['videos']} videos): {rss['rss_first_mb']:.0f} MB "
              f"after the first video, {rss['rss_last_mb']:.0f} MB after the last")
    table_path = Path(cfg.results_dir) / f"bench-{result['device']}.md"
    print(f"run files: {run_dir}\ntable: {table_path}")


if __name__ == "__main__":
    main()
