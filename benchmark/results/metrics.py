"""Accuracy from per-video probabilities: top-1/top-5 (micro), mean per-class accuracy, bootstrap
intervals, per-class accuracy and the confusions between classes.

Every hit count goes through ``top_k`` (one tie-break: the lower class id first), so the point
estimates, the bootstrap, predictions.parquet's top5, the per-class tables and the regression
check agree on every video, ties included (torchmetrics, ``Tensor.topk`` and ``argmax`` each
break ties their own way).
"""

from __future__ import annotations

import pandas as pd
import torch

# Published-vs-measured deltas only for runs that evaluated at least this share of the listed
# videos (``report.min_coverage``): 12 of 19,881 videos say nothing about the zoo's number.
MIN_COVERAGE = 0.95


def top_k(probs: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` most probable class ids per row (or of one vector), most probable first; equal
    probabilities in class id order (a stable sort), whatever the device or the library."""
    order = torch.sort(probs, dim=-1, descending=True, stable=True).indices
    return order[..., :min(k, probs.shape[-1])]


def topk_hits(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per video: is the label among the ``k`` most probable classes (bool, shape (N,))."""
    return (top_k(probs, k) == labels[:, None]).any(dim=1)


def accuracy(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Fractions in 0..1 over the evaluated videos (None when there are none).

    top-1/top-5 are "micro" as in the model zoo (share of videos). Mean class accuracy averages
    only over classes that have videos here (a subset of Kinetics lacks some classes).
    """
    if len(labels) == 0:
        return {"top1": None, "top5": None, "mean_class_accuracy": None}
    top1 = topk_hits(probs, labels, 1).double()
    result = {"top1": top1.mean().item(),
              "top5": topk_hits(probs, labels, min(5, num_classes)).double().mean().item()}
    videos = torch.bincount(labels, minlength=num_classes).double()
    per_class = torch.bincount(labels, weights=top1, minlength=num_classes)
    present = videos > 0
    result["mean_class_accuracy"] = (per_class[present] / videos[present]).mean().item()
    return result


def bootstrap_ci(probs: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5),
                 samples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap interval of top-k accuracy: ``{"top1": (low, high), ...}`` in 0..1.

    Videos are resampled with replacement ``samples`` times from a seeded generator, so a rerun
    gives the same interval, and every k sees the same resamples. (None, None) without videos.
    Hand-written rather than torchmetrics' BootStrapper: that keeps one metric copy per resample
    and updates them one by one (1.7 s for 50 videos, 8 s for 20,000 here); the statistic is a
    mean of per-video hits, which one indexing op computes for a block of resamples at once.
    """
    if len(labels) == 0:
        return {f"top{k}": (None, None) for k in ks}
    generator = torch.Generator().manual_seed(seed)
    hits = torch.stack([topk_hits(probs, labels, k) for k in ks], dim=1).double()  # (n, len(ks))
    n, block = len(labels), 100  # resamples per block: bounds memory at block x n x len(ks)
    means = torch.cat([hits[torch.randint(n, (min(block, samples - i), n), generator=generator)]
                       .mean(dim=1) for i in range(0, samples, block)])  # (samples, len(ks))
    tail = (1 - level) / 2
    bounds = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64), dim=0)
    return {f"top{k}": (bounds[0, j].item(), bounds[1, j].item()) for j, k in enumerate(ks)}


def confusion_matrix(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(true class, top-1 predicted class) video counts."""
    num_classes = probs.shape[1]
    predicted = top_k(probs, 1)[:, 0]
    return torch.bincount(labels * num_classes + predicted,
                          minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """One row per class that has videos, worst top-1 first: class_id, videos, top1, top5 (0..1),
    and the class its videos are most often mistaken for (most_confused_id, confused_videos)."""
    num_classes = probs.shape[1]
    videos = torch.bincount(labels, minlength=num_classes)
    counts = videos.clamp(min=1).double()
    top1, top5 = (torch.bincount(labels, weights=topk_hits(probs, labels, k).double(),
                                 minlength=num_classes) / counts for k in (1, 5))
    wrong = confusion_matrix(probs, labels).fill_diagonal_(0)
    confused, most = wrong.max(dim=1)
    present = videos.nonzero().flatten()
    table = pd.DataFrame({
        "class_id": present.tolist(), "videos": videos[present].tolist(),
        "top1": top1[present].tolist(), "top5": top5[present].tolist(),
        "most_confused_id": [int(m) if c > 0 else None
                             for m, c in zip(most[present].tolist(), confused[present].tolist())],
        "confused_videos": confused[present].tolist(),
    })
    return table.sort_values(["top1", "videos", "class_id"], ascending=[True, False, True],
                             ignore_index=True)


def confused_pairs(probs: torch.Tensor, labels: torch.Tensor, top: int = 20) -> pd.DataFrame:
    """The ``top`` most frequent (true class, predicted class) mistakes: true_id, predicted_id,
    videos, share (of the true class's videos, 0..1)."""
    matrix = confusion_matrix(probs, labels)
    per_true = matrix.sum(dim=1)
    wrong = matrix.clone().fill_diagonal_(0)
    true_ids, predicted_ids = wrong.nonzero(as_tuple=True)
    counts = wrong[true_ids, predicted_ids]
    table = pd.DataFrame({"true_id": true_ids.tolist(), "predicted_id": predicted_ids.tolist(),
                          "videos": counts.tolist(),
                          "share": (counts / per_true[true_ids]).tolist()})
    return table.sort_values(["videos", "share", "true_id", "predicted_id"],
                             ascending=[False, False, True, True], ignore_index=True).head(top)
