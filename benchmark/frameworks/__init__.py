"""Frameworks: one adapter per ecosystem (``benchmark/frameworks/<name>``), found by name here,
above the shared view code (views.py, clips.py) they all use.

An adapter is the only module that imports its framework's own package; adapters never import
each other. Each offers the same module-level API (docs/architecture.md, "Adding a framework"):
``NAME``, ``version()``, ``build(model_cfg, class_names=None)``, ``checkpoint_state(loaded)``,
``official_url(model_cfg)``, ``CHECK_HASH``, ``class_names(model_cfg)``, ``TIMINGS`` +
``clip_windows`` + ``pts_windows``, ``SPATIALS`` + ``views``, ``setting_problems``,
``apply_head``; optionally ``HEADS`` (its protocol heads, else clips.HEADS), ``resolve_weights``
(a framework that loads its own checkpoint directories; then ``where_weights_go``, said where
``model.weights=auto`` is refused random weights), ``example_views`` and
``counted_as`` (another input layout; how its FLOPs are counted: results/cost.py's
``adapter_flop_counts`` reads both), ``CHANNELS_LAST``, ``OWN_PROTOCOLS_ONLY``, ``MAX_CLIPS``
(timing -> the most clips it takes), ``input_spec(model_cfg)`` (a spec that carries its config's
own test pipeline), ``cut_clips(video, spec, clips, timing, fault)`` (a timing that cuts and
resizes its clips itself), ``CROPS`` (the crop counts its protocol takes; else
views.CROP_INDICES's), ``EXTRA`` (an optional framework's packages and their install: common.Extra),
``clips_problem(spec, clips, timing)`` (a clip count its timing cannot cut for this model), ``framework_gflops``, ``reference_video`` and ``reference_views`` (its own FLOP counter,
test loop, card pipeline). (``eval.fuse``'s rewrites: frameworks/pytorchvideo/fuse.py, which the run
applies to any model: its stem rewrite is generic, its folds match pytorchvideo's blocks.)
"""

from __future__ import annotations

import importlib
from types import ModuleType

KNOWN = ("pytorchvideo", "torchvision", "transformers", "mmaction2")


def get(name: str) -> ModuleType:
    """The adapter module of framework ``name``; an unknown name is a one-line error naming it."""
    if name not in KNOWN:
        raise ValueError(f"framework: must be one of {', '.join(KNOWN)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def owner(kind: str, value: str) -> ModuleType:
    """The adapter whose ``kind`` (``TIMINGS`` or ``SPATIALS``) holds ``value``: each protocol
    step's name is one framework's."""
    for name in KNOWN:
        adapter = get(name)
        if value in getattr(adapter, kind):
            return adapter
    raise ValueError(f"no framework has the {kind.lower()[:-1]} {value!r}")


def names(kind: str) -> tuple[str, ...]:
    """Every adapter's ``kind`` values, in registry order (the accepted protocol choices)."""
    return tuple(v for name in KNOWN for v in getattr(get(name), kind))


def not_installed(name: str) -> str | None:
    """The one line naming what to install where framework ``name`` is an optional extra whose
    packages are not here (the core install runs pytorchvideo and torchvision alone); None
    where they are, or the framework is core."""
    extra = getattr(get(name), "EXTRA", None)
    missing = extra.missing() if extra is not None else []
    return extra.line(missing) if missing else None
