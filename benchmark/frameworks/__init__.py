"""Frameworks: one adapter per ecosystem (``benchmark/frameworks/<name>``), found by name here,
above the shared view code (views.py, clips.py, fuse.py) they all use.

An adapter is a subclass of ``api.Adapter`` (every member typed there, the optional ones with
their one default), the only module that imports its framework's own package; adapters never
import each other. ``get(name)`` returns its instance; ``protocol_from_config`` checks a
protocol's choices against its adapter's, and ``timing``/``spatial`` resolve its ``clips`` and
``spatial`` to the adapter's steps once, so the shared code below never asks which framework
owns a name.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

import torch

from benchmark.frameworks.clips import COMBINES, PROTOCOL_PRECISIONS, Protocol, Timing
from benchmark.frameworks.views import Spatial

if TYPE_CHECKING:
    from benchmark.frameworks.api import Adapter

# name -> the adapter class in benchmark/frameworks/<name> (imported on first use: a core
# install runs without the optional frameworks).
ADAPTERS = {
    "pytorchvideo": "PytorchvideoAdapter",
    "torchvision": "TorchvisionAdapter",
    "transformers": "TransformersAdapter",
    "mmaction2": "Mmaction2Adapter",
}
KNOWN = tuple(ADAPTERS)


@functools.lru_cache(maxsize=None)
def get(name: str) -> Adapter:
    """The adapter of framework ``name``; an unknown name is a one-line error naming it."""
    from benchmark.frameworks.api import Adapter

    if name not in ADAPTERS:
        raise ValueError(f"framework: must be one of {', '.join(KNOWN)}, got {name!r}")
    cls = getattr(importlib.import_module(f"{__name__}.{name}"), ADAPTERS[name])
    assert issubclass(cls, Adapter) and cls.NAME == name, f"{cls} is not {name}'s Adapter"
    return cls()


def owner(kind: str, value: str) -> Adapter:
    """The adapter whose ``kind`` (``TIMINGS`` or ``SPATIALS``) holds ``value``: each protocol
    step's name is one framework's."""
    for name in KNOWN:
        adapter = get(name)
        if value in (adapter.TIMINGS if kind == "TIMINGS" else adapter.SPATIALS):
            return adapter
    raise ValueError(f"no framework has the {kind.lower()[:-1]} {value!r}")


def timing(name: str) -> Timing:
    """The clip timing ``name`` (a ``protocol.clips``) as its adapter's steps, ``name`` bound."""
    adapter = owner("TIMINGS", name)

    def clip_windows(video, clip_duration, clips, frame_rate=None, clip_len=None):
        return adapter.clip_windows(video, clip_duration, clips, name, frame_rate, clip_len)

    def pts_windows(time_base, start_pts, end_pts, clip_duration, clips):
        return adapter.pts_windows(time_base, start_pts, end_pts, clip_duration, clips, name)

    def cut_clips(video, spec, clips, fault=None):
        return adapter.cut_clips(video, spec, clips, name, fault)

    return Timing(name, clip_windows, pts_windows, cut_clips if adapter.CUTS_CLIPS else None)


def spatial(name: str) -> Spatial:
    """The spatial step ``name`` (a ``protocol.spatial``) as its adapter's ``views``."""
    adapter = owner("SPATIALS", name)

    def views(clips, spec, crops, fault=None, memory_format=torch.contiguous_format):
        return adapter.views(clips, spec, crops, fault, memory_format, name)

    return Spatial(name, views)


def protocol_from_config(cfg) -> Protocol:
    """The ``protocol`` config group as a value; an unknown choice names its key. ``clips`` and
    ``spatial`` are the named framework's (its adapter's ``TIMINGS`` and ``SPATIALS``)."""
    protocol = Protocol(str(cfg.name), str(cfg.clips), str(cfg.head), str(cfg.combine),
                        str(cfg.spatial), str(cfg.framework),
                        None if cfg.get("precision") is None else str(cfg.precision))
    if protocol.precision is not None and protocol.precision not in PROTOCOL_PRECISIONS:
        raise ValueError(f"protocol.precision: must be one of {', '.join(PROTOCOL_PRECISIONS)}, "
                         f"got {protocol.precision}")
    try:
        adapter = get(protocol.framework)
    except ValueError as err:
        raise ValueError(f"protocol.{err}") from None
    for key, value, allowed in (("clips", protocol.clips, adapter.TIMINGS),
                                ("head", protocol.head, adapter.HEADS),
                                ("combine", protocol.combine, COMBINES),
                                ("spatial", protocol.spatial, adapter.SPATIALS)):
        if value not in allowed:
            raise ValueError(f"protocol.{key}: must be one of {', '.join(allowed)}, got {value}")
    return protocol


def not_installed(name: str) -> str | None:
    """The one line naming what to install where framework ``name`` is an optional extra whose
    packages are not here (the core install runs pytorchvideo and torchvision alone); None
    where they are, or the framework is core."""
    extra = get(name).EXTRA
    missing = extra.missing() if extra is not None else []
    return extra.line(missing) if missing else None
