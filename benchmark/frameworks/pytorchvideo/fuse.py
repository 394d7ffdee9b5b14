"""Inference rewrites that do not change the answer (``eval.fuse``).

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
``+``-joined string of names (``bn+stem``). metrics.json and the tables record the rewrites
made (``fuse``: ``bn+stem`` or ``none``): ``bn`` and ``relu`` know pytorchvideo's blocks only,
so on torchvision's, mmaction2's and transformers' models they change nothing and are left out
(``stem`` too on mmaction2's, whose convolutions are mmcv's own Conv3d class).

Separately, ``plain_conv_args`` makes convolution strides etc. plain Python ints:
pytorchvideo's ``create_res_basic_block`` leaves numpy int64 strides on the shortcut
convolutions, which torch.compile traces as tensors and breaks the graph on
(``aten._local_scalar_dense``; ``torch._dynamo.explain`` showed it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from pytorchvideo.layers.convolutions import Conv2plus1d
from pytorchvideo.models.resnet import BottleneckBlock, ResBlock, SeparableBottleneckBlock
from pytorchvideo.models.slowfast import FuseFastToSlow
from pytorchvideo.models.stem import ResNetBasicStem
from pytorchvideo.models.x3d import ProjectedPool

REWRITES = ("bn", "stem", "relu")
# What ``auto`` applies per device type: only what was measured to help there (docs/speed.md).
# CPU (2-core EPYC with AVX512-BF16, slowfast_r50 bf16 channels-last batch 3, model only,
# `python -m benchmark.fuse --iters 5`, 2026-12-01, the machine shared at load 8-12): CPU
# seconds per pass against none: bn 1.10x, bn+relu 1.19x, bn+stem 1.03x (the padding costs
# more than oneDNN gains from 8 channels). CUDA: bn+stem until .ci/gpu-check measures it.
DEFAULTS = {"cpu": ("bn", "relu"), "cuda": ("bn", "stem")}
DEVICE_ONLY = {"relu": "cpu"}  # rewrites with a library path on one device type only
STEM_CHANNELS = 8

# Per pytorchvideo block: (convolution, norm) attribute pairs where the block's forward applies
# the norm to the convolution's output and to nothing else (read off pytorchvideo 0.1.5's
# forward methods).
CONV_NORM = {
    ResNetBasicStem: [("conv", "norm")],
    BottleneckBlock: [("conv_a", "norm_a"), ("conv_b", "norm_b"), ("conv_c", "norm_c")],
    SeparableBottleneckBlock: [("conv_a", "norm_a"), ("conv_c", "norm_c")],
    ResBlock: [("branch1_conv", "branch1_norm")],
    FuseFastToSlow: [("conv_fast_to_slow", "norm")],
    ProjectedPool: [("pre_conv", "pre_norm"), ("post_conv", "post_norm")],
}
# (convolution, norm, activation) attributes where the forward is conv -> [norm] -> activation.
CONV_ACT = {
    ResNetBasicStem: [("conv", "norm", "activation")],
    BottleneckBlock: [("conv_a", "norm_a", "act_a"), ("conv_b", "norm_b", "act_b")],
    FuseFastToSlow: [("conv_fast_to_slow", "norm", "activation")],
}


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


def fused(module: nn.Module, rewrites: tuple[str, ...]) -> nn.Module:
    """A rewritten copy of the eval-mode ``module`` (``module`` itself is left as it was). Its
    ``fuse_applied`` names the rewrites that changed something (``applied``), which is what a
    run records: ``bn`` and ``relu`` know pytorchvideo's blocks only, and ``stem`` pads plain
    ``nn.Conv3d`` only, so a torchvision, mmaction2 or transformers model gets less or nothing."""
    module = plain_conv_args(copy.deepcopy(module))
    steps = (("bn", fold_batch_norms), ("stem", pad_stem_channels), ("relu", fuse_relus))
    module.fuse_applied = tuple(name for name, rewrite in steps
                                if name in rewrites and rewrite(module) > 0)
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


# ---- batch norm folding ---------------------------------------------------------------------

def _last_conv(layer: nn.Module | None) -> nn.Conv3d | None:
    """The convolution whose output ``layer``'s output is: itself, or Conv2plus1d's second."""
    if isinstance(layer, nn.Conv3d):
        return layer
    if isinstance(layer, Conv2plus1d):
        return _last_conv(layer.conv_t if layer.conv_xy_first else layer.conv_xy)
    return None


def _foldable(norm: nn.Module | None) -> bool:
    return (isinstance(norm, nn.BatchNorm3d) and not norm.training
            and norm.running_mean is not None and norm.running_var is not None)


def _fold(conv: nn.Conv3d, norm: nn.BatchNorm3d) -> None:
    """Fold ``norm``'s inference transform into ``conv`` (float64 arithmetic, then back)."""
    dtype = conv.weight.dtype
    as64 = (lambda t: None if t is None else t.detach().double())
    weight, bias = fuse_conv_bn_weights(as64(conv.weight), as64(conv.bias),
                                        as64(norm.running_mean), as64(norm.running_var),
                                        norm.eps, as64(norm.weight), as64(norm.bias))
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)


def _fold_into(conv_layer: nn.Module | None, norm: nn.Module | None, remove) -> bool:
    """Fold ``norm`` into the convolution that ends ``conv_layer`` if both are foldable, then
    ``remove(replacement)`` the norm (Identity inside a Sequential whose head it was)."""
    conv = _last_conv(conv_layer)
    if conv is None:
        return False
    if isinstance(norm, nn.Sequential) and len(norm) and _foldable(norm[0]):
        _fold(conv, norm[0])  # X3D's norm_b: BatchNorm3d then squeeze-excitation
        norm[0] = nn.Identity()
        return True
    if _foldable(norm):
        _fold(conv, norm)
        remove()
        return True
    return False


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every batch norm that follows a convolution in a known block (in place); returns
    how many were folded."""
    folded = 0
    for block in list(module.modules()):
        for kind, pairs in CONV_NORM.items():
            if isinstance(block, kind):
                for conv, norm in pairs:
                    folded += _fold_into(getattr(block, conv), getattr(block, norm),
                                         lambda b=block, n=norm: setattr(b, n, None))
        if isinstance(block, SeparableBottleneckBlock):
            for i in range(len(block.conv_b)):  # the forward indexes norm_b: keep its length
                folded += _fold_into(block.conv_b[i], block.norm_b[i],
                                     lambda b=block, i=i: b.norm_b.__setitem__(i, nn.Identity()))
        if isinstance(block, Conv2plus1d):  # conv -> norm -> activation -> conv
            first = block.conv_xy if block.conv_xy_first else block.conv_t
            folded += _fold_into(first, block.norm, lambda b=block: setattr(b, "norm", None))
    return folded


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


def fuse_relus(module: nn.Module) -> int:
    """Conv3d -> ReLU with no norm left between them (``bn`` first) as ``ConvReLU3d``, in
    place; returns how many."""
    fused_count = 0
    for block in list(module.modules()):
        for kind, triples in CONV_ACT.items():
            if not isinstance(block, kind):
                continue
            for conv, norm, act in triples:
                layer = getattr(block, conv)
                if (type(layer) is nn.Conv3d and layer.padding_mode == "zeros"
                        and getattr(block, norm) is None
                        and isinstance(getattr(block, act), nn.ReLU)):
                    setattr(block, conv, ConvReLU3d(layer))
                    setattr(block, act, None)
                    fused_count += 1
    return fused_count
