"""The mmaction2 adapter: mmaction2 1.2.0's recognizers, built from the configs its wheel ships
(``mmaction/.mim/configs/recognition/...``), evaluated under each config's own test pipeline.

The only code that imports mmaction, mmengine, mmcv (and OpenCV for mmcv's resize). Here:
- ``import_mmaction``: the one place where mmaction2 is made importable (three problems of the
  published wheel, each handled and tested there);
- ``build``: the recognizer from its config (no download: every ``pretrained``/``init_cfg``
  checkpoint reference is dropped), with the checkpoint ``model.weights`` names loaded strictly
  (``load_checkpoint``: mmaction2's ``{"meta", "state_dict"}`` files), or random weights and a
  loud warning;
- ``Pipeline``: the config's ``test_pipeline`` read as values (sampler, resize, crops) and the
  model's ``data_preprocessor`` mean/std; ``clip_windows`` picks frame indices into a
  ``DecodedVideo`` as ``SampleFrames(test_mode=True)`` / ``UniformSample`` do, and ``views``
  resizes with OpenCV as ``Resize`` (mmcv.imresize) does and crops as ``ThreeCrop`` /
  ``TenCrop`` / ``CenterCrop``; tests/test_mmaction2.py proves both equal to mmaction2's own
  ``Compose`` of the test pipeline (its decord backend) on the shared videos;
- ``probabilities``: the recognizer's own test path (``extract_feat`` + head +
  ``average_clip``), so TSN's consensus over all 25 x 10 frames and TSM's groups of 8 segments
  are mmaction2's, not a re-statement;
- ``gflops``: mmengine's counter (what mmaction2's ``tools/analysis_tools/get_flops.py`` uses).

A view is one clip of ``clip_len`` frames and one crop, (C, T, H, W); for the 2D models (TSN,
TSM: ``FormatShape('NCHW')``) a view is every sampled frame of the video under one crop: the
``num_clips`` segments are its T axis (mmaction2's FLOPs and heads count them that way). Under
``SampleFrames(twice_sample=True)`` (TSM on SSv2) the segments are sampled twice, at their
centres and at their starts: two views per crop (8 segments x 2 x ThreeCrop = 6 views), which
is how TSM's head groups the 16 frames (``num_segments`` = 8) before ``average_clip`` takes the
mean of the 6 groups' softmax.
"""

from __future__ import annotations

import logging
import sys
import types
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.data.files import file_problem
from benchmark.frameworks.api import Adapter
from benchmark.frameworks.common import (Extra, hub_cache_path, installed_version, load_torch_file,
                                         plain)
from benchmark.frameworks.views import InputSpec, faulted, pack_pathways

NAME = "mmaction2"
TIMINGS = ("mmaction2",)
SPATIALS = ("mmaction2",)
HEADS = ("pooled_logits",)  # its recognizers' own heads pool the crop (apply_head)
# mmaction2's checkpoint names end in the first 8 hex digits of their SHA-256 (its
# tools/deployment/publish_model.py), the prefix torch.hub's check_hash reads.
CHECK_HASH = True
# The mmaction extra: not in the core install; nothing imports it until an mmaction2 model is
# asked for. mmaction2, mmengine and mmcv-lite go in without their declared dependencies
# (pyproject.toml says why), then the extra's list.
EXTRA = Extra(NAME, ("mmaction", "mmengine", "mmcv"),
              "pip install --no-deps mmaction2==1.2.0 mmengine==0.10.7 mmcv-lite==2.1.0 && "
              "pip install -e '.[mmaction]' (make install does both)")
MMCV_BELOW = (2, 2, 0)  # mmaction/__init__.py asserts 2.0.0rc4 <= mmcv < 2.2.0

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: the message names the key."""


# ---------------------------------------------------------------------------------------------
# Import: the published wheel does not import as it is. Every fix lives here.

def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def import_mmaction():
    """``mmaction`` with its models and transforms registered, after three fixes:

    1. ``mmaction/__init__.py`` asserts mmcv < 2.2.0: checked first, so that mmcv 2.2 is one
       line naming the install (mmcv-lite 2.1.0, no compiled ops) instead of an AssertionError;
    2. the 1.2.0 wheel lacks the package ``mmaction.models.localizers.drn`` that
       ``mmaction.models.localizers`` imports (``from .drn.drn import DRN``): a stand-in module
       is registered in ``sys.modules`` first; its ``DRN`` refuses to be built;
    3. ``mmaction.utils.dependency.WITH_MULTIMODAL`` is True whenever transformers >= 4.28 is
       installed, and then ``mmaction.models.multimodal`` imports VindLU, which needs timm and
       transformers 4's API: set False before the models import (mmaction2 then registers its
       own placeholders that ask for the extra).
    """
    if "mmaction.models" in sys.modules and getattr(import_mmaction, "done", False):
        return sys.modules["mmaction"]
    EXTRA.require()
    import mmcv

    if _version_tuple(mmcv.__version__) >= MMCV_BELOW:
        raise ImportError(f"mmcv {mmcv.__version__}: mmaction2 1.2.0 needs mmcv < 2.2.0; install "
                          "mmcv-lite==2.1.0 (pip install -e '.[mmaction]')")
    with warnings.catch_warnings():
        # mmcv-lite has no compiled ops; mmcv.cnn warns that MultiScaleDeformableAttention is
        # missing (no recognizer here uses it).
        warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
        import mmaction.utils.dependency as dependency

        dependency.WITH_MULTIMODAL = False
        name = "mmaction.models.localizers.drn"
        if name not in sys.modules:
            try:
                import importlib.util

                missing = importlib.util.find_spec(name) is None
            except ModuleNotFoundError:
                missing = True
            if missing:
                sys.modules[name] = _drn_stand_in(name)
                sys.modules[name + ".drn"] = sys.modules[name].drn
        from mmaction.utils import register_all_modules

        register_all_modules(init_default_scope=True)
    import_mmaction.done = True
    return sys.modules["mmaction"]


def _drn_stand_in(name: str) -> types.ModuleType:
    package = types.ModuleType(name)
    package.__path__ = []  # a package, so that ``.drn.drn`` resolves
    package.__doc__ = "Stand-in: the mmaction2 1.2.0 wheel does not ship DRN (benchmark adapter)."
    module = types.ModuleType(name + ".drn")

    class DRN:  # noqa: D401 - a placeholder with the real name
        def __init__(self, *args, **kwargs):
            raise ImportError("DRN (temporal grounding) is not in the mmaction2 1.2.0 wheel")

    module.DRN = DRN
    package.drn = module
    return package


def version() -> dict[str, str]:
    """The framework's versions, for a run's metrics (from the installed packages' metadata:
    every run records every registered framework's, and importing mmaction2 takes seconds).
    An optional extra: "not installed" where it is not."""
    return {"mmaction2": installed_version("mmaction", "mmaction2"),
            "mmengine": installed_version("mmengine"),
            "mmcv": installed_version("mmcv", "mmcv-lite", "mmcv")}


# ---------------------------------------------------------------------------------------------
# Configs: the wheel's, by the path inside configs/ that the model config names.

def configs_root() -> Path:
    import importlib.util

    EXTRA.require()
    spec = importlib.util.find_spec("mmaction")
    return Path(list(spec.submodule_search_locations)[0]) / ".mim" / "configs"


def _builder(model_cfg) -> dict:
    builder = model_cfg["builder"]
    if "config" not in builder:
        raise ValueError("model.builder.config: the mmaction2 config's path inside the wheel's "
                         "configs/ (e.g. recognition/tsn/...py) is missing")
    return builder


def config_path(model_cfg) -> Path:
    """The config file: a path inside the wheel's configs/, or a .py file of one's own (as
    tools/test.py takes its CONFIG; its ``_base_`` chain is read relative to it)."""
    rel = str(_builder(model_cfg)["config"])
    own = Path(rel).expanduser()
    if own.suffix == ".py" and own.is_file():
        return own.resolve()
    path = configs_root() / rel
    if not path.is_file():
        raise FileNotFoundError(f"model.builder.config: {rel}: not in mmaction2's configs "
                                f"({configs_root()})")
    return path


def load_config(model_cfg):
    """The mmengine ``Config`` of the model (the wheel's file), with ``builder.overrides``
    (dotted keys, for shrunken test models) merged in."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(config_path(model_cfg)))
    overrides = model_cfg["builder"].get("overrides") if hasattr(model_cfg["builder"], "get") \
        else None
    if overrides:
        cfg.merge_from_dict(plain(overrides))
    return cfg




def _offline(node):
    """A copy of a model config with every checkpoint reference dropped (``pretrained`` URLs,
    ``init_cfg`` of type Pretrained): building must not download, and the weights come from
    ``load_checkpoint``. The architecture does not depend on them."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "pretrained" and isinstance(value, str):
                out[key] = None
            elif key == "init_cfg" and _has_pretrained(value):
                continue
            else:
                out[key] = _offline(value)
        return type(node)(out) if not hasattr(node, "to_dict") else out
    if isinstance(node, (list, tuple)):
        return type(node)(_offline(v) for v in node)
    return node


def _has_pretrained(value) -> bool:
    if isinstance(value, dict):
        return str(value.get("type")) == "Pretrained"
    if isinstance(value, (list, tuple)):
        return any(_has_pretrained(v) for v in value)
    return False


def build_architecture(model_cfg) -> nn.Module:
    """The recognizer of the config, random weights, eval mode, no download."""
    import_mmaction()
    from mmaction.registry import MODELS

    cfg = load_config(model_cfg)
    model_dict = _offline(cfg.model.to_dict())
    head = model_dict.get("cls_head", {})
    if "num_classes" in head and int(head["num_classes"]) != int(model_cfg["num_classes"]):
        raise ValueError(f"model.num_classes={model_cfg['num_classes']} but the mmaction2 config's "
                         f"cls_head.num_classes={head['num_classes']}")
    return MODELS.build(model_dict).eval()


def build(model_cfg, class_names=None) -> nn.Module:
    """The recognizer with the checkpoint ``model.weights`` resolves to (strictly loaded),
    else random weights with a loud warning. (``class_names``: the registry's argument; an
    mmaction2 recognizer has its classes in its head.)"""
    path = resolve_weights(model_cfg)  # first: a missing file is refused before any building
    model = build_architecture(model_cfg)
    if path is None:
        msg = (f"RANDOM WEIGHTS: no checkpoint for {model_cfg['name']} (model.weights="
               f"{model_cfg.get('weights', 'auto')}; not in the torch hub cache at "
               f"{hub_cache_path(official_url(model_cfg)) if official_url(model_cfg) else '-'}); "
               "the model is built from its mmaction2 config with random weights and its accuracy "
               "means nothing")
        warnings.warn(msg, stacklevel=2)
        log.warning("%s\n%s\n%s", "!" * 78, msg, "!" * 78)
    else:
        load_checkpoint(model, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Checkpoints: mmaction2's layout, loaded strictly, offline.

def official_url(model_cfg) -> str | None:
    """The metafile's ``Weights`` URL (kept as ``checkpoint_url`` in the model config)."""
    return model_cfg.get("checkpoint_url") or None


def source_values(model_cfg) -> dict:
    """What ``model.config`` (an mmaction2 config file and its ``_base_`` chain) says of the
    model as model config values: classes (cls_head.num_classes), the test input and views
    from its test_pipeline (a step the harness cannot reproduce is refused, naming it)."""
    cfg = load_config(model_cfg)
    p = pipeline(model_cfg, cfg)
    head = cfg.model.get("cls_head") or {}
    if "num_classes" not in head:
        raise ValueError(f"model.config={config_path(model_cfg)}: no model.cls_head.num_classes")
    return {"num_classes": int(head["num_classes"]),
            "views": {"clips": p.num_clips, "crops": p.crops},
            "input": {"num_frames": p.frames_per_view, "sampling_rate": p.frame_interval,
                      "side_size": p.short_side, "crop_size": p.crop_size,
                      "mean": [m / 255 for m in p.mean], "std": [s / 255 for s in p.std]}}


def checkpoint_class_names(module: nn.Module) -> list[str] | None:
    """The ``classes`` of the checkpoint's ``meta["dataset_meta"]`` where it has them (mmengine
    saves the data set's meta there), in output order; else None."""
    classes = (getattr(module, "dataset_meta", None) or {}).get("classes")
    return [str(c) for c in classes] if classes else None


def class_names(model_cfg) -> None:
    """mmaction2's Kinetics-400 ids are the alphabetical order of the class names (the
    harness's class-name file maps them); no names of its own."""
    return None


def resolve_weights(model_cfg) -> Path | None:
    """``model.weights``: a PATH; ``auto`` the torch hub cache's copy of the official file, or
    None (random init) when it is not there; ``pretrained`` the same but refusing random init;
    ``random`` None. Never downloads."""
    weights = str(model_cfg.get("weights", "auto"))
    if weights == "random":
        return None
    if weights not in ("auto", "pretrained"):
        path = Path(weights).expanduser()
        problem = file_problem(path)
        if problem:
            raise CheckpointError(f"model.weights={weights}: {problem}")
        return path
    url = official_url(model_cfg)
    cached = hub_cache_path(url) if url else None
    if cached is not None and cached.is_file():
        return cached
    if weights == "pretrained":
        raise CheckpointError(f"model.weights=pretrained: {cached or 'no checkpoint_url'} is not in "
                              "the torch hub cache (offline: put the file there or pass a PATH)")
    return None


def where_weights_go(model_cfg) -> str:
    """Where ``model.weights=auto`` looks for the checkpoint and how it gets there (run/models.py
    downloads the metafile URL into the torch hub cache first), for the line that refuses
    random weights on a real data set."""
    url = official_url(model_cfg)
    if not url:
        return "this model has no official checkpoint (no checkpoint_url)"
    return (f"it is read from the torch hub cache at {hub_cache_path(url)}, downloaded from {url} "
            "on first use")


def checkpoint_state(loaded):
    """The state dict inside an mmaction2 checkpoint: ``{"meta": ..., "state_dict": ...}``
    (mmengine's ``save_checkpoint``), keys ``backbone.*``, ``cls_head.*`` (a plain state dict
    is accepted too)."""
    if isinstance(loaded, dict) and "state_dict" in loaded:
        return loaded["state_dict"]
    return loaded


def load_checkpoint(module: nn.Module, path) -> None:
    """Load an mmaction2 checkpoint into ``module``, refusing in one line any missing,
    unexpected or misshapen key (mmengine's own ``load_checkpoint`` only logs them), and any
    object that needs code to unpickle (``weights_only``)."""
    path = Path(path)
    try:
        loaded = load_torch_file(path)
    except ValueError as err:  # not a checkpoint, damaged, or holding code: the file's one line
        raise CheckpointError(str(err)) from None
    state = checkpoint_state(loaded)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected {{'state_dict': ...}}, got {type(state).__name__}")
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("dataset_meta"), dict):
        # mmengine's runner keeps it on the model the same way (``model.dataset_meta``).
        module.dataset_meta = meta["dataset_meta"]
    # mmengine saves DataParallel/DDP-wrapped models' keys with a 'module.' prefix; its
    # load_checkpoint strips it, so does this.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} vs the model's {tuple(expected[k].shape)}"
                   for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))

    def show(keys):
        return ", ".join(keys[:3]) + (f" ... ({len(keys)} in all)" if len(keys) > 3 else "")

    problems = [f"{kind} [{show(keys)}]" for kind, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("wrong shapes", wrong)) if keys]
    if problems:
        raise CheckpointError(f"{path}: does not fit this model: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# The test pipeline as values.

@dataclass(frozen=True)
class Pipeline:
    """A config's ``test_pipeline`` and the model's ``data_preprocessor``, as values."""

    sampler: str  # SampleFrames | UniformSample
    clip_len: int
    frame_interval: int
    num_clips: int
    target_fps: float | None
    out_of_bound: str  # SampleFrames' out_of_bound_opt
    short_side: int  # Resize(-1, short_side)
    crop: str  # ThreeCrop | TenCrop | CenterCrop
    crop_size: int
    input_format: str  # FormatShape: NCTHW (3D) | NCHW (2D: frames as images)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # How a video's views combine: "softmax" (average_clips='prob': the mean of each view's
    # softmax) or "logits" (the softmax of the views' mean logits: TSN's AvgConsensus averages
    # the features of all frames of all crops before its linear classifier, which is the mean
    # of each view's logits; average_clips='score' ranks as that does).
    views_mean: str = "softmax"
    # SampleFrames(twice_sample=True), 2D only (TSM on SSv2): the segments' centres, then their
    # starts; each set of num_clips segments is one temporal view (the head's groups).
    twice_sample: bool = False

    @property
    def two_d(self) -> bool:
        return self.input_format == "NCHW"

    @property
    def crops(self) -> int:
        return {"ThreeCrop": 3, "TenCrop": 10, "CenterCrop": 1}[self.crop]

    @property
    def frames_per_view(self) -> int:
        """T of a view: clip_len (3D), or every sampled frame (2D: the segments)."""
        return self.num_clips * self.clip_len if self.two_d else self.clip_len

    @property
    def clips_per_video(self) -> int:
        """Temporal views: num_clips (3D), one (2D: the segments form one view), two for a 2D
        model under twice_sample (the centres' view and the starts' view)."""
        if self.two_d:
            return 2 if self.twice_sample else 1
        return self.num_clips

    @property
    def label(self) -> str:
        return f"{self.num_clips}x{self.crops}"


_SKIPPED = {"DecordInit", "DecordDecode", "PyAVInit", "PyAVDecode", "OpenCVInit", "OpenCVDecode",
            "PackActionInputs"}


def pipeline(model_cfg=None, cfg=None) -> Pipeline:
    """The model config's mmaction2 test pipeline (``cfg``: an already loaded mmengine Config).
    An unknown step is a one-line error naming it."""
    cfg = cfg if cfg is not None else load_config(model_cfg)
    where = str(_builder(model_cfg)["config"]) if model_cfg is not None else "config"
    values: dict = {"target_fps": None, "out_of_bound": "loop", "frame_interval": 1,
                    "input_format": "NCTHW"}
    for step in cfg.test_pipeline:
        kind = str(step["type"])
        if kind in _SKIPPED:
            continue
        if kind in ("SampleFrames", "UniformSample"):
            if not step.get("test_mode", False):
                raise ValueError(f"{where}: test_pipeline {kind} without test_mode=True")
            if step.get("temporal_jitter"):
                raise ValueError(f"{where}: test_pipeline {kind}: temporal_jitter is not "
                                 "supported")
            if step.get("twice_sample") and (kind != "SampleFrames" or int(step["clip_len"]) != 1):
                raise ValueError(f"{where}: test_pipeline {kind}: twice_sample is supported for "
                                 "2D models only (SampleFrames clip_len=1)")
            values.update(sampler=kind, clip_len=int(step["clip_len"]),
                          twice_sample=bool(step.get("twice_sample", False)),
                          num_clips=int(step.get("num_clips", 1)),
                          frame_interval=int(step.get("frame_interval", 1)),
                          target_fps=step.get("target_fps"),
                          out_of_bound=step.get("out_of_bound_opt", "loop"))
        elif kind == "Resize":
            scale = tuple(step["scale"])
            if not (step.get("keep_ratio", True) and len(scale) == 2 and min(scale) == -1
                    and step.get("interpolation", "bilinear") == "bilinear"):
                raise ValueError(f"{where}: test_pipeline Resize {dict(step)}: only "
                                 "Resize(scale=(-1, S)) bilinear is supported")
            values["short_side"] = int(max(scale))
        elif kind in ("ThreeCrop", "TenCrop", "CenterCrop"):
            size = step["crop_size"]
            if isinstance(size, (tuple, list)):
                if size[0] != size[1]:
                    raise ValueError(f"{where}: {kind} crop_size {size}: square crops only")
                size = size[0]
            values.update(crop=kind, crop_size=int(size))
        elif kind == "FormatShape":
            values["input_format"] = str(step["input_format"])
            if values["input_format"] not in ("NCTHW", "NCHW"):
                raise ValueError(f"{where}: FormatShape {values['input_format']}: not supported")
        else:
            raise ValueError(f"{where}: test_pipeline step {kind}: not supported by the mmaction2 "
                             "adapter")
    for key in ("sampler", "short_side", "crop"):
        if key not in values:
            raise ValueError(f"{where}: test_pipeline has no {key} step")
    head = cfg.model.get("cls_head", {})
    consensus_over_all = str(head.get("type")) == "TSNHead"  # num_segs = every frame it gets
    values["views_mean"] = ("logits" if consensus_over_all or head.get("average_clips") == "score"
                            else "softmax")
    pre = cfg.model.get("data_preprocessor", {})
    values["mean"] = tuple(float(v) for v in pre.get("mean", (0.0, 0.0, 0.0)))
    values["std"] = tuple(float(v) for v in pre.get("std", (1.0, 1.0, 1.0)))
    return Pipeline(**values)


# ---------------------------------------------------------------------------------------------
# Temporal sampling: frame indices, as SampleFrames / UniformSample compute them.

def frame_indices(total_frames: int, avg_fps: float | None, p: Pipeline) -> np.ndarray:
    """(num_clips, clip_len) int indices into the video's frames, as mmaction2 1.2.0's
    ``SampleFrames.transform`` (test mode) or ``UniformSample._get_sample_clips`` (test mode)
    compute them, the float arithmetic included (datasets/transforms/loading.py); under
    ``twice_sample`` (2D) 2 x num_clips rows: the segments' centres, then their starts."""
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    if p.sampler == "UniformSample":
        seg_size = float(total_frames - 1) / p.clip_len
        duration = seg_size / (p.num_clips + 1)
        inds = [int(np.round(seg_size * i)) + int(duration * (k + 1))
                for k in range(p.num_clips) for i in range(p.clip_len)]
        return np.array(inds).astype(np.int32).reshape(p.num_clips, p.clip_len)
    ratio = 1.0 if p.target_fps is None or not avg_fps else avg_fps / p.target_fps
    if p.target_fps is not None:
        ori_clip_len = np.maximum(1, p.clip_len * p.frame_interval * ratio)
    else:
        ori_clip_len = (p.clip_len - 1) * p.frame_interval + 1
    if p.clip_len == 1:  # 2D: one frame at the middle of each of num_clips segments
        avg_interval = total_frames / float(p.num_clips)
        starts = np.arange(p.num_clips) * avg_interval
        offsets = starts + avg_interval / 2.0
        if p.twice_sample:  # then one at the start of each (float offsets, truncated below)
            offsets = np.concatenate([offsets, starts])
    else:
        max_offset = max(total_frames - ori_clip_len, 0)
        if p.num_clips > 1:
            if p.target_fps is not None:
                offsets = np.arange(p.num_clips) * np.floor(max_offset / float(p.num_clips - 1))
            else:
                offsets = np.round(np.arange(p.num_clips) * (max_offset / float(p.num_clips - 1)))
        else:
            offsets = np.array([max_offset // 2])
    if p.target_fps:
        inds = offsets[:, None] + np.linspace(0, ori_clip_len - 1, p.clip_len).astype(np.int32)
    else:
        inds = np.concatenate(offsets[:, None] + np.arange(p.clip_len)[None, :] * p.frame_interval)
    inds = inds.reshape((-1, p.clip_len))
    if p.out_of_bound == "loop":
        inds = np.mod(inds, total_frames)
    else:  # repeat_last
        safe = inds < total_frames
        last = np.max(safe * inds, axis=1)
        inds = safe * inds + ((1 - safe).T * last).T
    return np.concatenate(inds).astype(np.int32).reshape(-1, p.clip_len)


def _fps(video) -> float | None:
    return float(video.average_fps) if video.average_fps else None


def clip_windows(video, spec, clips: int | None = None, timing: str = "mmaction2",
                 frame_rate=None, clip_len=None) -> list[list[int]]:
    """Each view's frame indices into ``video.frames``: ``num_clips`` clips of ``clip_len``
    (3D), or one window of all ``num_clips`` segment frames (2D; two under ``twice_sample``:
    the centres', then the starts', as mmaction2 orders them). ``spec``: a ``Pipeline`` or
    a model's ``Spec`` (``pipeline_of``). ``clips``: another clip count than the config's
    (None: the config's). Frames are counted and indexed in the decoder's order
    (``decoder_order``), as mmaction2's decord and PyAV backends index them. (The registry's
    call passes a clip duration, which says nothing of a config's sampler: the run cuts
    mmaction2 clips with ``cut_clips``.)"""
    if not isinstance(spec, (Pipeline, InputSpec)):
        raise ValueError("protocol.clips=mmaction2: the clips follow a model's test_pipeline; "
                         "pass its Pipeline or spec, not a clip duration")
    spec = pipeline_of(spec)
    if timing not in TIMINGS:
        raise ValueError(f"protocol.clips: {timing!r} is not one of {TIMINGS}")
    if clips is not None and clips != spec.clips_per_video:
        if spec.two_d:
            raise ValueError(f"views.clips={clips}: a 2D mmaction2 model's view holds all "
                             f"{spec.num_clips} segments; clips must be {spec.clips_per_video}")
        spec = replace(spec, num_clips=int(clips))
    order = decoder_order(video)
    inds = frame_indices(len(order), _fps(video), spec)
    windows = [[order[i] for i in row] for row in inds.tolist()]
    if spec.two_d:  # each view: num_clips consecutive segment frames (the head's groups)
        flat = [i for row in windows for i in row]
        n = len(flat) // spec.clips_per_video
        return [flat[k * n:(k + 1) * n] for k in range(spec.clips_per_video)]
    return windows


def decoder_order(video) -> list[int]:
    """Index into ``video.frames`` (presentation order) of each frame in the order the decoder
    gave them: mmaction2's frame i is the decoder's i-th frame under both of its backends
    (decord's ``VideoReader``, and ``PyAVDecode``, which iterates ``container.decode``). The two
    orders differ where the timestamps are out of order (packed B-frames in AVI: the decoder
    outputs pts 1, 2, 4, 3, ...). A repeated timestamp keeps the frame ``decode_video`` kept."""
    where = {p: i for i, p in enumerate(video.pts)}
    return [where[p] for p in video.decoded_pts]


# ---------------------------------------------------------------------------------------------
# Spatial: Resize(-1, S) through OpenCV as mmcv.imresize does, then the crops.

def resized_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    """(H, W) as mmcv.rescale_size((w, h), (inf, S)) computes it: factor S / short side, each
    side int(x * factor + 0.5)."""
    factor = min(float("inf"), short_side / min(h, w))
    return int(h * float(factor) + 0.5), int(w * float(factor) + 0.5)


def resize(frame: np.ndarray, short_side: int) -> np.ndarray:
    """One uint8 (H, W, 3) frame, as mmcv.imresize(img, (w, h), 'bilinear') with the cv2 backend:
    cv2.resize with INTER_LINEAR (a frame already of that size is resized too, as mmcv does:
    cv2 then returns it unchanged)."""
    import cv2

    h, w = resized_size(*frame.shape[:2], short_side)
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)


def crop_boxes(h: int, w: int, p: Pipeline) -> list[tuple[int, int, bool]]:
    """(top, left, flipped) of each crop, in mmaction2's order: ThreeCrop left, right, middle
    (top, bottom, middle for a tall frame; steps (L - c) // 2); TenCrop the four corners and the
    centre at steps (L - c) // 4, each followed by its horizontal flip; CenterCrop floor offsets."""
    c = p.crop_size
    if c > h or c > w:
        raise ValueError(f"frames of {h}x{w} after Resize are smaller than the {c} crop")
    if p.crop == "CenterCrop":
        return [((h - c) // 2, (w - c) // 2, False)]
    if p.crop == "ThreeCrop":
        if c == h:
            s = (w - c) // 2
            return [(0, 0, False), (0, 2 * s, False), (0, s, False)]
        if c == w:
            s = (h - c) // 2
            return [(0, 0, False), (2 * s, 0, False), (s, 0, False)]
        raise ValueError(f"ThreeCrop {c} needs a side of {c} after Resize, got {h}x{w}")
    ws, hs = (w - c) // 4, (h - c) // 4
    out = []
    for top, left in ((0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)):
        out += [(top, left, False), (top, left, True)]
    return out


def uint8_views(video, windows: list[list[int]], p: Pipeline) -> torch.Tensor:
    """uint8 (views, C, T, crop, crop), view-major: clip 0's crops (mmaction2's crop order),
    then clip 1's, ... Each distinct frame is converted to RGB and resized once."""
    unique = sorted({i for w in windows for i in w})
    rgb = video.rgb(unique).numpy()
    resized = {i: resize(rgb[k], p.short_side) for k, i in enumerate(unique)}
    h, w = next(iter(resized.values())).shape[:2]
    boxes = crop_boxes(h, w, p)
    c, t = p.crop_size, len(windows[0])
    out = torch.empty((len(windows) * len(boxes), 3, t, c, c), dtype=torch.uint8)
    for v, window in enumerate(windows):
        clip = torch.from_numpy(np.stack([resized[i] for i in window]))  # (T, H, W, 3)
        for j, (top, left, flip) in enumerate(boxes):
            part = clip[:, top:top + c, left:left + c]
            if flip:
                part = part.flip(2)
            out[v * len(boxes) + j].copy_(part.permute(3, 0, 1, 2))
    return out


def normalise(views: torch.Tensor, p: Pipeline) -> torch.Tensor:
    """float32 (x - mean) / std per channel, as ActionDataPreprocessor computes it."""
    shape = (1, -1, 1, 1, 1)
    mean = torch.tensor(p.mean, dtype=torch.float32).view(shape)
    std = torch.tensor(p.std, dtype=torch.float32).view(shape)
    return (views.float() - mean) / std


def video_views(video, p: Pipeline, clips: int | None = None) -> torch.Tensor:
    """float (views, C, T, crop, crop) of a decoded video under the model's own test pipeline:
    frames, resize, crops, normalisation (in one go; the run splits it into ``cut_clips`` in a
    loader worker and ``views`` on the device)."""
    return normalise(uint8_views(video, clip_windows(video, p, clips), p), p)


def _inputs(views: torch.Tensor, videos: int, p: Pipeline) -> torch.Tensor:
    """The recognizer's batch: (videos, views, C, T, H, W) for 3D; (videos, views * T, C, H, W)
    for 2D, each view's T segments consecutive (TSM's head groups them; TSN averages all)."""
    b, c, t, h, w = views.shape
    if p.two_d:
        return views.permute(0, 2, 1, 3, 4).reshape(videos, (b // videos) * t, c, h, w)
    return views.reshape(videos, b // videos, c, t, h, w)


def probabilities(module: nn.Module, views: torch.Tensor, views_per_video: int,
                  p: Pipeline) -> torch.Tensor:
    """(videos, classes): the recognizer's own test path (``predict`` without data samples):
    ``extract_feat(test_mode=True)``, the head, then the head's ``average_clip`` (the config's
    ``average_clips``, 'prob' = mean of softmax over views). TSN's ``AvgConsensus`` averages the
    features of all 25 x 10 frames before its classifier; TSM's head averages each view's 8
    segments' scores (twice_sample: 2 views per crop); all as mmaction2 does."""
    videos = views.shape[0] // views_per_video
    with torch.no_grad():
        feats, kwargs = module.extract_feat(_inputs(views, videos, p), test_mode=True)
        scores = module.cls_head(feats, **kwargs)
        return module.cls_head.average_clip(scores, num_segs=scores.shape[0] // videos)


# ---------------------------------------------------------------------------------------------
# The registry's adapter API (benchmark/frameworks/__init__.py): what the run calls. A view in
# the run is (C, T, H, W) as everywhere; the recognizer's forward takes a batch of them
# (``apply_head``). The loader worker cuts the frames and resizes them with OpenCV
# (``cut_clips``); the device crops and normalises (``views``).

CROPS = {1: "CenterCrop", 3: "ThreeCrop", 10: "TenCrop"}  # views.crops -> mmaction2's crop
# eval.channels_last stays on: run/device.py's channels_last_3d turns the 3D models' 5-D weights
# NDHWC and leaves the rank-4 buffers and 2D weights be. mmaction2's own loop gets NDHWC input by
# chance (its data preprocessor permutes (T, H, W, C) frames): the same layout, the same speed
# (X3D-M, CPU, 30 views: 17 s either way; contiguous NCDHW input 30 s).


@dataclass(frozen=True)
class Spec(InputSpec):
    """A model's ``InputSpec`` with its config's test pipeline (``input_spec``): the run passes
    it to the loader and the views, so that clips and crops follow the config."""

    pipeline: Pipeline | None = None

    @property
    def views_mean(self) -> str:
        return self.pipeline.views_mean


def input_spec(model_cfg) -> Spec:
    """The run's spec of an mmaction2 model: ``model.input`` (what tables and FLOPs read)
    beside the config's test pipeline, which it must agree with (a one-line error naming the
    key where it does not)."""
    values = {k: tuple(v) if isinstance(v, (list, tuple)) else v
              for k, v in plain(model_cfg["input"]).items()}
    p = pipeline(model_cfg)
    pairs = (("num_frames", p.frames_per_view), ("side_size", p.short_side),
             ("crop_size", p.crop_size))
    for key, want in pairs:
        if int(values[key]) != want:
            raise ValueError(f"model.input.{key}={values[key]} but the mmaction2 config's "
                             f"test_pipeline gives {want} ({_builder(model_cfg)['config']})")
    for key, have, want in (("mean", values["mean"], p.mean), ("std", values["std"], p.std)):
        if not np.allclose(np.array(have, dtype=float) * 255, want, atol=1e-3):
            raise ValueError(f"model.input.{key}={list(have)} is not the config's "
                             f"data_preprocessor {key} {list(want)} / 255")
    return Spec(**values, pipeline=p)


def default_pipeline(spec) -> Pipeline:
    """Protocol ``mmaction2`` for a model without an mmaction2 config (the toy SlowFast of
    ``make protocols``): the SlowFast R50 config's test_pipeline (SampleFrames(clip_len,
    frame_interval, test_mode=True), Resize(-1, S), ThreeCrop; conf/protocol/mmaction2.yaml) at
    the model's own ``model.input`` sizes, normalised by its own mean and std."""
    return Pipeline(sampler="SampleFrames", clip_len=int(spec.num_frames),
                    frame_interval=int(spec.sampling_rate), num_clips=1, target_fps=None,
                    out_of_bound="loop", short_side=int(spec.side_size), crop="ThreeCrop",
                    crop_size=int(spec.crop_size), input_format="NCTHW",
                    mean=tuple(255.0 * m for m in spec.mean),
                    std=tuple(255.0 * s for s in spec.std))


def pipeline_of(spec) -> Pipeline:
    """The pipeline a spec carries (an mmaction2 model's), else ``default_pipeline``."""
    if isinstance(spec, Pipeline):
        return spec
    return getattr(spec, "pipeline", None) or default_pipeline(spec)


def segment_views(spec) -> int | None:
    """A 2D model's (TSN, TSM) clips are one view's segments, and a video has the pipeline's
    ``clips_per_video`` temporal views (2 under twice_sample); a 3D model's clips are views."""
    p = pipeline_of(spec)
    return p.clips_per_video if p.two_d else None


def pts_windows(time_base, start_pts, end_pts, clip_duration, clips, timing) -> None:
    """None: SampleFrames counts decoded frames (the video is decoded whole)."""
    return None


def clips_problem(spec, clips: int, timing: str = "mmaction2") -> str | None:
    """A ``views.clips`` that fails every video, known from the config alone (check_settings
    asks before any work): a 2D model's view is all its config's segments."""
    p = pipeline_of(spec)
    if p.two_d and clips != p.num_clips:
        return (f"views.clips={clips}: this 2D model's view is its {p.num_clips} segments; "
                f"views.clips must be {p.num_clips}")
    return None


def cut_clips(video, spec, clips: int, timing: str, fault: str | None = None) -> torch.Tensor:
    """uint8 (views, C, T, H', W'): each view's frames (``clip_windows``) resized as
    ``Resize(-1, S)`` does (OpenCV, each distinct frame once), in the loader worker.
    ``clips``: views.clips: the clips of a 3D model, the segments of a 2D one (all of which
    form one view; its config's count, which its head expects)."""
    problem = clips_problem(spec, clips, timing)
    if problem:
        raise ValueError(problem)
    p = pipeline_of(spec)
    windows = clip_windows(video, p, None if p.two_d else clips, timing)
    if fault == "clips_from_start":
        windows = [windows[0]] * len(windows)
    unique = sorted({i for w in windows for i in w})
    rgb = video.rgb(unique).numpy()
    resized = {i: resize(rgb[k], p.short_side) for k, i in enumerate(unique)}
    out = torch.from_numpy(np.stack([np.stack([resized[i] for i in w]) for w in windows]))
    return faulted(out.permute(0, 4, 1, 2, 3), fault)  # (views, C, T, H, W)


def views(clips: torch.Tensor, spec, crops: int, fault: str | None = None,
          memory_format: torch.memory_format = torch.contiguous_format,
          spatial: str | None = None) -> list[torch.Tensor]:
    """Pathway tensors (clips * crops, C, T, crop, crop), clip-major, from ``cut_clips``'s
    resized uint8 clips: ``views.crops`` 1, 3 or 10 as CenterCrop, ThreeCrop, TenCrop
    (``crop_boxes``, mmaction2's order), then (x - mean) / std on the 0-255 values, as
    ActionDataPreprocessor does; SlowFast's pathways for a pytorchvideo SlowFast.
    ``memory_format``: the views' layout (channels_last_3d for a channels-last model)."""
    p = replace(pipeline_of(spec), crop=CROPS[crops])
    n, c, t, h, w = clips.shape
    boxes = crop_boxes(h, w, p)
    if fault == "centre_crop_only":
        boxes = [((h - p.crop_size) // 2, (w - p.crop_size) // 2, False)] * len(boxes)
    s = p.crop_size
    out = torch.empty((n * len(boxes), c, t, s, s), dtype=torch.float32, device=clips.device,
                      memory_format=memory_format)  # channels_last_3d: a channels-last model's
    for i in range(n):
        for j, (top, left, flip) in enumerate(boxes):
            part = clips[i, :, :, top:top + s, left:left + s]
            out[i * len(boxes) + j].copy_(part.flip(-1) if flip else part)
    mean = torch.tensor(p.mean, dtype=torch.float32, device=out.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(p.std, dtype=torch.float32, device=out.device).view(1, -1, 1, 1, 1)
    out.sub_(mean).div_(std)
    return pack_pathways(out, getattr(spec, "alpha", None))


def setting_problems(protocol, crops: int, model_input) -> list[tuple[str, str]]:
    """(key, message): ThreeCrop needs the crop to span the resized short side."""
    if crops not in CROPS:
        return [("views.crops", f"the {protocol.name} protocol takes 1, 3 or 10 crops "
                                f"(CenterCrop, ThreeCrop, TenCrop), got {crops}")]
    if crops == 3 and int(model_input.crop_size) != int(model_input.side_size):
        return [("views.crops", f"3 (ThreeCrop) needs model.input.crop_size = side_size, got "
                                f"{model_input.crop_size} and {model_input.side_size}: use 1 or 10")]
    return []


def _view_forward(self, *args, **kwargs) -> torch.Tensor:
    """(B, classes) scores of B views (B, C, T, H, W), each as the recognizer's test path scores
    one view: ``extract_feat(test_mode=True)`` and the head (a 2D model's view is its T frames
    as images, which TSN's consensus averages and TSM's groups of ``num_segments`` shift).
    mmaction2's own keyword calls (``test_step``: inputs=, data_samples=, mode=) go to its
    forward."""
    if kwargs:
        return type(self).forward(self, *args, **kwargs)
    (views,) = args
    if self._two_d:  # (B, T, C, H, W), which the recognizer views as B * T images
        x = views.transpose(1, 2)
        if not views.is_contiguous(memory_format=torch.channels_last_3d):
            x = x.contiguous()  # NCDHW views: the recognizer's view() needs a copy
        # channels-last views stay NHWC images, as mmaction2's own loop gives its backbone
    else:
        x = views.unsqueeze(1)
    feats, kwargs = self.extract_feat(x, test_mode=True)
    return self.cls_head(feats, **kwargs)


def apply_head(module: nn.Module, head: str) -> bool:
    """mmaction2's heads pool the whole crop before the classifier (one location): the run's
    forward becomes ``_view_forward`` (views in, scores out; parameter names unchanged), and
    the config's ``average_clips`` combines the views (``Spec.views_mean``)."""
    if head not in ("pooled_logits", "average_clips"):
        raise ValueError(f"protocol.head={head}: mmaction2's recognizers take their config's "
                         "head (pooled_logits)")
    import_mmaction()
    from mmaction.models import Recognizer2D

    module._two_d = isinstance(module, Recognizer2D)
    module.forward = types.MethodType(_view_forward, module)
    return False


# ---------------------------------------------------------------------------------------------
# Cost.

FLOP_CONVENTION = ("mmengine get_model_complexity_info of extract_feat (backbone, no head; one "
                   "per multiply-add), as mmaction2's tools/analysis_tools/get_flops.py")


class _Features(nn.Module):
    """forward(x) = the recognizer's ``extract_feat(x)`` features, every pathway's (SlowFast
    returns two: keeping one would let the tracer drop the other's last stage), as get_flops.py
    sets ``model.forward = model.extract_feat``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.extract_feat(x)[0]


def example(p: Pipeline, size: int | None = None, batch: int = 1) -> torch.Tensor:
    """A random one-view input in the recognizer's layout; ``size``: the crop (default the
    pipeline's)."""
    s = size or p.crop_size
    if p.two_d:
        return torch.randn(batch, p.frames_per_view, 3, s, s)
    return torch.randn(batch, 1, 3, p.clip_len, s, s)


def gflops(module: nn.Module, example: torch.Tensor) -> float:
    """GFLOPs of one view as mmaction2's get_flops.py counts them (``FLOP_CONVENTION``): the
    metafiles' figures (SlowFast R50 4x16: 36.33 at 256 px, the metafile's 36.3)."""
    from mmengine.analysis import FlopAnalyzer

    with torch.no_grad():
        analyzer = FlopAnalyzer(_Features(module).eval(), (example,))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analyzer.total() / 1e9


def framework_gflops(module: nn.Module, spec) -> float:
    """``gflops`` of one view at the test crop (``make flops``'s framework column)."""
    return gflops(module, example(pipeline_of(spec)))


def num_params(module: nn.Module) -> int:
    """Parameters of the recognizer (the data preprocessor holds only buffers)."""
    return sum(q.numel() for q in module.parameters())


# ---------------------------------------------------------------------------------------------
# The reference: mmaction2's own test pipeline (proofs and the bench row).

def reference_pipeline(model_cfg=None, cfg=None, clips: int | None = None):
    """mmaction2's ``Compose`` of the config's ``test_pipeline`` (its decord backend, as the
    configs name it); call it with ``reference_input(path)``."""
    import_mmaction()
    from mmengine.dataset import Compose

    cfg = cfg if cfg is not None else load_config(model_cfg)
    steps = [dict(s) for s in cfg.test_pipeline]
    if clips is not None:
        for s in steps:
            if s["type"] in ("SampleFrames", "UniformSample"):
                s["num_clips"] = int(clips)
    return Compose(steps)


def reference_video(module: nn.Module, model_cfg, path, clips: int | None = None
                    ) -> tuple[float, float, torch.Tensor]:
    """(data seconds, model seconds, probabilities) of one video through mmaction2's own test
    loop: its Compose of the config's test_pipeline (decord), then ``model.test_step`` (the
    data preprocessor, the recognizer's predict, ``average_clip``); the bench's reference."""
    import time

    from mmengine.dataset import pseudo_collate

    start = time.perf_counter()
    data = pseudo_collate([reference_pipeline(model_cfg, clips=clips)(reference_input(path))])
    mid = time.perf_counter()
    with torch.no_grad():
        probs = module.test_step(data)[0].pred_score
    return mid - start, time.perf_counter() - mid, probs.float().cpu()


def reference_input(path) -> dict:
    """What VideoDataset passes the pipeline for one video (start_index 0, RGB)."""
    return dict(filename=str(path), label=-1, start_index=0, modality="RGB")


class Mmaction2Adapter(Adapter):
    """The mmaction2 adapter (frameworks/api.py types each member): the functions above."""

    NAME, TIMINGS, SPATIALS, CHECK_HASH, HEADS = NAME, TIMINGS, SPATIALS, CHECK_HASH, HEADS
    CHECKS_CROPS = True  # setting_problems: 1, 3 or 10 (CROPS)
    LOADS_OWN_WEIGHTS = True  # resolve_weights, and build loads the file strictly
    CUTS_CLIPS = True  # cut_clips: its config's sampler and OpenCV resize, in the loader
    OWN_TEST_LOOP = True  # reference_video: its Compose + test_step
    EXTRA = EXTRA
    version = staticmethod(version)
    build = staticmethod(build)
    checkpoint_state = staticmethod(checkpoint_state)
    official_url = staticmethod(official_url)
    class_names = staticmethod(class_names)
    pts_windows = staticmethod(pts_windows)
    views = staticmethod(views)
    setting_problems = staticmethod(setting_problems)
    apply_head = staticmethod(apply_head)
    input_spec = staticmethod(input_spec)
    resolve_weights = staticmethod(resolve_weights)
    where_weights_go = staticmethod(where_weights_go)
    cut_clips = staticmethod(cut_clips)
    segment_views = staticmethod(segment_views)
    framework_gflops = staticmethod(framework_gflops)
    reference_video = staticmethod(reference_video)
    checkpoint_class_names = staticmethod(checkpoint_class_names)
    source_values = staticmethod(source_values)

    def clip_windows(self, video, clip_duration, clips, timing, frame_rate=None, clip_len=None):
        """Refused: a clip duration says nothing of a config's sampler, so the run cuts
        mmaction2's clips with ``cut_clips`` (``CUTS_CLIPS``); the module's ``clip_windows``
        takes the model's pipeline or spec instead."""
        raise ValueError("protocol.clips=mmaction2: the clips follow a model's test_pipeline; "
                         "pass its Pipeline or spec, not a clip duration")

    def clips_problem(self, spec, clips, timing):
        return clips_problem(spec, clips, timing)

    def rewrites(self) -> dict:
        """None: its convolutions are mmcv's own Conv3d class, which no rewrite knows."""
        return {}
