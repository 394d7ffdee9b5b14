import pytest
import torch

from benchmark.results.metrics import accuracy


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


def test_bootstrap_interval_known_cases():
    from benchmark.results.metrics import bootstrap_ci, topk_hits

    def with_hits(hits):  # two classes; label 0 everywhere, predicted 0 where hit
        probs = torch.tensor([[0.9, 0.1] if h else [0.1, 0.9] for h in hits])
        return probs, torch.zeros(len(hits), dtype=torch.long)

    assert bootstrap_ci(*with_hits([1] * 50), ks=(1,)) == {"top1": (1.0, 1.0)}
    assert bootstrap_ci(*with_hits([0] * 50), ks=(1,)) == {"top1": (0.0, 0.0)}
    # Two videos, one right: resampled means are 0, 1/2, 1 with chances 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles of 1000 resamples are 0 and 1.
    assert bootstrap_ci(*with_hits([1, 0]), ks=(1,)) == {"top1": (0.0, 1.0)}
    # Large n: close to the normal interval p +- 1.96 sqrt(p (1 - p) / n) = 0.7 +- 0.0201.
    probs, labels = with_hits([1] * 1400 + [0] * 600)
    low, high = bootstrap_ci(probs, labels, ks=(1,))["top1"]
    assert abs(low - 0.6799) < 0.004 and abs(high - 0.7201) < 0.004
    # Seeded: the same interval every time; another seed resamples differently.
    assert bootstrap_ci(probs, labels, ks=(1,)) == bootstrap_ci(probs, labels, ks=(1,))
    assert bootstrap_ci(probs, labels, ks=(1,), seed=1) != bootstrap_ci(probs, labels, ks=(1,))
    assert topk_hits(probs, labels, 2).all()  # k beyond the class count: every label is in


def test_per_class_accuracy_and_confusions_by_hand():
    from benchmark.results.metrics import confused_pairs, per_class_accuracy

    # true -> predicted top-1. Class 0: 0, 0, 1; class 1: 2, 2; class 2: 2, 0, 2, 2; class 6: 0;
    # classes 3, 4, 5: no videos.
    pairs = [(0, 0), (0, 0), (0, 1), (1, 2), (1, 2), (2, 2), (2, 0), (2, 2), (2, 2), (6, 0)]
    labels = torch.tensor([t for t, _ in pairs])
    # Distinct background scores, class 6 lowest: its missed video is a top-5 miss too.
    probs = torch.tensor([0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01]).repeat(len(pairs), 1)
    for i, (_, p) in enumerate(pairs):
        probs[i, p] = 0.6

    table = per_class_accuracy(probs, labels)
    # Worst top-1 first; between equals, the class with more videos first.
    assert table.class_id.tolist() == [1, 6, 0, 2]
    assert table.videos.tolist() == [2, 1, 3, 4]
    assert table.top1.tolist() == pytest.approx([0, 0, 2 / 3, 3 / 4])
    assert table.top5.tolist() == pytest.approx([1, 0, 1, 1])
    assert table.most_confused_id.tolist() == [2, 0, 1, 0]
    assert table.confused_videos.tolist() == [2, 1, 1, 1]

    confused = confused_pairs(probs, labels)
    assert list(zip(confused.true_id, confused.predicted_id, confused.videos)) == [
        (1, 2, 2), (6, 0, 1), (0, 1, 1), (2, 0, 1)]  # most videos, then largest share
    assert confused.share.tolist() == pytest.approx([1.0, 1.0, 1 / 3, 1 / 4])
    assert len(confused_pairs(probs, labels, top=1)) == 1


def test_ties_are_broken_one_way_everywhere(tmp_path):
    """All-equal outputs (and partial ties): the point estimate, the bootstrap, the stored top5,
    the per-class table and the confusions all take the lower class id first."""
    from benchmark.results.metrics import bootstrap_ci, confused_pairs, per_class_accuracy, top_k
    from benchmark.run.store import RunStore

    probs = torch.full((6, 4), 0.25)
    probs[3] = torch.tensor([0.1, 0.4, 0.4, 0.1])  # class 1 and 2 tie at the top
    labels = torch.tensor([0, 0, 2, 1, 3, 0])
    assert top_k(probs, 2).tolist() == [[0, 1]] * 3 + [[1, 2]] + [[0, 1]] * 2
    result = accuracy(probs, labels, num_classes=4)
    assert result["top1"] == pytest.approx(4 / 6)  # the three 0s and the tie won by 1
    for name, (low, high) in bootstrap_ci(probs, labels, ks=(1, 2)).items():
        assert low <= result.get(name, 5 / 6) <= high, name  # top2: all but the label 3
    store = RunStore(tmp_path, {})
    for i, (p, label) in enumerate(zip(probs, labels)):
        store.add_prediction(str(i), "x.mp4", int(label), p)
    assert [r["top5"][0] for r in store.rows] == [0, 0, 0, 1, 0, 0]
    table = per_class_accuracy(probs, labels).set_index("class_id")
    assert table.top1.to_dict() == {0: 1.0, 1: 1.0, 2: 0.0, 3: 0.0}
    assert sorted(zip(*[confused_pairs(probs, labels)[c] for c in ("true_id", "predicted_id")])) == [
        (2, 0), (3, 0)]
