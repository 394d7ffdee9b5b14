"""Settings checked before any work, each refusal one line naming its key: ranges and rules
between keys (the types were checked as the config was composed, benchmark/run/schema.py), what
the protocol's adapter refuses, and the settings whose value depends on the machine (the device,
the loader's workers, the batch).
"""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from benchmark import frameworks
from benchmark.data import decoders
from benchmark.data.decode import process_cores
from benchmark.frameworks import fuse, protocol_from_config
from benchmark.frameworks.views import CROP_INDICES, FAULTS
from benchmark.run.device import PRECISIONS, compile_problem
from benchmark.run.models import OUTPUTS, WeightsError, model_spec

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """An impossible setting; the message names the config key."""


class DeviceUnavailable(SettingsError):
    """The asked-for device is not on this machine (a sweep records the job as skipped)."""


def check_settings(cfg: DictConfig) -> None:
    """Reject impossible settings before any work, naming the key: ranges and rules between
    keys (the types were checked as the config was composed, benchmark/run/schema.py)."""
    spec = cfg.model.input
    iters, min_coverage = cfg.cost.throughput_iters, cfg.report.min_coverage
    checks = [
        (cfg.views.clips >= 1, "views.clips", f"must be >= 1, got {cfg.views.clips}"),
        (cfg.views.fault in (None, *FAULTS), "views.fault",
         f"must be null or one of {', '.join(FAULTS)}, got {cfg.views.fault}"),
        (spec.crop_size <= spec.side_size, "model.input.crop_size",
         f"{spec.crop_size} is larger than the scaled short side {spec.side_size}"),
        (cfg.data.limit is None or cfg.data.limit >= 0, "data.limit",
         f"must be >= 0 or null, got {cfg.data.limit}"),
        (auto_or_at_least(cfg.eval.batch_views, 1), "eval.batch_views",
         f"must be auto or >= 1, got {cfg.eval.batch_views}"),
        (auto_or_at_least(cfg.data.workers, 0), "data.workers",
         f"must be auto or >= 0, got {cfg.data.workers}"),
        (auto_or_at_least(cfg.data.decode_threads, 0), "data.decode_threads",
         f"must be auto or >= 0 (0: FFmpeg chooses), got {cfg.data.decode_threads}"),
        (cfg.data.decode_timeout_s is None or cfg.data.decode_timeout_s >= 0,
         "data.decode_timeout_s", f"must be >= 0 or null, got {cfg.data.decode_timeout_s}"),
        (iters >= 0, "cost.throughput_iters", f"must be >= 0 (0: skip), got {iters}"),
        (0 <= min_coverage <= 1, "report.min_coverage",
         f"must be a share of the listed videos, 0 to 1, got {min_coverage}"),
        (cfg.precision in PRECISIONS, "precision",
         f"must be one of {', '.join(PRECISIONS)}, got {cfg.precision}"),
        (cfg.model.output in OUTPUTS, "model.output",
         f"must be one of {', '.join(OUTPUTS)}, got {cfg.model.output}"),
    ]
    for ok, key, message in checks:
        if not ok:
            raise SettingsError(f"{key}: {message}")
    problem = compile_problem() if cfg.compile else None
    if problem:
        raise SettingsError(problem)
    try:
        decoders.check_available(decoder_name(cfg))
    except decoders.BackendUnavailable as err:
        raise SettingsError(str(err)) from None
    try:
        protocol = protocol_from_config(cfg.protocol)
    except ValueError as err:
        raise SettingsError(str(err)) from None
    model_framework = str(cfg.model.framework)
    try:
        adapters = [frameworks.get(name) for name in (protocol.framework, model_framework)]
    except ValueError as err:  # an unknown model.framework: the registry's one line
        raise SettingsError(f"model.{err}") from None
    for name in dict.fromkeys((model_framework, protocol.framework)):
        problem = frameworks.not_installed(name)  # an optional extra: what to install
        if problem:
            asked = (f"model={cfg.model.name}" if name == model_framework
                     else f"protocol={protocol.name}")
            raise SettingsError(f"{asked}: {problem}")
    adapter, model_adapter = adapters
    if not adapter.CHECKS_CROPS and cfg.views.crops not in CROP_INDICES:
        raise SettingsError(f"views.crops: must be 1, 2 or 3 (UniformCropVideo's aug_index), "
                            f"got {cfg.views.crops}")
    for key, message in adapter.setting_problems(protocol, cfg.views.crops, spec):
        raise SettingsError(f"{key}: {message}")
    most = adapter.MAX_CLIPS.get(protocol.clips)
    if most is not None and cfg.views.clips > most:
        raise SettingsError(f"views.clips: the {protocol.name} protocol takes at most {most} "
                            f"clips, got {cfg.views.clips}")
    if protocol.framework != model_framework and any(a.OWN_PROTOCOLS_ONLY for a in adapters):
        # A framework whose models take their own layout and heads (transformers: (B, T, C, H,
        # W) views) runs only under its own protocols, and its protocols only its models.
        raise SettingsError(f"protocol: {protocol.name} is {protocol.framework}'s but the model "
                            f"{cfg.model.name} is {model_framework}'s; pass one of its protocols")
    if protocol.head not in model_adapter.HEADS:  # what the model's apply_head can do
        raise SettingsError(f"protocol.head: {protocol.name}'s {protocol.head} is not a head "
                            f"{model_framework}'s models take (they take "
                            f"{', '.join(model_adapter.HEADS)}); pass another protocol")
    try:  # a clip count the timing cannot cut for this model
        problem = adapter.clips_problem(model_spec(cfg.model), int(cfg.views.clips),
                                        protocol.clips)
    except WeightsError as err:  # the model's config disagrees with itself: its one line
        raise SettingsError(str(err)) from None
    if problem:
        raise SettingsError(problem)


def decoder_name(cfg: DictConfig) -> str:
    """``decoder.name`` (pyav where a program's config has no decoder group)."""
    return str(cfg.decoder.name)


def settle_channels_last(cfg: DictConfig) -> None:
    """``eval.channels_last`` off (and recorded off) for a framework whose adapter says its
    models have no NDHWC layout to use (``CHANNELS_LAST = False``: transformers' (B, T, C, H, W)
    views and 2D patch convolutions)."""
    framework = str(cfg.model.framework)
    if cfg.eval.channels_last and not frameworks.get(framework).CHANNELS_LAST:
        log.info("eval.channels_last: not for %s's models; off", framework)
        cfg.eval.channels_last = False


def fuse_rewrites(cfg: DictConfig, device: torch.device) -> tuple[str, ...]:
    """The rewrites ``eval.fuse`` names on ``device`` (frameworks/fuse.py); a bad value is a
    SettingsError naming the key."""
    try:
        return fuse.resolve(cfg.eval.fuse, device.type)
    except fuse.FuseError as err:
        raise SettingsError(str(err)) from None


def auto_or_at_least(value, least: int) -> bool:
    """``auto`` or a whole number >= ``least`` (the schema types these keys Any: a bool such as
    ``true`` is an int to Python, and is refused here)."""
    return value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= least)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device to run on; under torchrun each rank takes its local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device={name}: CUDA is not available on this machine "
                                "(torch.cuda.is_available() is False); use device=cpu or device=auto")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def loader_workers(setting: int | str, device_type: str) -> int:
    """``data.workers``; ``auto``: on a CPU one (the model keeps every core busy, one worker
    decodes the next video meanwhile); on a GPU one per core but the main process's, of the
    cores this process has (``process_cores``: torchrun's processes share the machine's, a SLURM
    task has its own)."""
    if setting != "auto":
        return int(setting)
    return 1 if device_type == "cpu" else max(1, process_cores() - 1)


def batch_views_for(setting: int | str, device_type: str) -> int:
    """``eval.batch_views``; ``auto``: 3 on a CPU (a clip's 3 crops: larger batches run no
    faster there and each view is 31 MB of fp32), 60 on a GPU (two videos' 10x3: enough to fill
    the device, docs/speed.md)."""
    if setting != "auto":
        return int(setting)
    return 3 if device_type == "cpu" else 60
