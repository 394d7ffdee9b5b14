"""The adapter interface (benchmark/frameworks/api.py): every registered framework is an
``Adapter`` whose members have the base class's types and signatures, and the check catches an
adapter that drops a member or changes a signature."""

import inspect

import pytest
import torch

from benchmark import frameworks
from benchmark.frameworks.api import Adapter, SWITCHED, interface_problems
from benchmark.frameworks.clips import Protocol, Timing
from benchmark.frameworks.torchvision import TorchvisionAdapter
from benchmark.frameworks.views import InputSpec, Spatial


@pytest.mark.parametrize("name", frameworks.KNOWN)
def test_every_registered_adapter_fits_the_whole_interface(name):
    adapter = frameworks.get(name)
    assert isinstance(adapter, Adapter) and adapter.NAME == name
    assert frameworks.get(name) is adapter  # one instance per framework
    assert interface_problems(adapter) == []
    # The members the run calls without a switch answer in their types.
    versions = adapter.version()
    assert versions and all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items())
    assert all(callable(f) for f in adapter.rewrites().values())
    assert set(adapter.rewrites()) <= {"bn", "stem", "relu"}
    assert set(adapter.MAX_CLIPS) <= set(adapter.TIMINGS)
    spec = InputSpec(4, 2, 30, 40, 32, (0.5,) * 3, (0.25,) * 3)
    example = adapter.example_views(spec, 2)
    assert isinstance(example, list) and all(x.shape[0] == 2 for x in example)
    if not adapter.FLOP_CONVENTIONS:  # counted as it runs
        module = torch.nn.Identity()
        with adapter.counted_as(module, "eager") as counted:
            assert counted is module
    for timing in adapter.TIMINGS:
        assert frameworks.owner("TIMINGS", timing) is adapter
    for spatial in adapter.SPATIALS:
        assert frameworks.owner("SPATIALS", spatial) is adapter


def test_each_protocol_step_resolves_once_to_its_adapters_callables():
    """The run resolves a protocol's clips and spatial once (frameworks.timing/spatial); the
    shared code calls what it is handed."""
    timing = frameworks.timing("pytorchvideo_0.1.5")
    assert isinstance(timing, Timing) and timing.cut_clips is None
    assert frameworks.timing("mmaction2").cut_clips is not None  # CUTS_CLIPS
    spatial = frameworks.spatial("torchvision")
    assert isinstance(spatial, Spatial) and spatial.name == "torchvision"
    with pytest.raises(ValueError, match="no framework has the timing 'bogus'"):
        frameworks.timing("bogus")


def test_the_interface_check_fails_when_a_member_is_removed_or_its_signature_changes():
    class ChangedSignature(TorchvisionAdapter):
        def views(self, clips, spec, crops):  # memory_format and spatial dropped
            return []

    class RenamedParameter(TorchvisionAdapter):
        def apply_head(self, model, head):
            return False

    class ChangedDefault(TorchvisionAdapter):
        def example_views(self, spec, batch=2):
            return spec.example(batch)

    class SwitchWithoutMethod(TorchvisionAdapter):
        CUTS_CLIPS = True

    class WrongType(TorchvisionAdapter):
        TIMINGS = ["torchvision"]

    for broken, member in ((ChangedSignature, "views"), (RenamedParameter, "apply_head"),
                           (ChangedDefault, "example_views"), (SwitchWithoutMethod, "CUTS_CLIPS"),
                           (WrongType, "TIMINGS")):
        problems = interface_problems(broken())
        assert len(problems) == 1 and problems[0].startswith(member), (broken, problems)

    # A required member removed: the class cannot be instantiated, or cannot be defined.
    members = {k: v for k, v in vars(TorchvisionAdapter).items() if not k.startswith("__")}
    without_views = type("WithoutViews", (Adapter,), {k: v for k, v in members.items()
                                                      if k != "views"})
    with pytest.raises(TypeError, match="abstract method.*views"):
        without_views()
    with pytest.raises(TypeError, match="must set CHECK_HASH"):
        type("WithoutCheckHash", (Adapter,), {k: v for k, v in members.items()
                                              if k != "CHECK_HASH"})


def test_the_interface_is_the_base_class_one_and_each_switch_names_a_method():
    """Every abstract member is a method of the base class, and every switch's method is an
    optional member with a default (so the run never asks whether an adapter has it)."""
    abstract = Adapter.__abstractmethods__
    assert {"version", "build", "checkpoint_state", "official_url", "class_names",
            "clip_windows", "pts_windows", "views", "setting_problems", "apply_head"} == abstract
    for methods in SWITCHED.values():
        for method in methods:
            assert method not in abstract and callable(getattr(Adapter, method))
    assert "self" == next(iter(inspect.signature(Adapter.views).parameters))


def test_the_reference_pipeline_is_found_through_the_protocols_adapter():
    pytorchvideo, transformers = frameworks.get("pytorchvideo"), frameworks.get("transformers")
    ok = Protocol("pytorchvideo", "pytorchvideo_0.1.5", "softmax_per_location", "softmax_mean")
    zoo = Protocol("zoo", "pytorchvideo_0.1.0", "softmax_per_location", "softmax_mean")
    assert pytorchvideo.reference_problem(ok) is None
    assert "needs protocol=pytorchvideo, got zoo" in pytorchvideo.reference_problem(zoo)
    assert frameworks.get("torchvision").reference_problem(
        Protocol("torchvision", "torchvision", "pooled_logits", "softmax_mean", "torchvision",
                 "torchvision")).startswith("protocol: torchvision's protocols have no reference")
    # transformers' card pipeline is the checkpoint's processor: the model card's protocol only
    assert transformers.reference_problem(
        Protocol("videomae_processor", "videomae", "model", "softmax_mean", "processor",
                 "transformers")) is None
    assert "pass protocol=videomae_processor, got videomae" in transformers.reference_problem(
        Protocol("videomae", "videomae", "model", "softmax_mean", "videomae", "transformers"))


def test_the_shared_view_code_never_asks_the_registry():
    """Dispatch once: views.py, clips.py, fuse.py and common.py import neither the registry
    nor the adapters' base class nor an adapter; the run hands them resolved steps."""
    import ast
    from pathlib import Path

    import benchmark.frameworks as package

    above = {"benchmark.frameworks", "benchmark.frameworks.api",
             *(f"benchmark.frameworks.{name}" for name in frameworks.KNOWN)}
    for name in ("views", "clips", "fuse", "common"):
        tree = ast.parse((Path(package.__file__).parent / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        assert not imported & above, (name, imported & above)


@pytest.mark.parametrize("name", frameworks.KNOWN)
def test_what_an_adapter_module_defines_its_class_exposes(name):
    """An interface name written at an adapter module's top (a constant, a function) is what its
    class gives the run: a module-level ``HEADS`` or ``clips_problem`` that the class does not
    name would leave the run with the base class's default, silently."""
    from collections.abc import Mapping
    import importlib
    import types

    adapter = frameworks.get(name)
    module = importlib.import_module(type(adapter).__module__)
    for member, default in vars(Adapter).items():
        if member.startswith("_") or not hasattr(module, member):
            continue
        defined, exposed = getattr(module, member), getattr(type(adapter), member)
        if isinstance(defined, types.FunctionType):
            assert exposed is not default, f"{name}: {member} is defined but not exposed"
        elif not callable(default):
            if isinstance(exposed, tuple) and isinstance(defined, Mapping):
                defined = tuple(defined)  # transformers' TIMINGS/SPATIALS: name -> rule
            assert exposed == defined, f"{name}: {member} {exposed!r} is not {defined!r}"
