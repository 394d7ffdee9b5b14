"""torchrun: 2 processes on the CPU (gloo) give what 1 process gives, each video once."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd

from benchmark.run.distributed import Ranks, shard

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


def launch_ranks(tmp_path, per_rank: list[tuple[list[str], dict]]) -> list[tuple[int, str]]:
    """``python -m benchmark.eval`` as two ranks of one process group (what torchrun sets up),
    each with its own overrides and environment: (exit code, stderr) per rank."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processes = []
    for rank, (overrides, env) in enumerate(per_rank):
        log = open(tmp_path / f"rank{rank}.log", "w")
        processes.append((subprocess.Popen(
            [sys.executable, "-m", "benchmark.eval", *overrides], cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "MASTER_ADDR": "127.0.0.1",
                                           "MASTER_PORT": str(port), "RANK": str(rank),
                                           "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                                           "LOCAL_WORLD_SIZE": "2", **env}), log))
    results = []
    for rank, (process, log) in enumerate(processes):
        process.wait(timeout=300)
        log.close()
        results.append((process.returncode, (tmp_path / f"rank{rank}.log").read_text()))
    return results


def test_rank0_resolves_the_weights_and_the_others_load_its_file(kinetics_run, tmp_path,
                                                                 tiny_checkpoint):
    """weights=auto with the checkpoint only in rank 0's hub cache and no network: rank 1 loads
    rank 0's file instead of falling back to random weights on its own, so the run is the
    one-process run (kinetics_run, the same checkpoint under its file name)."""
    import shutil

    tmp, overrides, _ = kinetics_run
    cache = tmp_path / "home0" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, cache / "tiny.pyth")
    (tmp_path / "home1").mkdir()
    common = [o for o in overrides if not o.startswith(("model.weights=", "results_dir=",
                                                        "hydra.run.dir="))]
    common += ["model.weights=auto", "model.checkpoint_url=http://127.0.0.1:9/tiny.pyth",
               "data.workers=0", "cost.flops=false", "cost.throughput_iters=0",
               f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'two'}"]
    results = launch_ranks(tmp_path, [(common, {"TORCH_HOME": str(tmp_path / f"home{r}")})
                                      for r in range(2)])
    assert all(code == 0 for code, _ in results), results[0][1][-2000:] + results[1][1][-2000:]
    assert "RANDOM weights" not in results[1][1]
    # rank 0's file (its URL is not the config's: named by its content) on both ranks
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["weights"].startswith(
        "tiny.pyth@")
    want = pd.read_parquet(tmp / "out" / "predictions.parquet")
    got = pd.read_parquet(tmp_path / "two" / "predictions.parquet")
    assert got.video_id.tolist() == want.video_id.tolist()
    np.testing.assert_allclose(np.stack(got.probs), np.stack(want.probs), atol=1e-6)


def test_ranks_with_different_fingerprints_stop_the_run(kinetics_run, tmp_path):
    """A rank that would evaluate under other settings (here its batch size) stops every rank
    before any video, with one line saying what differs."""
    _, overrides, _ = kinetics_run
    common = [o for o in overrides if not o.startswith(("results_dir=", "hydra.run.dir="))]
    common += ["data.workers=0", "cost.flops=false", "cost.throughput_iters=0",
               f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'two'}"]
    results = launch_ranks(tmp_path, [(common, {}), ([*common, "eval.batch_views=4"], {})])
    for code, output in results:
        assert code != 0
        assert ("error: ranks disagree on the run's fingerprint: rank 1 differs from rank 0 in "
                "run (every rank") in output, output[-2000:]
    assert not (tmp_path / "two" / "parts").exists()


def test_a_refusal_on_rank_0_stops_every_rank_with_its_line(kinetics_run, tmp_path):
    """The run dir belongs to a live run (its run.lock held, here by the test): rank 0 refuses,
    and rank 1, which never looks at the lock, stops with rank 0's one line instead of waiting
    in its next collective (before: gloo's "Connection closed by peer" traceback; NCCL waits)."""
    from filelock import FileLock

    _, overrides, _ = kinetics_run
    common = [o for o in overrides if not o.startswith(("results_dir=", "hydra.run.dir="))]
    run_dir = tmp_path / "live"
    run_dir.mkdir()
    common += ["data.workers=0", "cost.flops=false", "cost.throughput_iters=0",
               f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={run_dir}"]
    with FileLock(str(run_dir / "run.lock"), timeout=0):
        results = launch_ranks(tmp_path, [(common, {}), (common, {})])
    for code, output in results:
        assert code != 0 and "Connection closed" not in output, output[-2000:]
        assert f"error: {run_dir} belongs to a live run" in output, output[-2000:]
    assert not (run_dir / "parts").exists()
