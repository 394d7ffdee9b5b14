"""What a framework adapter is: one abstract base class, every member typed, each optional one
with its single default.

The run talks to a framework only through an ``Adapter`` instance (``frameworks.get(name)``):
required members are abstract (a subclass that lacks one cannot be instantiated, and
``__init_subclass__`` refuses a missing class constant); optional ones are defined here with the
default every adapter without its own gets. Where an optional method is used only by some
frameworks, a named boolean says whether the adapter has it (``LOADS_OWN_WEIGHTS``,
``CUTS_CLIPS``, ``OWN_TEST_LOOP``...), so no caller asks whether an attribute exists.
tests/test_adapters.py walks every registered adapter through the whole interface, signatures
included. The smallest complete adapter is torchvision's (frameworks/torchvision.py); the habit
is lm-evaluation-harness's ``LM`` base class.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, ContextManager

import torch
from torch import nn

from benchmark.data.decode import DecodedVideo
from benchmark.frameworks import clips as clips_module
from benchmark.frameworks.clips import Protocol, Window
from benchmark.frameworks.common import Extra
from benchmark.frameworks.fuse import pad_stem_channels
from benchmark.frameworks.views import InputSpec

# The class constants every adapter sets (``__init_subclass__`` checks them).
REQUIRED_CONSTANTS = ("NAME", "TIMINGS", "SPATIALS", "CHECK_HASH")


class Adapter(abc.ABC):
    """One framework: its models, checkpoints, test protocols and costs (docs/architecture.md,
    "Adding a framework")."""

    # ---- required constants -----------------------------------------------------------------
    NAME: ClassVar[str]  # the ``framework:`` value in conf/model and conf/protocol
    TIMINGS: ClassVar[tuple[str, ...]]  # its ``protocol.clips`` choices
    SPATIALS: ClassVar[tuple[str, ...]]  # its ``protocol.spatial`` choices
    CHECK_HASH: ClassVar[bool]  # its official URLs carry a SHA-256 prefix torch.hub checks

    # ---- optional constants, with their one default ------------------------------------------
    HEADS: ClassVar[tuple[str, ...]] = clips_module.HEADS  # its ``protocol.head`` choices
    # Its models have an NDHWC layout to use; False: ``eval.channels_last`` is turned off (and
    # recorded off) for them.
    CHANNELS_LAST: ClassVar[bool] = True
    # Its models run only under its own protocols and its protocols only its models
    # (check_settings refuses a mix; ``make flops``/``make bench`` build its models with their
    # protocol's head and the data set's class names).
    OWN_PROTOCOLS_ONLY: ClassVar[bool] = False
    # ``setting_problems`` checks ``views.crops`` itself; False: the run allows 1, 2 or 3
    # (UniformCropVideo's aug_index).
    CHECKS_CROPS: ClassVar[bool] = False
    # timing -> the most clips it takes (check_settings refuses more).
    MAX_CLIPS: ClassVar[Mapping[str, int]] = MappingProxyType({})
    # ``resolve_weights`` finds its checkpoints and ``build`` loads them itself, strictly;
    # False: run/models.py resolves ``official_url`` and loads ``checkpoint_state`` strictly.
    LOADS_OWN_WEIGHTS: ClassVar[bool] = False
    # ``cut_clips`` cuts (and resizes) its timings' clips in the loader worker; False: the
    # shared views.py cuts ``clip_windows``'s frames.
    CUTS_CLIPS: ClassVar[bool] = False
    # The attention conventions ``counted_as`` can count its models in (empty: counted as
    # they run; results/cost.py's ``adapter_flop_counts``).
    FLOP_CONVENTIONS: ClassVar[Mapping[str, str]] = MappingProxyType({})
    # ``reference_video`` is its own test loop, ``make bench``'s reference row.
    OWN_TEST_LOOP: ClassVar[bool] = False
    # An optional framework's packages and their install (None: in the core install); nothing
    # of it is imported until one of its models is asked for.
    EXTRA: ClassVar[Extra | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [name for name in REQUIRED_CONSTANTS if not hasattr(cls, name)]
        if missing:
            raise TypeError(f"{cls.__name__}: an adapter must set {', '.join(missing)}")

    # ---- required: models and weights -------------------------------------------------------
    @abc.abstractmethod
    def version(self) -> dict[str, str]:
        """Package -> version, for a run's metrics (every registered framework's is recorded:
        a framework not installed says so instead of failing)."""

    @abc.abstractmethod
    def build(self, model_cfg, class_names: list[str] | None = None) -> nn.Module:
        """The model ``model_cfg`` describes (``class_names``: the data set's, for a model that
        classifies by their text)."""

    @abc.abstractmethod
    def checkpoint_state(self, loaded: Any) -> Any:
        """Where the state dict lies in a loaded checkpoint file (loading stays strict in
        run/models.py)."""

    @abc.abstractmethod
    def official_url(self, model_cfg) -> str | None:
        """The official checkpoint's URL, or None."""

    @abc.abstractmethod
    def class_names(self, model_cfg) -> tuple[str, list[str]] | None:
        """(label, names in id order): the model's own class names, or None."""

    # ---- required: the protocol's steps -----------------------------------------------------
    @abc.abstractmethod
    def clip_windows(self, video: DecodedVideo, clip_duration: Fraction, clips: int, timing: str,
                     frame_rate: float | None = None,
                     clip_len: int | None = None) -> list[list[int]]:
        """Each clip's frames (indices into ``video.frames``) under ``timing``, before temporal
        subsampling; ``frame_rate``/``clip_len``: the model's, for timings that count frames."""

    @abc.abstractmethod
    def pts_windows(self, time_base: Fraction, start_pts: int, end_pts: int,
                    clip_duration: Fraction, clips: int, timing: str) -> list[Window] | None:
        """Each clip's pts window (what a streaming decode needs), or None where ``timing``
        needs the whole decoded video."""

    @abc.abstractmethod
    def views(self, clips: torch.Tensor, spec: InputSpec, crops: int, fault: str | None = None,
              memory_format: torch.memory_format = torch.contiguous_format,
              spatial: str | None = None) -> list[torch.Tensor]:
        """Pathway tensors with batch clips * crops (clip-major) from uint8 (clips, C, T, H, W),
        as ``spatial`` makes them, on the clips' device."""

    @abc.abstractmethod
    def setting_problems(self, protocol: Protocol, crops: int,
                         model_input: Any) -> list[tuple[str, str]]:
        """(key, message) for each setting its protocol cannot run (before any work)."""

    @abc.abstractmethod
    def apply_head(self, module: nn.Module, head: str) -> bool:
        """Make ``module``'s head do what ``protocol.head`` says; True when it now returns
        probabilities where it returned logits."""

    # ---- optional, with their one default ---------------------------------------------------
    def input_spec(self, model_cfg) -> InputSpec:
        """The run's spec of a model: its ``model.input`` (an adapter whose configs carry their
        own test pipeline returns a spec holding it: mmaction2)."""
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(model_cfg.input, resolve=True)
        return InputSpec(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in values.items()})

    def checkpoint_class_names(self, module: nn.Module) -> list[str] | None:
        """The class names the loaded checkpoint carries, in output order (matched to the data
        set's by name, run/labels.py), or None where it carries none."""
        return None

    def source_values(self, model_cfg) -> dict:
        """What ``model.source`` (or ``model.config``) says of the model, as model config values
        (``architecture``, ``num_classes``, ``input``, ``preprocessor``, ``views``...;
        run/sources.py merges them); refused where the framework takes no sources."""
        raise ValueError(f"model.source: {self.NAME}'s models are named by their configs only")

    def resolve_weights(self, model_cfg) -> Path | None:
        """(``LOADS_OWN_WEIGHTS``) the checkpoint ``model.weights`` names, None for random
        init; never downloads."""
        raise NotImplementedError(f"{self.NAME}: LOADS_OWN_WEIGHTS is False")

    def where_weights_go(self, model_cfg) -> str:
        """(``LOADS_OWN_WEIGHTS``) where ``model.weights=auto`` looks for the checkpoint and how
        it gets there, for the line that refuses random weights on a real data set."""
        raise NotImplementedError(f"{self.NAME}: LOADS_OWN_WEIGHTS is False")

    def clips_problem(self, spec: InputSpec, clips: int, timing: str) -> str | None:
        """A ``views.clips`` that fails every video under ``timing``, known from the config
        alone (check_settings asks before any work), or None."""
        return None

    def segment_views(self, spec: InputSpec) -> int | None:
        """None where each of a video's ``views.clips`` clips is one temporal view; else its
        clips are the segments of a view (a 2D model: mmaction2's TSN, TSM) and this is how
        many temporal views a video has (``make bench`` counts its own test loop's views so)."""
        return None

    def cut_clips(self, video: DecodedVideo, spec: InputSpec, clips: int, timing: str,
                  fault: str | None = None) -> torch.Tensor:
        """(``CUTS_CLIPS``) uint8 (views, C, T, H, W) cut by the adapter in the loader."""
        raise NotImplementedError(f"{self.NAME}: CUTS_CLIPS is False")

    def example_views(self, spec: InputSpec, batch: int = 1) -> list[torch.Tensor]:
        """A random batch in its models' input layout (FLOPs, throughput): by default
        ``InputSpec.example``'s (B, C, T, H, W) pathways."""
        return spec.example(batch)

    def counted_as(self, module: nn.Module, convention: str) -> ContextManager[nn.Module]:
        """A context in which the model runs as ``convention`` (one of ``FLOP_CONVENTIONS``)
        counts it; by default the model as it runs."""
        return contextlib.nullcontext(module)

    def framework_gflops(self, module: nn.Module, spec: InputSpec) -> float | None:
        """GFLOPs of one view by the framework's own counter (``make flops``' framework
        column), or None where it has none."""
        return None

    def rewrites(self) -> dict[str, Callable[[nn.Module], int]]:
        """``eval.fuse``'s rewrites that fit its models: name -> an in-place rewrite returning
        how many places it changed (frameworks/fuse.py). By default the stem padding, which
        knows plain ``nn.Conv3d`` only."""
        return {"stem": pad_stem_channels}

    def reference_problem(self, protocol: Protocol) -> str | None:
        """Why ``make bench`` has no reference pipeline for ``protocol`` (a one-line message
        naming the key), or None where ``reference_views`` has one."""
        return (f"protocol: {protocol.framework}'s protocols have no reference pipeline for "
                f"the benchmark, got {protocol.name}")

    def reference_views(self, path: str | Path, spec: InputSpec, clips: int, crops: int, *,
                        model_cfg, protocol: Protocol) -> Iterator[list[torch.Tensor]]:
        """Each view's pathway list (batch 1), clip-major, as the framework's own (or its model
        card's) pipeline makes them: ``make bench``'s reference."""
        raise NotImplementedError(self.reference_problem(protocol) or self.NAME)

    def reference_video(self, module: nn.Module, model_cfg, path: str | Path,
                        clips: int | None = None) -> tuple[float, float, torch.Tensor]:
        """(``OWN_TEST_LOOP``) (data seconds, model seconds, probabilities) of one video
        through the framework's own test loop."""
        raise NotImplementedError(f"{self.NAME}: OWN_TEST_LOOP is False")


# ---- the interface check (tests/test_adapters.py; run it on a new adapter) ------------------

# Switch -> the method an adapter that sets it must give (and one that does not must not).
SWITCHED = {"LOADS_OWN_WEIGHTS": ("resolve_weights", "where_weights_go"),
            "CUTS_CLIPS": ("cut_clips",), "OWN_TEST_LOOP": ("reference_video",),
            "FLOP_CONVENTIONS": ("counted_as",)}
_CONSTANT_TYPES = {"NAME": str, "TIMINGS": tuple, "SPATIALS": tuple, "CHECK_HASH": bool,
                   "HEADS": tuple, "CHANNELS_LAST": bool, "OWN_PROTOCOLS_ONLY": bool,
                   "CHECKS_CROPS": bool, "MAX_CLIPS": Mapping, "LOADS_OWN_WEIGHTS": bool,
                   "CUTS_CLIPS": bool, "FLOP_CONVENTIONS": Mapping, "OWN_TEST_LOOP": bool,
                   "EXTRA": (Extra, type(None))}


def _parameters(signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def interface_problems(adapter: Adapter) -> list[str]:
    """Where ``adapter`` departs from ``Adapter``: a constant of the wrong type, a method whose
    parameters (names, kinds, defaults) are not the base class's, a switch without its method
    or a method without its switch. Empty: the adapter fits the interface."""
    import inspect

    cls, problems = type(adapter), []
    for name, kind in _CONSTANT_TYPES.items():
        value = getattr(cls, name, None)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds):
            problems.append(f"{name}: {value!r} is not a "
                            f"{' or '.join(k.__name__ for k in kinds)}")
        elif kind is tuple and not all(isinstance(v, str) for v in value):
            problems.append(f"{name}: not all strings")
    for name, member in vars(Adapter).items():
        if name.startswith("_") or not callable(member):
            continue
        want = _parameters(inspect.signature(member))[1:]  # without self
        have = _parameters(inspect.signature(getattr(adapter, name)))
        if have != want:
            problems.append(f"{name}{inspect.signature(getattr(adapter, name))}: the interface "
                            f"is {name}{inspect.signature(member)}")
    for switch, methods in SWITCHED.items():
        for method in methods:
            has = getattr(cls, method) is not getattr(Adapter, method)
            if bool(getattr(cls, switch)) != has:
                problems.append(f"{switch}={getattr(cls, switch)!r} but {method} is "
                                f"{'its own' if has else 'the default'}")
    return problems
