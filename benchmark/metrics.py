"""Accuracy from per-video probabilities: top-1/top-5 (micro) and mean per-class accuracy."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy


def accuracy(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Fractions in 0..1 over the evaluated videos.

    torchmetrics' MulticlassAccuracy defaults to average="macro"; the model zoo's top-1/top-5 are
    "micro" (share of videos), so it is stated explicitly. Mean class accuracy averages only over
    classes that have videos here (a subset of Kinetics lacks some classes).
    """
    if len(labels) == 0:
        return {"top1": float("nan"), "top5": float("nan"), "mean_class_accuracy": float("nan")}
    top5 = min(5, num_classes)
    result = {
        "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")(probs, labels).item(),
        "top5": MulticlassAccuracy(num_classes, top_k=top5, average="micro")(probs, labels).item(),
    }
    per_class = MulticlassAccuracy(num_classes, top_k=1, average=None)(probs, labels)
    present = torch.bincount(labels, minlength=num_classes) > 0
    result["mean_class_accuracy"] = per_class[present].mean().item()
    return result
