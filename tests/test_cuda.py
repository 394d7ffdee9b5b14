"""The CUDA path (pinned clips copied ahead on a side stream, views built on the GPU, bf16)
predicts as the CPU path. Skipped without a GPU; run on one with ``make test``."""

import json

import pandas as pd
import pytest
import torch

from benchmark.run.device import Stopwatch, prepare_model
from benchmark.run.batches import on_device, predict
from benchmark.run.clip_loader import LoadedVideo

from conftest import run_eval

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CPU, GPU = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def cpu_probs(tiny_model, tiny_clips):
    """The plain CPU path: fp32, NCDHW, one clip's 3 views per forward."""
    return [p for _, p in predict(tiny_model.module.to(CPU), enumerate(tiny_clips),
                                  tiny_model.spec, 3, 3, CPU, "fp32")]


def gpu_probs(tiny_model, clips, precision, batch_views=7, stopwatch=None):
    """The CUDA path as ``evaluate`` runs it: pinned clips, copied ahead, views on the GPU."""
    runner = prepare_model(tiny_model.module, GPU, channels_last=True, compile=False)
    items = [LoadedVideo(i, c.pin_memory()) for i, c in enumerate(clips)]
    videos = ((item.index, item.clips) for item in on_device(items, GPU))
    try:
        return [p for _, p in predict(runner, videos, tiny_model.spec, 3, batch_views, GPU,
                                      precision, channels_last=True, stopwatch=stopwatch)]
    finally:
        tiny_model.module.to(CPU, memory_format=torch.contiguous_format)


def test_cuda_fp32_equals_the_cpu_path(tiny_model, tiny_clips, cpu_probs):
    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions keep 10 mantissa bits
    try:
        for probs, expected in zip(gpu_probs(tiny_model, tiny_clips, "fp32"), cpu_probs):
            assert probs.device == CPU
            assert probs.topk(4).indices.tolist() == expected.topk(4).indices.tolist()
            torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)
    finally:
        torch.backends.cudnn.allow_tf32 = True


def test_cuda_bf16_keeps_the_top1(tiny_model, tiny_clips, cpu_probs):
    for probs, expected in zip(gpu_probs(tiny_model, tiny_clips, "bf16"), cpu_probs):
        assert probs.argmax() == expected.argmax()
        torch.testing.assert_close(probs, expected, atol=1e-2, rtol=0)


def test_stopwatch_reads_cuda_events(tiny_model, tiny_clips):
    stopwatch = Stopwatch(GPU)
    gpu_probs(tiny_model, tiny_clips, "bf16", stopwatch=stopwatch)
    seconds = stopwatch.totals()
    assert set(seconds) == {"views", "model"} and all(t > 0 for t in seconds.values())


def test_eval_on_cuda_in_bf16(tmp_path, action_set, tiny_checkpoint):
    """The real entry point on the GPU: loader workers, pinned memory, bf16, recorded."""
    run_eval("model=slowfast_tiny", "model.num_classes=4", f"model.weights={tiny_checkpoint}",
             "data=kinetics400", f"data.csv={action_set / 'validate.csv'}",
             f"data.root={action_set}", f"data.class_names={action_set / 'kinetics_classnames.json'}",
             "views.clips=4", "device=cuda", "precision=bf16", "data.workers=2",
             f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'out'}")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["device"], metrics["precision"], metrics["batch_views"]) == ("cuda", "bf16", 60)
    assert metrics["videos_evaluated"] == 4 and metrics["videos_failed"] == 0
    assert metrics["tf32"] is False  # eval.tf32=false: fp32 work on the GPU is fp32
    assert pd.read_csv(tmp_path / "results" / "evaluations.csv").device[0] == "cuda"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_a_run_on_the_second_gpu_times_and_copies_on_its_own_stream(tiny_model, tiny_clips,
                                                                    cpu_probs):
    """device=cuda:1 while cuda:0 is current: the copy-back events and the Stopwatch's events
    are recorded on cuda:1's stream, so the host never reads a mean before its copy lands."""
    second = torch.device("cuda", 1)
    assert torch.cuda.current_device() == 0
    stopwatch = Stopwatch(second)
    runner = prepare_model(tiny_model.module, second, channels_last=True, compile=False)
    items = [LoadedVideo(i, c.pin_memory()) for i, c in enumerate(tiny_clips)]
    videos = ((item.index, item.clips) for item in on_device(items, second))
    torch.backends.cudnn.allow_tf32 = False
    try:
        got = [p for _, p in predict(runner, videos, tiny_model.spec, 3, 7, second, "fp32",
                                     channels_last=True, stopwatch=stopwatch)]
    finally:
        torch.backends.cudnn.allow_tf32 = True
        tiny_model.module.to(CPU, memory_format=torch.contiguous_format)
    for probs, expected in zip(got, cpu_probs):
        torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)
    assert all(t > 0 for t in stopwatch.totals().values())
