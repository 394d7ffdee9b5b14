"""Hydra multirun sweeps: one combined table, skipped devices, failing jobs, the SLURM launcher."""

import subprocess
import sys

import pandas as pd
import pytest

from benchmark.results.sweep import SWEEP_SHOWN
from test_eval_cli import REPO


def sweep(tmp_path, action_set, *overrides):
    return subprocess.run(
        [sys.executable, "-m", "benchmark.eval", "-m", "model=slowfast_tiny", "model.num_classes=4",
         "data=kinetics400", f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
         f"data.class_names={action_set / 'kinetics_classnames.json'}", "views.clips=2",
         "cost.flops=false", "cost.throughput_iters=0", f"results_dir={tmp_path / 'results'}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=300)


def test_sweep_writes_one_table_and_skips_missing_devices(tmp_path, action_set):
    result = sweep(tmp_path, action_set, "device=cpu,cuda")
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table.job.tolist() == [0, 1]
    assert table.device.tolist() == ["cpu", "cuda"]
    assert table.status.tolist() == ["ok", "skipped"]
    assert "CUDA is not available" in table.reason[1]
    assert 0 <= table.top1[0] <= 100 and table.videos_per_s[0] > 0 and pd.isna(table.top1[1])
    assert (tmp_path / "sweep" / "0" / "metrics.json").exists()  # Hydra's layout: sweep dir/N
    copy = pd.read_csv(tmp_path / "results" / "sweeps" / f"{tmp_path.name}_sweep.csv")
    assert copy.equals(table)
    shown = (tmp_path / "sweep" / "sweep.md").read_text()  # the note, then 12 columns
    assert "| skipped: device=cuda: CUDA is not available" in shown and "| cpu fp32 " in shown
    assert "Rows: one per job of the sweep" in shown and "device=cpu,cuda" in shown
    assert shown.splitlines()[2].count("|") - 1 == len(SWEEP_SHOWN) <= 14


def test_a_failed_job_fails_the_sweep_after_the_table(tmp_path, action_set):
    result = sweep(tmp_path, action_set, "device=cpu", "views.crops=3,4")
    assert result.returncode != 0
    assert "error: 1 of 2 sweep jobs failed: job 1: views.crops: must be 1, 2 or 3" in result.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table.status.tolist() == ["ok", "failed"] and table.views.tolist() == ["2x3", "2x4"]


def test_slurm_launcher_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.eval", "--cfg", "hydra", "--resolve",
         "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4", "hydra.launcher.partition=gpu"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in out
    for line in ("partition: gpu", "gpus_per_node: 4", "tasks_per_node: 4", "timeout_min: 240",
                 "- export SRUN_CPUS_PER_TASK=8"):  # srun 22.05+: else one core per task
        assert line in out
