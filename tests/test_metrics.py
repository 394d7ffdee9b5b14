import torch

from benchmark.metrics import accuracy


def test_topk_and_mean_class_accuracy_against_a_hand_count():
    probs = torch.tensor([
        [0.7, 0.1, 0.1, 0.05, 0.03, 0.02, 0.0],  # label 0: top-1 hit
        [0.1, 0.6, 0.2, 0.05, 0.03, 0.02, 0.0],  # label 2: 2nd -> top-5 hit
        [0.5, 0.2, 0.1, 0.1, 0.05, 0.04, 0.01],  # label 6: last -> miss
        [0.1, 0.1, 0.6, 0.1, 0.05, 0.05, 0.0],   # label 2: top-1 hit
    ])
    labels = torch.tensor([0, 2, 6, 2])
    result = accuracy(probs, labels, num_classes=7)
    assert result["top1"] == 2 / 4  # micro: share of videos, not a mean over classes
    assert result["top5"] == 3 / 4
    # classes present: 0 (1/1), 2 (1/2), 6 (0/1); absent classes 1, 3, 4, 5 do not count
    assert abs(result["mean_class_accuracy"] - (1 + 0.5 + 0) / 3) < 1e-6
