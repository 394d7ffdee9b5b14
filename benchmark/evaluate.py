"""The evaluation loop: manifest -> decode -> views -> model -> per-video mean softmax -> metrics.

Loader workers decode each video once and cut its clips (uint8); the main process moves them to
the device, builds the views there and runs the model in batches of ``eval.batch_views`` views.
A video that cannot be read is recorded in failures.csv with its reason and the run goes on.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import av
import pytorchvideo
import torch
import torchvision
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from benchmark import cost
from benchmark.decode import DecodeError, decode_video
from benchmark.manifest import Video, load_dataset
from benchmark.metrics import accuracy
from benchmark.models import build_model
from benchmark.report import EVAL_COLUMNS, EVAL_KEY, eval_row, upsert_table
from benchmark.store import RunStore
from benchmark.views import CLIP_SPACINGS, CROP_INDICES, InputSpec, make_views, sample_clips

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class SettingsError(ValueError):
    """An impossible setting; the message names the config key."""


@dataclass
class LoadedVideo:
    index: int  # position in the manifest
    clips: torch.Tensor | None  # uint8 (clips, C, T, H, W)
    failure: str | None = None


class VideoClipsDataset(Dataset):
    """Decodes one video per item and cuts its clips; failures come back as values."""

    def __init__(self, videos: list[Video], spec: InputSpec, clips: int, spacing: str,
                 decode_threads: int):
        self.videos, self.spec, self.clips = videos, spec, clips
        self.spacing, self.decode_threads = spacing, decode_threads

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> LoadedVideo:
        video = self.videos[index]
        if video.path is None:
            return LoadedVideo(index, None, f"file not found: looked for {video.expected}")
        try:
            decoded = decode_video(video.path, self.decode_threads)
            return LoadedVideo(index, sample_clips(decoded, self.spec, self.clips, self.spacing))
        except (DecodeError, ValueError) as err:
            return LoadedVideo(index, None, str(err))


def check_settings(cfg: DictConfig) -> None:
    """Reject impossible settings before any work, naming the key."""
    spec = cfg.model.input
    checks = [
        (cfg.views.clips >= 1, "views.clips", f"must be >= 1, got {cfg.views.clips}"),
        (cfg.views.crops in CROP_INDICES, "views.crops",
         f"must be 1, 2 or 3 (UniformCropVideo's aug_index), got {cfg.views.crops}"),
        (cfg.views.spacing in CLIP_SPACINGS, "views.spacing",
         f"must be one of {', '.join(CLIP_SPACINGS)}, got {cfg.views.spacing}"),
        (spec.crop_size <= spec.side_size, "model.input.crop_size",
         f"{spec.crop_size} is larger than the scaled short side {spec.side_size}"),
        (cfg.data.limit is None or cfg.data.limit >= 0, "data.limit",
         f"must be >= 0 or null, got {cfg.data.limit}"),
        (cfg.eval.batch_views >= 1, "eval.batch_views", f"must be >= 1, got {cfg.eval.batch_views}"),
        (cfg.precision in PRECISIONS, "precision",
         f"must be one of {', '.join(PRECISIONS)}, got {cfg.precision}"),
    ]
    for ok, key, message in checks:
        if not ok:
            raise SettingsError(f"{key}: {message}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"device={name}: CUDA is not available on this machine "
                            "(torch.cuda.is_available() is False); use device=cpu or device=auto")
    return torch.device(name)


def predict_video(model: torch.nn.Module, clips: torch.Tensor, spec: InputSpec, crops: int,
                  batch_views: int, device: torch.device, precision: str) -> torch.Tensor:
    """Mean softmax over the video's clips x crops views."""
    clips = clips.to(device, non_blocking=True)
    dtype = PRECISIONS[precision]
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    total = None
    with torch.inference_mode():
        for chunk in clips.split(max(1, batch_views // crops)):
            views = make_views(chunk, spec, crops)  # fp32, as the reference builds them
            with autocast:
                logits = model(views)  # a fresh list every call: the model mutates it
            probs = logits.float().softmax(dim=-1).sum(dim=0)
            total = probs if total is None else total + probs
    return (total / (clips.shape[0] * crops)).cpu()


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "pytorchvideo": pytorchvideo.__version__, "av": av.__version__,
            "python": platform.python_version()}


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    """Run one evaluation; write the run's files into ``run_dir`` and its row into the tables."""
    check_settings(cfg)
    device = resolve_device(str(cfg.device.type))
    manifest = load_dataset(cfg.data)
    model = build_model(cfg.model)
    module = model.module.to(device)
    spec, clips, crops = model.spec, int(cfg.views.clips), int(cfg.views.crops)
    if max(v.label for v in manifest.videos or [Video("", None, 0, "")]) >= model.num_classes:
        raise SettingsError(f"data: labels go beyond the model's {model.num_classes} classes "
                            f"(model.num_classes); class names came from {manifest.class_names_source}")
    log.info("dataset %s: %d videos (%s); model %s, weights %s; %dx%d views on %s, %s",
             manifest.name, len(manifest.videos), cfg.data.description, model.name, model.weights,
             clips, crops, device, cfg.precision)

    loader = DataLoader(
        VideoClipsDataset(manifest.videos, spec, clips, str(cfg.views.spacing),
                          int(cfg.data.decode_threads)),
        batch_size=None, num_workers=int(cfg.data.workers), pin_memory=device.type == "cuda")
    store = RunStore(run_dir)
    start = time.perf_counter()
    for item in tqdm(loader, total=len(manifest.videos), unit="video", desc=model.name):
        video = manifest.videos[item.index]
        if item.failure is not None:
            log.warning("%s: %s", video.path or video.video_id, item.failure)
            store.add_failure(video.video_id, video.path, item.failure)
            continue
        probs = predict_video(module, item.clips, spec, crops, int(cfg.eval.batch_views), device,
                              str(cfg.precision))
        store.add_prediction(video.video_id, video.path, video.label, probs)
    seconds = time.perf_counter() - start

    probs, labels = store.probs_and_labels()
    metrics = {
        "model": model.name, "weights": model.weights, "dataset": manifest.name,
        "device": device.type, "precision": str(cfg.precision), "clips": clips, "crops": crops,
        "spacing": str(cfg.views.spacing),
        "videos_listed": len(manifest.videos), "videos_evaluated": len(store.predictions),
        "videos_failed": len(store.failures), "duplicates_in_csv": len(manifest.duplicates),
        **accuracy(probs, labels, model.num_classes),
        "class_names": manifest.class_names_source,
        **measure_cost(module, spec, cfg, device),
        "videos_per_s": len(store.predictions) / seconds if seconds > 0 else None,
        "seconds": seconds,
        "versions": versions(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.write(metrics)
    published = OmegaConf.to_container(cfg.model.published, resolve=True) if "published" in cfg.model else {}
    upsert_table(Path(cfg.results_dir) / "evaluations", eval_row(metrics, published), EVAL_KEY,
                 EVAL_COLUMNS)
    return metrics


def measure_cost(module: torch.nn.Module, spec: InputSpec, cfg: DictConfig,
                 device: torch.device) -> dict:
    """GFLOPs per view (zoo convention), params, and model-only views/s on the device."""
    result = {"gflops": None, "params_m": cost.params_m(module), "views_per_s": None}
    if cfg.cost.flops:
        result["gflops"] = cost.gflops_per_view(module, [x.to(device) for x in spec.example(1)])
    if cfg.cost.throughput_iters > 0:
        example = [x.to(device) for x in spec.example(int(cfg.eval.batch_views))]
        dtype = PRECISIONS[str(cfg.precision)]
        with (torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()):
            result["views_per_s"] = cost.model_views_per_s(
                module, example, device, warmup=1, iters=int(cfg.cost.throughput_iters))
    return result
