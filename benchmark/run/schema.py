"""The config schema: one dataclass per config group, one for each root config's own keys.

Registered in Hydra's ConfigStore; each ``conf/<group>/*.yaml`` starts from its group's schema
(``defaults: [<group>_schema, _self_]``) and ``eval.yaml`` from ``eval_schema``, so the YAML files
are presets validated against these types and OmegaConf rejects a value of the wrong type
(``strict=maybe``, ``views.clips=2.5``, ``device.type=mps``), naming the key, while the config is
composed: before any import of the heavy modules, before any work. What a type cannot say
(ranges, rules between keys, ``auto``-or-a-number) is checked once after composition, in
``benchmark.run.settings.check_settings``.

``config_error_line`` turns OmegaConf's and Hydra's multi-line errors into the one line the
command prints; ``hydra_cli`` runs a ``@hydra.main`` function with it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import MISSING
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from benchmark.data.synthetic import ActionSetSpec
from benchmark.results.metrics import MIN_COVERAGE

AUTO = "auto"  # eval.batch_views, data.workers, data.decode_threads: ``auto`` or a number


class Choice(str, enum.Enum):
    """A key with a few allowed values; it reads as the plain value, as the code and the files
    expect a plain string."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class DeviceType(Choice):
    """``device.type``: auto (CUDA when there is a GPU, else the CPU), cpu or cuda."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DecoderName(Choice):
    """``decoder.name``: which library decodes the videos (benchmark/data/decoders.py)."""

    pyav = "pyav"
    torchcodec = "torchcodec"
    decord = "decord"


class DataFormat(Choice):
    """``data.format``: which official annotation files the data set has (benchmark/data/load.py
    load_dataset; docs/data.md)."""

    kinetics = "kinetics"  # the Kinetics CSV (400, 600, 700) or a ``path label`` list
    ssv2 = "ssv2"
    ucf101 = "ucf101"
    hmdb51 = "hmdb51"


class LabelMap(Choice):
    """``model.label_map``: how the model's outputs become the data set's class ids
    (benchmark/run/labels.py): by matching class names (where the model has them), or by
    position (trusting the order)."""

    name = "name"
    position = "position"


class LiveRun(Choice):
    """``live_run``: what a run does with a live run of the same config it would resume (its
    run.lock held, benchmark/run/store.py): refuse (stop, naming it) or skip (leave it alone)."""

    refuse = "refuse"
    skip = "skip"


# ---- config groups ------------------------------------------------------------------------------

@dataclass
class InputSchema:
    """``model.input``: the model's test input (benchmark.frameworks.views.InputSpec)."""

    num_frames: int = MISSING
    sampling_rate: int = MISSING
    frames_per_second: float = MISSING  # torchvision's MViT: frame_rate 7.5
    side_size: int = MISSING
    resize_size: Optional[List[int]] = None  # torchvision: weights.transforms()'s resize
    crop_size: int = MISSING
    alpha: Optional[int] = None  # SlowFast speed ratio; null: one pathway
    mean: List[float] = MISSING
    std: List[float] = MISSING


@dataclass
class ModelSchema:
    """``conf/model/*.yaml``."""

    name: str = MISSING
    framework: str = MISSING  # its adapter, benchmark/frameworks/<framework> (the registry's names)
    builder: Dict[str, Any] = MISSING  # free-form: a ``_target_`` and its arguments
    checkpoint_url: Optional[str] = None
    weights: str = AUTO  # auto | pretrained | random | PATH
    num_classes: int = MISSING  # 0: the data set's (X-CLIP classifies by their names' text)
    output: str = "logits"  # logits | probs (benchmark.run.models.OUTPUTS)
    torchvision_weights: Optional[str] = None  # torchvision's weights enum member
    # The model's class names in output order (a {name: id} JSON or a .txt of one a line),
    # matched to the data set's by name (benchmark/run/labels.py); null: the checkpoint's own.
    class_names: Optional[str] = None
    label_map: LabelMap = LabelMap.name  # name | position
    # A model from anywhere (benchmark/run/sources.py): a transformers hub id or save_pretrained
    # directory (model=hf, and the named transformers configs, its aliases) at a revision, or an
    # mmaction2 config file (model=mmaction2).
    source: Optional[str] = None
    revision: Optional[str] = None
    config: Optional[str] = None
    input: InputSchema = field(default_factory=InputSchema)
    published: Dict[str, Any] = field(default_factory=dict)  # free-form: the zoo's numbers


# ``data.synthetic``: the fields of the generated set's spec, its types and defaults (one home).
_SPEC_TYPES = typing.get_type_hints(ActionSetSpec)
SyntheticSchema = dataclasses.make_dataclass(
    "SyntheticSchema",
    [(f.name, _SPEC_TYPES[f.name], f.default) for f in dataclasses.fields(ActionSetSpec)])


@dataclass
class DataSchema:
    """``conf/data/*.yaml``."""

    name: str = MISSING
    description: str = ""
    root: Optional[str] = ""
    csv: Optional[str] = None
    class_names: Optional[str] = None  # PATH | auto | null
    limit: Optional[int] = None
    workers: Any = AUTO  # auto | N >= 0 (check_settings)
    decode_threads: Any = AUTO  # auto | N >= 0 (check_settings)
    decode_timeout_s: Optional[float] = 120.0
    loader_memory_mb: int = 4096  # decoded clips in flight per process (benchmark/data/loader.py)
    synthetic: Optional[SyntheticSchema] = None  # type: ignore[valid-type]
    format: DataFormat = DataFormat.kinetics  # which reader: kinetics | ssv2 | ucf101 | hmdb51
    split: Optional[int] = None  # UCF101/HMDB51: the official split 1-3
    subset: Optional[str] = None  # a file of video ids (one a line): evaluate only those
    min_found_fraction: float = 0.98  # fewer listed videos found: a loud warning, and flagged


@dataclass
class ViewsSchema:
    """``conf/views/*.yaml``."""

    clips: int = MISSING
    crops: int = MISSING
    fault: Optional[str] = None  # test only (check_settings names the accepted values)


@dataclass
class ProtocolSchema:
    """``conf/protocol/*.yaml`` (the accepted values: benchmark/frameworks/clips.py and the
    framework's adapter, checked by check_settings)."""

    name: str = MISSING
    framework: str = "pytorchvideo"  # whose clip timings and spatial steps
    clips: str = MISSING
    head: str = MISSING
    combine: str = MISSING
    spatial: str = MISSING
    precision: Optional[str] = None  # the authors' test precision (fp32 | bf16 | fp16), if stated


@dataclass
class DecoderSchema:
    """``conf/decoder/*.yaml``."""

    name: DecoderName = DecoderName.pyav


@dataclass
class DeviceSchema:
    """``conf/device/*.yaml``."""

    type: DeviceType = DeviceType.auto


# ---- eval.yaml ----------------------------------------------------------------------------------

@dataclass
class EvalSettings:
    batch_views: Any = AUTO  # auto | N >= 1 (check_settings)
    channels_last: bool = True
    fuse: Any = "auto"  # auto | none | all | names (benchmark/frameworks/fuse.py checks them)
    reuse_memory: bool = True
    tf32: bool = False
    flush_every: int = 20
    flush_seconds: float = 60.0
    resume_search: List[str] = field(default_factory=list)


@dataclass
class CostSettings:
    flops: bool = True
    throughput_iters: int = 2


@dataclass
class ReportSettings:
    # Published-vs-measured deltas only when at least this share of the listed videos was
    # evaluated (0 to 1, check_settings; benchmark/results/tables.py no_delta_because).
    min_coverage: float = MIN_COVERAGE


@dataclass
class EvalConfig:
    """``conf/eval.yaml`` (``python -m benchmark.eval``)."""

    data: DataSchema = MISSING
    views: ViewsSchema = MISSING
    protocol: ProtocolSchema = MISSING
    model: ModelSchema = MISSING
    device: DeviceSchema = MISSING
    decoder: DecoderSchema = field(default_factory=DecoderSchema)
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (check_settings)
    compile: bool = False
    eval: EvalSettings = field(default_factory=EvalSettings)
    resume: bool = True
    live_run: LiveRun = LiveRun.refuse
    strict: bool = False
    cost: CostSettings = field(default_factory=CostSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    results_dir: str = AUTO  # auto | DIR (benchmark/results/tables.py tables_dir)
    cache_dir: str = MISSING


@dataclass
class BenchSettings:
    """``bench:`` in ``conf/bench.yaml`` (``python -m benchmark.bench``, docs/speed.md)."""

    videos: int = 1  # videos timed through both pipelines
    harness_videos: Optional[int] = None  # videos the harness runs (null: the same)
    compare_fuse: bool = True  # the harness a second time with eval.fuse=none (first)
    matmul_size: int = 2048  # the device's peak: a size^3 matrix product
    rss_videos: int = 50  # the RSS check's videos (0: skip)
    rss_model: str = "slowfast_tiny"
    transformers: List[str] = field(default_factory=list)  # their card pipelines' rows
    transformers_overrides: List[str] = field(default_factory=list)  # Hydra overrides for those


@dataclass
class BenchConfig(EvalConfig):
    """``conf/bench.yaml``: the eval config's keys (the harness's settings) and ``bench``."""

    bench: BenchSettings = field(default_factory=BenchSettings)


GROUPS = {"model": ModelSchema, "data": DataSchema, "views": ViewsSchema,
          "protocol": ProtocolSchema, "device": DeviceSchema, "decoder": DecoderSchema}


def register() -> None:
    """Put the schemas in Hydra's ConfigStore: ``<group>/<group>_schema`` and ``eval_schema``."""
    store = ConfigStore.instance()
    for group, schema in GROUPS.items():
        store.store(group=group, name=f"{group}_schema", node=schema)
    store.store(name="eval_schema", node=EvalConfig)
    store.store(name="bench_schema", node=BenchConfig)


register()


# ---- one line per bad setting -------------------------------------------------------------------

def accepted(kind: Any) -> str:
    """What a value of type ``kind`` may be, in words."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return " or ".join([accepted(a) for a in rest] + ["null"])
    if origin in (list, List):
        return "a list"
    if origin in (dict, Dict) or dataclasses.is_dataclass(kind):
        return "a mapping"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(m.name for m in kind)
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(kind, str(kind))


def nearest(name: str, names) -> str | None:
    """The known name closest to a mistyped one (difflib's ratio, at least 0.6), or None."""
    found = difflib.get_close_matches(name, [str(n) for n in names], n=1)
    return found[0] if found else None


def config_error_line(err: BaseException) -> str | None:
    """One line for a config that cannot be composed (a bad value, an unknown key or group
    option, an unparsable override), naming the key; None for any other error."""
    chain = [err]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    for e in chain:
        if isinstance(e, MissingConfigException):
            option = (e.missing_cfg_file or "").split("/")
            options = [o for o in e.options or [] if not o.endswith("_schema")]
            if len(option) == 2 and options:
                near = nearest(option[1], options)
                kind = _LISTS.get(option[0])
                listed = (f"did you mean {near}?" + (f" (python -m benchmark.list {kind})"
                                                     if kind else "") if near
                          else f"one of {', '.join(options)}")
                return f"{option[0]}={option[1]}: no conf/{option[0]}/{option[1]}.yaml; {listed}"
            return str(e).strip().splitlines()[0]
        if isinstance(e, OverrideParseException):
            return f"cannot parse the override {e.override!r}: {e.message.splitlines()[0]}"
    for e in chain:
        if isinstance(e, (ConfigKeyError, ConfigAttributeError)) and getattr(e, "full_key", None):
            parent = e.full_key.rpartition(".")[0]
            keys = e.parent_node.keys() if getattr(e, "parent_node", None) is not None else ()
            near = nearest(str(e.key), keys)
            guess = f"; did you mean {parent + '.' if parent else ''}{near}?" if near else ""
            return f"{e.full_key}: no such setting{f' in {parent}' if parent else ''}{guess}"
        if isinstance(e, ValidationError) and getattr(e, "full_key", None):
            kind = None  # the key's type in its schema (e.ref_type is its parent's)
            if e.object_type is not None and dataclasses.is_dataclass(e.object_type):
                kind = typing.get_type_hints(e.object_type).get(str(e.key))
            expected = f"expected {accepted(kind)}" if kind is not None else e.msg.splitlines()[0]
            return f"{e.full_key}: {expected}, got {e.value!r}"
        if isinstance(e, OmegaConfBaseException):
            where = getattr(e, "full_key", None)
            message = str(e.msg if getattr(e, "msg", None) else e).strip().splitlines()[0]
            return f"{where}: {message}" if where else message
    return None


# A config group -> the ``python -m benchmark.list`` kind that lists its options.
_LISTS = {"model": "models", "data": "data", "protocol": "protocols", "decoder": "decoders"}


def hydra_cli(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; a config that cannot be composed, or a run folder that
    cannot be made, ends the command with one line (exit 1) instead of Hydra's multi-line
    report. ``HYDRA_FULL_ERROR=1`` (set by the user) keeps Hydra's full traceback."""
    if os.environ.get("HYDRA_FULL_ERROR"):
        main()
        return
    # Hydra re-raises instead of printing when this is set; our function unsets it again as
    # its first step, so errors inside the run get Hydra's usual report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except Exception as err:
        line = config_error_line(err)
        if line is None and isinstance(err, OSError) and err.filename:
            line = f"hydra.run.dir: {err.filename}: cannot make the run folder: {err.strerror}"
        if line is None:
            raise
        sys.exit(f"error: {line}")


def composed() -> None:
    """Call first in a function ``hydra_cli`` runs: from here on Hydra reports errors its way."""
    os.environ.pop("HYDRA_FULL_ERROR", None)
