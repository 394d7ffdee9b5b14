"""The fast model path (channels-last, view batches, bf16, memory reuse) predicts as the plain one."""

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from benchmark.run.device import Stopwatch, precision_problem, prepare_model
from benchmark.run.batches import predict
from benchmark.run.settings import batch_views_for, loader_workers
from benchmark.frameworks.views import make_views

CPU = torch.device("cpu")


def predict_video(model, clips, spec, crops, batch_views, device, precision, **kwargs):
    """One video's mean softmax through ``predict``."""
    [(key, probs)] = predict(model, [("video", clips)], spec, crops, batch_views, device,
                             precision, **kwargs)
    return probs


@pytest.fixture(scope="module")
def plain(tiny_model, tiny_clips):
    """Not ``predict``: the model on each view alone (fp32, NCDHW, batch 1), softmax, mean."""
    means = []
    with torch.inference_mode():
        for clips in tiny_clips:
            views = make_views(clips, tiny_model.spec, 3)
            probs = [tiny_model.module([v[i:i + 1] for v in views]).softmax(-1)[0]
                     for i in range(views[0].shape[0])]
            means.append(torch.stack(probs).mean(0))
    return means


@pytest.mark.parametrize("channels_last, batch_views", [(True, 1), (True, 12), (False, 5)])
def test_fast_fp32_path_predicts_as_the_plain_path(tiny_model, tiny_clips, plain, channels_last,
                                                   batch_views):
    runner = prepare_model(tiny_model.module, CPU, channels_last, compile=False)
    try:
        for c, expected in zip(tiny_clips, plain):
            probs = predict_video(runner, c, tiny_model.spec, 3, batch_views, CPU, "fp32",
                                  channels_last=channels_last)
            assert probs.topk(4).indices.tolist() == expected.topk(4).indices.tolist()
            torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)
    finally:
        tiny_model.module.to(memory_format=torch.contiguous_format)


@pytest.mark.skipif(precision_problem("bf16", CPU) is not None, reason="no bf16 on this CPU")
def test_bf16_keeps_the_top1(tiny_model, tiny_clips, plain):
    """bf16 keeps 8 mantissa bits: the same top-1 and probabilities within 1e-3 (2e-5 measured
    on the tiny_model model here; documented in the README)."""
    runner = prepare_model(tiny_model.module, CPU, True, compile=False)
    try:
        for c, expected in zip(tiny_clips, plain):
            probs = predict_video(runner, c, tiny_model.spec, 3, 3, CPU, "bf16", channels_last=True)
            assert probs.argmax() == expected.argmax()
            torch.testing.assert_close(probs, expected, atol=1e-3, rtol=0)
    finally:
        tiny_model.module.to(memory_format=torch.contiguous_format)


@pytest.mark.parametrize("batch_views", [5, 7, 100])
def test_batches_spanning_videos_predict_as_one_video_at_a_time(tiny_model, tiny_clips, plain,
                                                                 batch_views):
    """12 views a video in batches of 5 or 7 (each batch after the first ends one video and
    starts the next) or all 36 in one: the same per-video results, in the videos' order."""
    results = list(predict(tiny_model.module, enumerate(tiny_clips), tiny_model.spec, 3,
                           batch_views, CPU, "fp32"))
    assert [key for key, _ in results] == [0, 1, 2]
    for (_, probs), expected in zip(results, plain):
        torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)


def test_stopwatch_times_views_and_model(tiny_model, tiny_clips):
    stopwatch = Stopwatch(CPU)
    list(predict(tiny_model.module, enumerate(tiny_clips), tiny_model.spec, 3, 3, CPU, "fp32",
                 stopwatch=stopwatch))
    seconds = stopwatch.totals()
    assert set(seconds) == {"views", "model"} and all(t > 0 for t in seconds.values())


def test_auto_settings_follow_the_device(monkeypatch):
    import benchmark.run.settings

    assert (batch_views_for("auto", "cpu"), loader_workers("auto", "cpu")) == (3, 1)
    assert batch_views_for("auto", "cuda") == 60
    # On a GPU one worker per core but the main process's, and at least one.
    for cores, workers in [(16, 15), (2, 1), (1, 1)]:
        monkeypatch.setattr(benchmark.run.settings, "process_cores", lambda: cores)
        assert loader_workers("auto", "cuda") == workers, cores
    assert (batch_views_for(8, "cuda"), loader_workers(0, "cuda")) == (8, 0)


def test_precision_without_cpu_support_is_one_line_naming_the_key(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)
    for precision in ("bf16", "fp16"):
        message = precision_problem(precision, CPU)
        assert message.startswith(f"precision={precision}: ") and "\n" not in message
        assert "precision=fp32" in message  # says what to do
    assert precision_problem("fp32", CPU) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_reuse_freed_memory_stops_the_page_faults():
    """Freed 64 MB blocks are reused: once warm, allocating one page faults almost nowhere.
    In a process as a run has it when it calls this (its model's framework loaded: here
    pytorchvideo's adapter): in a bare torch process the switch did not stop the faults here
    (measured: 16,384 of 16,384 pages in 8 of 8 tries), which this test passed by the chance
    that run/device.py imported pytorchvideo until the adapters got a base class."""
    script = textwrap.dedent("""
        import resource, sys, torch
        import benchmark.frameworks.pytorchvideo.fuse  # the model's adapter, as in a run
        from benchmark.run.device import reuse_freed_memory
        if sys.argv[1] == "reuse":
            assert reuse_freed_memory()
        for _ in range(3):
            torch.ones(16 * 2**20)  # 64 MB, allocated and freed
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 * 2**20)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)
    faults = {mode: int(subprocess.run([sys.executable, "-c", script, mode], check=True,
                                       capture_output=True, text=True).stdout)
              for mode in ("default", "reuse")}
    assert faults["default"] > 10_000  # 16,384 pages of 4 kB
    assert faults["reuse"] < 1_000


def test_eval_records_how_the_model_ran(tmp_path):
    """The real entry point with the fast settings: metrics.json and the table say what ran."""
    from test_eval_cli import run_eval

    precision = "bf16" if precision_problem("bf16", CPU) is None else "fp32"
    run_eval("model=slowfast_tiny", "views=1x1", "cost.flops=false", "cost.throughput_iters=1",
             f"precision={precision}", "eval.batch_views=1", "eval.channels_last=true",
             "eval.fuse=bn+stem",
             "device=cpu", f"cache_dir={tmp_path / 'cache'}",
             f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'out'}")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["precision"], metrics["batch_views"], metrics["channels_last"],
            metrics["compile"], metrics["fuse"]) == (precision, 1, True, False, "bn+stem")
    assert metrics["views_per_s"] > 0
    row = pd.read_csv(tmp_path / "results" / "evaluations.csv").iloc[0]
    assert (row.precision, row.batch_views, bool(row.channels_last), row.fuse) == (
        precision, 1, True, "bn+stem")


@pytest.mark.skipif(precision_problem("fp16", CPU) is None, reason="this CPU has fp16")
def test_eval_refuses_a_precision_the_cpu_lacks(tmp_path):
    from test_eval_cli import run_eval

    result = run_eval("model=slowfast_tiny", "precision=fp16", "device=cpu",
                      f"cache_dir={tmp_path}", f"results_dir={tmp_path}",
                      f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode != 0
    assert "error: precision=fp16: this CPU has no float16" in result.stderr


@pytest.mark.slow
def test_compiled_model_predicts_as_eager_and_keeps_a_nan(tiny_model, monkeypatch):
    """compile=true (inductor as torch sets it): the eager model's outputs, and a NaN in one
    view stays in that view's output, so the video is a recorded failure as without compile.
    Inductor's freezing would turn it into a finite, wrong answer (measured on a small
    Conv3d+ReLU model): a run with it on is refused before any work, naming it."""
    from benchmark.run.settings import SettingsError, check_settings
    from conftest import compose_eval

    views = [x.contiguous(memory_format=torch.channels_last_3d) for x in tiny_model.spec.example(2)]
    views[-1][0, :, 1, 5, 5] = float("nan")  # view 0 of the fast pathway
    try:
        runner = prepare_model(tiny_model.module, CPU, True, compile=True)
        with torch.inference_mode():
            eager, compiled = tiny_model.module(list(views)), runner(list(views))
    finally:
        tiny_model.module.to(memory_format=torch.contiguous_format)
    assert compiled[0].isnan().all() and eager[0].isnan().all()
    torch.testing.assert_close(compiled[1], eager[1], atol=1e-5, rtol=0)
    import torch._inductor.config as inductor
    monkeypatch.setattr(inductor, "freezing", True)
    with pytest.raises(SettingsError, match=r"^compile=true: inductor's freezing is on"):
        check_settings(compose_eval("compile=true"))
    check_settings(compose_eval("compile=false"))  # without compile freezing does not matter
