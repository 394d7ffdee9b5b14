"""Train the toy SlowFast on the toy action set: ``python -m benchmark.toy`` (``make toy-model``).

The regression check needs a model that really learned something, so that a pipeline bug shows up
as lost accuracy. Training clips are cut by the harness's own code (``decode_video``,
``cut_clips``, ``make_views`` with the 3 test crops), only at random times, so training and
evaluation see the same preprocessing. Writes the checkpoint and, beside it, the recipe that made
it (resolved config, seed, losses, time, versions).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import warnings
from fractions import Fraction
from pathlib import Path

# fvcore and pytorchvideo call torch.jit.script at import time; its deprecation notice is noise.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)

import hydra  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from benchmark.data.decode import decode_video  # noqa: E402
from benchmark.run.record import versions  # noqa: E402
from benchmark.data.load import load_dataset  # noqa: E402
from benchmark.data.manifest import Video  # noqa: E402
from benchmark.run.models import build_model, offline_class_names  # noqa: E402
from benchmark.frameworks.clips import frames_between  # noqa: E402
from benchmark.data.files import atomic_write  # noqa: E402
from benchmark.frameworks.views import InputSpec, cut_clips, make_views  # noqa: E402
from benchmark.run.schema import composed, hydra_cli  # noqa: E402

log = logging.getLogger("benchmark.toy")


class RandomViews(Dataset):
    """Item ``(i, seed)``: video i's views and labels, ``clips`` clips at random start times
    (drawn from ``seed``), each cut into the 3 test crops."""

    def __init__(self, videos: list[Video], spec: InputSpec, clips: int):
        self.videos, self.spec, self.clips = videos, spec, clips

    def __getitem__(self, key: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        index, seed = key
        video = decode_video(self.videos[index].path, threads=1)
        latest = max(video.duration - self.spec.clip_duration, 0)
        ticks = np.random.default_rng(seed).integers(0, 1001, size=self.clips)
        starts = [latest * Fraction(int(k), 1000) for k in ticks]
        windows = [frames_between(video, s, s + self.spec.clip_duration) for s in starts]
        views = make_views(cut_clips(video, self.spec, windows), self.spec, crops=3)
        return views, torch.full((views[0].shape[0],), self.videos[index].label)


def collate(items: list[tuple[list[torch.Tensor], torch.Tensor]]):
    """One batch from several videos' views: pathway by pathway, and their labels."""
    views = [torch.cat(pathway) for pathway in zip(*(views for views, _ in items))]
    return views, torch.cat([labels for _, labels in items])


def save_checkpoint(module: torch.nn.Module, path: Path) -> None:
    """``{"model_state": ...}`` as the official .pyth; serialised in memory, so the same weights
    give the same bytes (torch.save names its archive after the file, here a temporary one)."""
    buffer = io.BytesIO()
    torch.save({"model_state": module.state_dict()}, buffer)
    atomic_write(path, lambda p: p.write_bytes(buffer.getvalue()))


@hydra.main(version_base=None, config_path="../conf", config_name="train_toy")
def main(cfg: DictConfig) -> None:
    composed()  # from here on Hydra reports errors its way
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    manifest = load_dataset(cfg.data, offline_names=offline_class_names)  # generated on first use
    data_seconds = time.perf_counter() - start
    model = build_model(cfg.model)
    module, spec, train = model.module.train(), model.spec, cfg.train
    videos = manifest.videos
    steps_per_epoch = -(-len(videos) // train.videos_per_step)
    optimiser = torch.optim.AdamW(module.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=train.lr,
                                                   total_steps=train.epochs * steps_per_epoch)
    log.info("%d training videos, %d classes, %d steps", len(videos), model.num_classes,
             train.epochs * steps_per_epoch)
    dataset = RandomViews(videos, spec, train.clips_per_video)
    history, start = [], time.perf_counter()
    for epoch in range(train.epochs):
        # Every random draw comes from the one seeded generator, whatever the worker count.
        keys = list(zip(rng.permutation(len(videos)).tolist(),
                        rng.integers(2**63, size=len(videos)).tolist()))
        step = train.videos_per_step
        batches = [keys[i:i + step] for i in range(0, len(keys), step)]
        total_loss = total_hits = total_views = 0.0
        for inputs, labels in DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                         num_workers=train.workers):
            logits = module(inputs)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(labels)
            total_hits += (logits.argmax(1) == labels).sum().item()
            total_views += len(labels)
        history.append({"epoch": epoch + 1, "loss": round(total_loss / total_views, 4),
                        "view_accuracy": round(total_hits / total_views, 4),
                        "seconds": round(time.perf_counter() - start, 1)})
        log.info("epoch %(epoch)d: loss %(loss).4f, view accuracy %(view_accuracy).3f, "
                 "%(seconds).0f s", history[-1])

    out = Path(cfg.out)
    save_checkpoint(module, out)
    recipe = {
        "checkpoint": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "command": " ".join(["python -m benchmark.toy", *HydraConfig.get().overrides.task]),
        "config": {"seed": cfg.seed, **OmegaConf.to_container(cfg.train),
                   "data": OmegaConf.to_container(cfg.data.synthetic),
                   "model": OmegaConf.to_container(cfg.model, resolve=True)},
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(time.perf_counter() - start, 1),
        "cpus": os.cpu_count(),
        "history": history,
        "versions": versions(),
    }
    atomic_write(out.with_suffix(".json"),
                 lambda p: p.write_text(json.dumps(recipe, indent=2) + "\n"))
    log.info("wrote %s (%.1f MB) and its recipe %s", out, out.stat().st_size / 1e6,
             out.with_suffix(".json").name)


if __name__ == "__main__":
    hydra_cli(main)  # a config that cannot be composed: one line, no traceback
