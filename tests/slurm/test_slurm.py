"""The SLURM launcher on a real scheduler: run by ``make slurm-test`` (tests/slurm/cluster.sh
starts a one-node cluster and sets SLURM_TEST_PARTITION); skipped in the normal suite.

Every job runs through ``python -m benchmark.eval -m hydra/launcher=slurm`` as a user's would,
except the core-count probe, which submits a function with submitit (as the launcher does) to
read what a SLURM task's loader sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import REPO

PARTITION = os.environ.get("SLURM_TEST_PARTITION")
pytestmark = pytest.mark.skipif(PARTITION is None,
                                reason="needs the test cluster: make slurm-test")

# One CPU and 1 GB per task: the test node has 2 CPUs, and the shipped config asks for a GPU
# node's 8 CPUs and 64 GB.
LAUNCHER = ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
            "hydra.launcher.gpus_per_node=0", "hydra.launcher.tasks_per_node=1",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=5"]


@pytest.fixture(scope="module")
def common(action_set, tmp_path_factory):
    results = tmp_path_factory.mktemp("slurm-results")
    return ["model=slowfast_tiny", "model.num_classes=4", "data=kinetics400",
            f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
            f"data.class_names={action_set / 'kinetics_classnames.json'}", "device=cpu",
            "views.clips=2", "cost.flops=false", "cost.throughput_iters=0", "resume=false",
            f"results_dir={results}"]


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.eval", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_a_sweep_of_two_jobs_gives_one_table_both_ok(tmp_path, common):
    result = harness("-m", *LAUNCHER, *common, "views.crops=1,3",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table.job.tolist() == [0, 1] and table.views.tolist() == ["2x1", "2x3"]
    assert table.status.tolist() == ["ok", "ok"], table.reason.tolist()
    assert (table.videos_per_s > 0).all()
    # Each job really was a SLURM job: submitit's folder holds its sbatch script and logs.
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_submission.sh"))) >= 1
    for job in ("0", "1"):
        assert json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())[
            "videos_evaluated"] == 4


def test_a_failing_job_fails_the_sweep_after_the_table(tmp_path, common):
    result = harness("-m", *LAUNCHER, *common, "views.crops=3,4",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode != 0
    assert "error: 1 of 2 sweep jobs failed: job 1: views.crops: must be 1, 2 or 3" in result.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table.status.tolist() == ["ok", "failed"]


def test_a_two_task_job_equals_one_process(tmp_path, common):
    # The 1-process run goes on here while the job runs.
    one = subprocess.Popen([sys.executable, "-m", "benchmark.eval", *common,
                            f"hydra.run.dir={tmp_path / 'one'}"], cwd=REPO, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        two = harness("-m", *LAUNCHER, *common, "hydra.launcher.tasks_per_node=2",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}")
        one_err = one.communicate(timeout=300)[1]
    finally:
        one.kill()
    assert one.returncode == 0, one_err[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a = pd.read_parquet(tmp_path / "one" / "predictions.parquet")
    b = pd.read_parquet(tmp_path / "sweep" / "0" / "predictions.parquet")
    assert a.video_id.tolist() == b.video_id.tolist() and len(b) == 4 and b.video_id.is_unique
    # Two tasks run with one core each, the single process with both: oneDNN may sum in another
    # order (3e-8 seen once), so the torchrun test's tolerance (tests/test_distributed.py).
    np.testing.assert_allclose(np.stack(a.probs), np.stack(b.probs), atol=1e-6)
    metrics = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["videos_evaluated"] == 4
    # Both tasks evaluated their share: each wrote parts into the one run dir.
    parts = {p.name.split("-")[1] for p in (tmp_path / "sweep" / "0" / "parts").iterdir()}
    assert parts == {"r0", "r1"}


def test_loader_workers_use_the_tasks_cores_once(tmp_path):
    """2 tasks of 2 CPUs on the 2-CPU node (--overcommit): SLURM binds each task to both, so
    each task's loader gets 2 cores, not 2 / LOCAL_WORLD_SIZE = 1 (nor 1 because srun dropped
    sbatch's --cpus-per-task). The job runs the same python
    and the same code as the submitter (the launcher pickles the function, the job imports it)."""
    import submitit

    def probe() -> dict:
        import benchmark
        from benchmark.run import distributed
        from benchmark.data.decode import decode_threads, process_cores
        from benchmark.run.settings import loader_workers

        ranks = distributed.init("cpu")  # exports torchrun's variables as a 2-task eval does
        try:
            return {"rank": ranks.rank, "world": ranks.world,
                    "local_world": os.environ["LOCAL_WORLD_SIZE"],
                    "affinity": len(os.sched_getaffinity(0)), "cores": process_cores(),
                    "decode_threads": decode_threads("auto", 0, "cuda"),
                    "loader_workers": loader_workers("auto", "cuda"),
                    "python": sys.executable, "package": benchmark.__file__}
        finally:
            distributed.close(ranks)

    # --overcommit places 2 tasks of 2 CPUs on 2 CPUs only with --ntasks (not per node), so
    # submitit is told of one task per node and both tasks' results are read back by hand.
    # The shipped launcher config's setup lines (SRUN_CPUS_PER_TASK) run before srun, as there.
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("eval", overrides=["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=2"],
                      return_hydra_config=True)
    setup = OmegaConf.to_container(cfg.hydra.launcher.setup, resolve=True)
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition=PARTITION, nodes=1, cpus_per_task=2, mem_gb=1,
                               timeout_min=5, slurm_setup=setup,
                               slurm_additional_parameters={"ntasks": 2, "overcommit": True})
    job = executor.submit(probe)
    job.result()
    both = submitit.SlurmJob(folder=tmp_path / "submitit", job_id=job.job_id, tasks=(0, 1))
    tasks = sorted(both.results(), key=lambda r: r["rank"])
    assert [t["rank"] for t in tasks] == [0, 1] and {t["world"] for t in tasks} == {2}
    for t in tasks:
        assert t["local_world"] == "2" and t["affinity"] == 2, t
        assert (t["cores"], t["decode_threads"], t["loader_workers"]) == (2, 2, 1), t
        assert t["python"] == sys.executable
        assert t["package"] == str(REPO / "benchmark" / "__init__.py")
