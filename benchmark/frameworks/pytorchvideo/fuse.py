"""``eval.fuse``'s ``bn`` and ``relu`` on pytorchvideo's blocks: which batch norm follows which
convolution, and which ReLU follows which convolution, read off pytorchvideo 0.1.5's forward
methods. The arithmetic and the fused kernel are shared (frameworks/fuse.py); the adapter
declares these two rewrites with the generic ``stem`` (``PytorchvideoAdapter.rewrites``).
"""

from __future__ import annotations

from torch import nn
from pytorchvideo.layers.convolutions import Conv2plus1d
from pytorchvideo.models.resnet import BottleneckBlock, ResBlock, SeparableBottleneckBlock
from pytorchvideo.models.slowfast import FuseFastToSlow
from pytorchvideo.models.stem import ResNetBasicStem
from pytorchvideo.models.x3d import ProjectedPool

from benchmark.frameworks.fuse import ConvReLU3d, fold_norm, foldable

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


def _last_conv(layer: nn.Module | None) -> nn.Conv3d | None:
    """The convolution whose output ``layer``'s output is: itself, or Conv2plus1d's second."""
    if isinstance(layer, nn.Conv3d):
        return layer
    if isinstance(layer, Conv2plus1d):
        return _last_conv(layer.conv_t if layer.conv_xy_first else layer.conv_xy)
    return None


def _fold_into(conv_layer: nn.Module | None, norm: nn.Module | None, remove) -> bool:
    """Fold ``norm`` into the convolution that ends ``conv_layer`` if both are foldable, then
    ``remove(replacement)`` the norm (Identity inside a Sequential whose head it was)."""
    conv = _last_conv(conv_layer)
    if conv is None:
        return False
    if isinstance(norm, nn.Sequential) and len(norm) and foldable(norm[0]):
        fold_norm(conv, norm[0])  # X3D's norm_b: BatchNorm3d then squeeze-excitation
        norm[0] = nn.Identity()
        return True
    if foldable(norm):
        fold_norm(conv, norm)
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
