import json
import os
import subprocess
import sys

import pytest
from pytorchvideo.data.encoded_video import EncodedVideo

from benchmark.data.decode import DecodeError, decode_threads, decode_video, process_cores
from benchmark.run.settings import loader_workers


def test_decodes_every_frame_once_with_pytorchvideos_duration(videos):
    decoded = decode_video(videos["landscape"])
    reference = EncodedVideo.from_path(str(videos["landscape"]), decode_audio=False)
    assert decoded.duration == reference.duration
    assert len(decoded.pts) == 90 and decoded.pts == sorted(set(decoded.pts))
    frames = decoded.rgb([0, 89, 0])
    assert frames.shape == (3, 128, 170, 3) and frames.dtype.is_floating_point is False
    assert (frames[0] == frames[2]).all()


@pytest.mark.parametrize("content, reason", [
    (None, "file not found"),
    (b"", "cannot open as a video"),
    (b"\x00\x01garbage" * 1000, "cannot open as a video"),
])
def test_unreadable_files_give_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        decode_video(path)


def test_auto_decode_threads_leave_the_cores_to_the_model():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert decode_threads("auto", 0, "cpu") == cores  # the main process decodes between passes
    assert decode_threads("auto", 1, "cpu") == 1  # the model's threads take every core
    assert decode_threads("auto", 2, "cuda") == max(1, (cores - 1) // 2)
    assert decode_threads(3, 2, "cpu") == 3 and decode_threads("0", 1, "cpu") == 0


def test_processes_started_together_share_the_cores(monkeypatch):
    """torchrun's 8 processes on a 16-core machine: 2 cores each, so one loader worker each."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    for name in ("SLURM_PROCID", "SLURM_CPUS_PER_TASK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)  # holds when the suite itself runs under SLURM
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert process_cores() == 2 and loader_workers("auto", "cuda") == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert process_cores() == 16 and loader_workers("auto", "cuda") == 15


def test_a_slurm_task_uses_its_own_cores_once(monkeypatch):
    """2 SLURM tasks of 8 cores on a 16-core node (submitit exports LOCAL_WORLD_SIZE=2): SLURM
    already bound each task to its 8, so 7 loader workers each, not 3."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    for name, value in {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "LOCAL_WORLD_SIZE": "2",
                        "SLURM_CPUS_PER_TASK": "8"}.items():
        monkeypatch.setenv(name, value)
    assert process_cores() == 8 and loader_workers("auto", "cuda") == 7
    # A node that does not bind tasks: each sees all 16, and takes its --cpus-per-task.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert process_cores() == 8
    # torchrun's 8 processes inside a 16-core SLURM task share that task's cores.
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert process_cores() == 2 and loader_workers("auto", "cuda") == 1


PROBE = """
import json, os, sys
from benchmark.data.decode import decode_threads, process_cores
cores = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, cores)
out = {}
for name, env in json.loads(sys.argv[1]).items():
    os.environ.update(env)
    out[name] = [process_cores(), decode_threads("auto", 0, "cuda")]
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2 cores and sched_setaffinity")
def test_a_slurm_tasks_real_affinity_is_not_divided_again():
    """A process bound to 2 cores as SLURM binds a task: under SLURM with 2 tasks on the node the
    decoder gets both (the old code halved them); torchrun's 2 workers in that task get one each."""
    slurm = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "LOCAL_WORLD_SIZE": "2",
             "SLURM_CPUS_PER_TASK": "2"}
    scenarios = {"slurm_task": slurm, "torchrun_in_task": {"TORCHELASTIC_RUN_ID": "none"}}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_", "LOCAL_WORLD"))}
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(scenarios)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"slurm_task": [2, 2], "torchrun_in_task": [1, 1]}
