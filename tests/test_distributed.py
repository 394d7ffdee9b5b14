"""torchrun: 2 processes on the CPU (gloo) give what 1 process gives, each video once."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd

from benchmark.distributed import Ranks, shard

from test_eval_cli import REPO


def test_shards_cover_every_item_once_without_padding():
    items = list(range(7))
    shares = [shard(items, Ranks(rank, 3)) for rank in range(3)]
    assert sorted(sum(shares, [])) == items and [len(s) for s in shares] == [3, 2, 2]


def test_two_processes_equal_one(tmp_path, action_set, tiny_checkpoint):
    # 5 videos: the generated 4 and one repeated under another name, so 2 ranks get 3 and 2.
    csv = tmp_path / "val.csv"
    lines = (action_set / "validate.csv").read_text().splitlines()
    csv.write_text("\n".join(lines) + "\n" + lines[1].replace("gen0000000", "missing0") + "\n")
    common = ["model=slowfast_tiny", "model.num_classes=4", f"model.weights={tiny_checkpoint}",
              "data=kinetics400", f"data.csv={csv}", f"data.root={action_set}",
              f"data.class_names={action_set / 'kinetics_classnames.json'}", "data.workers=0",
              "device=cpu", "views.clips=3", "cost.flops=false", "cost.throughput_iters=0",
              f"results_dir={tmp_path / 'results'}"]
    one = subprocess.run([sys.executable, "-m", "benchmark.eval", *common,
                          f"hydra.run.dir={tmp_path / 'one'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "-m", "benchmark.eval", *common, f"hydra.run.dir={tmp_path / 'two'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]

    a = pd.read_parquet(tmp_path / "one" / "predictions.parquet")
    b = pd.read_parquet(tmp_path / "two" / "predictions.parquet")
    assert a.video_id.tolist() == b.video_id.tolist() and b.video_id.is_unique and len(b) == 4
    np.testing.assert_allclose(np.stack(a.probs), np.stack(b.probs), atol=1e-6)
    assert pd.read_csv(tmp_path / "two" / "failures.csv").video_id.tolist() == [
        "missing0_000000_000010"]
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two")]
    assert (metrics[0]["processes"], metrics[1]["processes"]) == (1, 2)
    for key in ("videos_listed", "videos_evaluated", "videos_failed", "top1", "top5",
                "mean_class_accuracy"):
        assert metrics[0][key] == metrics[1][key], key
    # Both ranks wrote their share's parts into the one run dir; only rank 0 made a run dir.
    assert {p.name.split("-")[1] for p in (tmp_path / "two" / "parts").iterdir()} == {"r0", "r1"}
