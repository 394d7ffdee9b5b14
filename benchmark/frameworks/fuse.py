"""Inference rewrites that do not change the answer (``eval.fuse``), for every framework.

Each rewrite turns the eval-mode model into one that computes the same function with fewer or
faster kernels; the tests hold the rewritten model's probabilities to the plain model's
(tests/test_fuse.py). ``benchmark.run.device.prepare_model`` applies them to a copy, so the module
that FLOPs and parameters are counted on stays the hub model.

- ``bn``: every BatchNorm3d that directly follows a convolution in pytorchvideo's blocks is
  folded into it with its inference statistics (w' = w * gamma / sqrt(var + eps),
  b' = (b - mean) * gamma / sqrt(var + eps) + beta, computed in float64): one memory-bound pass
  over each activation less, exact in fp32 up to rounding.
- ``stem``: each convolution over 3 input channels (the stems) gets 8, the extra weights zero
  and the input zero-padded, so that cuDNN/oneDNN can use their vectorised kernels instead of
  a slow path for an odd channel count (on an H200 cuDNN ran the fast pathway's 5x7x7 stem with
  an "implicit_gemm_indexed" kernel, 44% of the forward pass). The zeros add exactly nothing.
- ``relu`` (CPU only): a convolution followed by a ReLU (once ``bn`` has removed the norm
  between them) runs as one oneDNN convolution with a ReLU post-op
  (``torch.ops.mkldnn._convolution_pointwise``, the kernel inductor uses on a CPU), bit for bit
  the plain convolution then ReLU on finite input. That post-op turns NaN into 0 (every oneDNN
  ReLU variant does), where ``torch.relu`` keeps it: a NaN born in the convolution (from inf or
  NaN in its input, as an fp16 overflow upstream makes, or in its weights) would vanish and the
  video get finite, wrong probabilities. So ``ConvReLU3d`` runs the fused kernel only on finite
  input and weights (one summing pass over the input: ``finite``), else the plain convolution
  and ``torch.relu``, and the NaN reaches the probabilities, where it makes the video a
  recorded failure as without the rewrite.

``eval.fuse``: ``auto`` (the rewrites measured to help on the device, ``DEFAULTS``),
``none``/``false``, ``all``/``true`` (every rewrite the device supports), or a list /
``+``-joined string of names (``bn+stem``). Which rewrites fit a model is its adapter's to say
(``Adapter.rewrites``: name -> the in-place rewrite): ``bn`` and ``relu`` need to know which
norm and activation follow which convolution, which only pytorchvideo's adapter declares for
its blocks (frameworks/pytorchvideo/fuse.py, with ``fold_norm`` and ``ConvReLU3d`` from here);
``stem`` pads any plain ``nn.Conv3d`` (the default); mmaction2's declares none (its
convolutions are mmcv's own Conv3d class). metrics.json and the tables record the rewrites made
(``fuse``: ``bn+stem`` or ``none``).

Separately, ``plain_conv_args`` makes convolution strides etc. plain Python ints:
pytorchvideo's ``create_res_basic_block`` leaves numpy int64 strides on the shortcut
convolutions, which torch.compile traces as tensors and breaks the graph on
(``aten._local_scalar_dense``; ``torch._dynamo.explain`` showed it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

REWRITES = ("bn", "stem", "relu")
# What ``auto`` applies per device type: only what was measured to help there (docs/speed.md).
# CPU (2-core EPYC with AVX512-BF16, slowfast_r50 bf16 channels-last batch 3, model only,
# `python -m benchmark.fuse --iters 5`, 2026-12-01, the machine shared at load 8-12): CPU
# seconds per pass against none: bn 1.10x, bn+relu 1.19x, bn+stem 1.03x (the padding costs
# more than oneDNN gains from 8 channels). CUDA: bn+stem until .ci/gpu-check measures it.
DEFAULTS = {"cpu": ("bn", "relu"), "cuda": ("bn", "stem")}
DEVICE_ONLY = {"relu": "cpu"}  # rewrites with a library path on one device type only
STEM_CHANNELS = 8

class FuseError(ValueError):
    """An ``eval.fuse`` value that names no rewrite; the message names the key."""


def resolve(setting, device_type: str) -> tuple[str, ...]:
    """The rewrites ``eval.fuse`` asks for on ``device_type``, in the order they apply."""
    if setting is None or setting is False or str(setting).lower() in ("none", "false", "off"):
        return ()
    if setting is True or str(setting).lower() in ("all", "true", "on"):
        names = REWRITES
    elif str(setting).lower() == "auto":
        names = DEFAULTS.get(device_type, ())
    else:
        names = [str(n).strip() for n in (str(setting).split("+") if isinstance(setting, str)
                                           else setting)]
        unknown = [n for n in names if n not in REWRITES]
        if unknown:
            raise FuseError(f"eval.fuse: unknown rewrite {', '.join(unknown)}; use auto, none, "
                            f"all or names from {', '.join(REWRITES)} (a list or joined by +)")
        wrong = [n for n in names if DEVICE_ONLY.get(n, device_type) != device_type]
        if wrong:
            raise FuseError(f"eval.fuse: {', '.join(wrong)} runs only on "
                            f"{', '.join(DEVICE_ONLY[n] for n in wrong)}, not {device_type}")
    return tuple(n for n in REWRITES if n in names
                 and DEVICE_ONLY.get(n, device_type) == device_type)


def label(rewrites: tuple[str, ...]) -> str:
    """How a run records its rewrites: ``bn+stem``, or ``none``."""
    return "+".join(rewrites) or "none"


def fused(module: nn.Module, rewrites: tuple[str, ...],
          fitting: Mapping[str, Callable[[nn.Module], int]]) -> nn.Module:
    """A rewritten copy of the eval-mode ``module`` (``module`` itself is left as it was):
    each of ``rewrites`` that the model's adapter declares (``fitting``, its ``rewrites()``),
    in ``REWRITES`` order. Its ``fuse_applied`` names the rewrites that changed something
    (``applied``), which is what a run records: a model gets less than it asked for where a
    rewrite does not fit it or finds nothing to change."""
    module = plain_conv_args(copy.deepcopy(module))
    module.fuse_applied = tuple(name for name in REWRITES
                                if name in rewrites and name in fitting
                                and fitting[name](module) > 0)
    return module


def applied(runner: nn.Module) -> tuple[str, ...]:
    """The rewrites ``fused`` made in ``runner`` (compiled or not; none for a plain module)."""
    return tuple(getattr(runner, "fuse_applied", ()))


def plain_conv_args(module: nn.Module) -> nn.Module:
    """Convolution and pooling kernel sizes, strides, paddings and dilations as plain ints
    (in place): numpy ints there are what broke torch.compile's graph."""
    names = ("kernel_size", "stride", "padding", "dilation", "output_padding", "output_size")
    for layer in module.modules():
        if isinstance(layer, (nn.modules.conv._ConvNd, nn.modules.pooling._AvgPoolNd,
                              nn.modules.pooling._MaxPoolNd,
                              nn.modules.pooling._AdaptiveAvgPoolNd)):
            for name in names:
                value = getattr(layer, name, None)
                if isinstance(value, (tuple, list)):
                    setattr(layer, name, type(value)(_plain(v) for v in value))
                elif value is not None:
                    setattr(layer, name, _plain(value))
    return module


def _plain(value):
    """A numpy integer as a Python int; anything else (None, a string padding) as it is."""
    return int(value) if hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0 else value


# ---- batch norm folding: the arithmetic (which norm follows which convolution: the adapter) --

def foldable(norm: nn.Module | None) -> bool:
    """A batch norm in eval mode with running statistics (foldable into a convolution)."""
    return (isinstance(norm, nn.BatchNorm3d) and not norm.training
            and norm.running_mean is not None and norm.running_var is not None)


def fold_norm(conv: nn.Conv3d, norm: nn.BatchNorm3d) -> None:
    """Fold ``norm``'s inference transform into ``conv`` (float64 arithmetic, then back)."""
    dtype = conv.weight.dtype
    as64 = (lambda t: None if t is None else t.detach().double())
    weight, bias = fuse_conv_bn_weights(as64(conv.weight), as64(conv.bias),
                                        as64(norm.running_mean), as64(norm.running_var),
                                        norm.eps, as64(norm.weight), as64(norm.bias))
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)


# ---- stems: 8 input channels instead of 3 ---------------------------------------------------

class ChannelPaddedConv3d(nn.Conv3d):
    """A Conv3d over ``real_in_channels`` computed as one over ``in_channels``: the extra
    weights are zero and the input is zero-padded, in the dtype autocast would give it (so the
    padded copy is bf16 under bf16 autocast) and in the input's layout."""

    def __init__(self, conv: nn.Conv3d, channels: int):
        super().__init__(channels, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation, 1, conv.bias is not None,
                         conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        self.real_in_channels = conv.in_channels
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, : conv.in_channels] = conv.weight
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        if conv.weight.is_contiguous(memory_format=torch.channels_last_3d):
            self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = x.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        channels_last = x.is_contiguous(memory_format=torch.channels_last_3d)
        padded = torch.empty((x.shape[0], self.in_channels, *x.shape[2:]), dtype=dtype,
                             device=x.device,
                             memory_format=torch.channels_last_3d if channels_last
                             else torch.contiguous_format)
        padded[:, self.real_in_channels:] = 0
        padded[:, : self.real_in_channels] = x
        return super().forward(padded)


def pad_stem_channels(module: nn.Module, channels: int = STEM_CHANNELS) -> int:
    """Give every ungrouped Conv3d over 3 input channels ``channels`` (in place); returns how
    many."""
    padded = 0
    for owner in list(module.modules()):
        for name, layer in list(owner.named_children()):
            if (type(layer) is nn.Conv3d and layer.in_channels == 3 and layer.groups == 1
                    and layer.padding_mode == "zeros"):
                setattr(owner, name, ChannelPaddedConv3d(layer, channels))
                padded += 1
    return padded


# ---- CPU: convolution + ReLU as one oneDNN primitive ----------------------------------------

def finite(x: torch.Tensor) -> bool:
    """Whether ``x`` holds no NaN or inf: one read-only pass (a sum, which NaN and inf make
    non-finite), the exact test only when the sum itself overflowed (fp16's does easily, so it
    sums in fp32)."""
    total = x.sum(dtype=torch.float32) if x.dtype == torch.float16 else x.sum()
    return bool(torch.isfinite(total)) or bool(torch.isfinite(x).all())


class ConvReLU3d(nn.Conv3d):
    """Conv3d then ReLU as one oneDNN convolution with a ReLU post-op (CPU); on non-finite
    input or weights the plain convolution and ``torch.relu``, which keep NaN (module
    docstring). Under autocast the input, weight and bias are cast as autocast casts a
    convolution's."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                         conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        self.load_state_dict(conv.state_dict())
        self.requires_grad_(False)
        if conv.weight.is_contiguous(memory_format=torch.channels_last_3d):
            self.to(memory_format=torch.channels_last_3d)
        self._finite_weights: dict[torch.dtype, bool] = {}  # per dtype the kernel gets them in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        if torch.compiler.is_compiling():  # no data-dependent branch: inductor fuses its own way
            return torch.relu(nn.functional.conv3d(x, weight, bias, self.stride, self.padding,
                                                   self.dilation, self.groups))
        if weight.dtype not in self._finite_weights:  # fp16 can overflow fp32's finite weights
            self._finite_weights[weight.dtype] = finite(weight) and (bias is None
                                                                     or finite(bias))
        if not (self._finite_weights[weight.dtype] and finite(x)):
            return torch.relu(nn.functional.conv3d(x, weight, bias, self.stride, self.padding,
                                                   self.dilation, self.groups))
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, list(self.padding), list(self.stride), list(self.dilation),
            self.groups, "relu", [None], "")
