"""How the model runs on its device (``conf/device/``, ``precision``, ``compile``, ``eval.*``).

Precision support, the channels-last layout, torch.compile, keeping freed memory for reuse on
the CPU, and timing that waits for the device.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch

from benchmark.frameworks import fuse as fuse_module
from benchmark.frameworks.api import Adapter

# precision -> the autocast dtype around the model (fp32: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on ``device``; nothing for fp32."""
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def precision_problem(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` cannot run natively on ``device`` (one line naming the key), or None.

    Autocast would still run bf16/fp16 on a CPU without the instructions, but emulated and slower
    than fp32, which is never what a user asking for speed wants.
    """
    if device.type == "cpu":
        # torch's own CPU feature probes (what inductor uses to pick bf16/fp16 kernels).
        if precision == "bf16" and not (torch.cpu._is_avx512_bf16_supported()
                                         or torch.cpu._is_amx_tile_supported()):
            return ("precision=bf16: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), "
                    "so bf16 would be emulated and slower than fp32; use precision=fp32")
        if precision == "fp16" and not torch.cpu._is_amx_fp16_supported():
            return ("precision=fp16: this CPU has no float16 matrix instructions (AMX-FP16); use "
                    "precision=fp32, or bf16 where the CPU has it")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"precision=bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16"
    return None


def compile_problem() -> str | None:
    """Why ``compile=true`` must not run as inductor is set (one line naming the setting), or
    None. With inductor's freezing (``TORCHINDUCTOR_FREEZING=1``) a CPU convolution and its ReLU
    become one oneDNN kernel, which turns NaN into 0: measured, a NaN input pixel gave finite,
    wrong logits where eager and default inductor give NaN. A video whose numbers overflowed
    would then get probabilities instead of being a recorded failure (on a GPU unmeasured)."""
    import torch._inductor.config as inductor

    if inductor.freezing:
        return ("compile=true: inductor's freezing is on (TORCHINDUCTOR_FREEZING=1), which fuses "
                "convolution+ReLU into kernels that turn NaN into 0 and would hide a broken "
                "video's NaN; unset it")
    return None


def prepare_model(module: torch.nn.Module, device: torch.device, channels_last: bool,
                  compile: bool, fuse: tuple[str, ...] = (),
                  adapter: Adapter | None = None) -> torch.nn.Module:
    """The module on ``device`` in eval mode, its weights channels-last (``eval.channels_last``:
    oneDNN and cuDNN run 3D convolutions faster on NDHWC), rewritten (``eval.fuse``: the
    rewrites frameworks/fuse.py's ``resolve`` names that its framework's ``adapter`` declares,
    applied to a copy) and compiled (``compile``).

    Returns the module to call; with ``fuse`` or ``compile`` it is not ``module``, which stays
    the one to count FLOPs and parameters on.
    """
    module = fuse_module.plain_conv_args(module.to(device).eval())  # torch.compile: no breaks
    if channels_last:
        module = channels_last_3d(module)
    if fuse and adapter is None:
        raise ValueError("prepare_model: eval.fuse's rewrites need the model's adapter")
    runner = fuse_module.fused(module, fuse, adapter.rewrites()) if fuse else module
    if fuse and channels_last:  # folded weights are new tensors
        runner = channels_last_3d(runner)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed view shapes: time cuDNN's algorithms once
    return torch.compile(runner) if compile else runner


def channels_last_3d(module: torch.nn.Module) -> torch.nn.Module:
    """``module``'s 5-D weights and buffers channels-last (NDHWC), in place. What
    ``Module.to(memory_format=channels_last_3d)`` does to a 3D CNN, except that it leaves other
    ranks as they are where ``to`` refuses them (mmaction2's recognizers hold their data
    preprocessor's rank-4 mean and std; its 2D models 4-D weights)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dim() == 5:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)
    return module


def set_tf32(device: torch.device, enabled: bool) -> bool:
    """TF32 for fp32 convolutions and matrix products on CUDA (``eval.tf32``); returns what the
    run uses, for metrics.json, the fingerprint and the tables.

    cuDNN's default runs fp32 convolutions in TF32 (10 mantissa bits): faster, but not the fp32
    a ``precision=fp32`` run claims, so the harness turns it off unless asked. No effect on a CPU.
    """
    if device.type != "cuda":
        return False
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
    return enabled


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process (glibc malloc) instead of returning large blocks to the
    operating system at every free (``eval.reuse_memory``).

    Each view batch and each activation of a forward pass is a fresh block of up to tens of MB;
    by default glibc gives large blocks (over 128 kB, a threshold that adapts up to 32 MB) their
    own mappings and unmaps them when freed, so each pass page faults through all of it again
    (about 200,000 faults per slowfast_r50 view, measured here). PyTorch's CPU tuning guide
    swaps in jemalloc/tcmalloc with LD_PRELOAD for this; glibc's own switches do the same from
    inside the process. Returns False where there is no glibc (nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: leave the allocator alone
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has finished its queued work."""
    synchronize(device)
    return time.perf_counter()


class Stopwatch:
    """Seconds of device work per name, without making the device wait.

    On a GPU a clock read around a kernel launch measures the launch, and synchronising to read
    it would stall the pipeline it measures; CUDA events record on the stream instead and are
    read once, at the end. On a CPU the work is done when the call returns: the clock.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.device.type == "cuda":
            # On the run's device's stream, not the current device's (device=cuda:1).
            stream = torch.cuda.current_stream(self.device)
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record(stream)
            yield
            end.record(stream)
            self.events.append((name, start, end))
        else:
            start = time.perf_counter()
            yield
            self.seconds[name] += time.perf_counter() - start

    def totals(self) -> dict[str, float]:
        """Seconds per name so far (waits for the device's queued work)."""
        synchronize(self.device)
        for name, start, end in self.events:
            self.seconds[name] += start.elapsed_time(end) / 1000
        self.events.clear()
        return dict(self.seconds)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"cpu ({os.cpu_count()} cores)"
