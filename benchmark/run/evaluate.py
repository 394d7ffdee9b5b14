"""The evaluation loop: manifest -> decode -> views -> model -> per-video mean softmax -> metrics.

Loader workers decode each video once and cut its clips (uint8); the main process moves them to
the device, builds the views there and runs the model in batches of ``eval.batch_views`` views.
A video that cannot be read is recorded in failures.csv with its reason and the run goes on.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import platform
import signal
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import av
import torch
from omegaconf import DictConfig, OmegaConf

from benchmark import frameworks
from benchmark.results import cost
from benchmark.run import distributed
from benchmark.frameworks.pytorchvideo import fuse
from benchmark.data.decode import DecodeError, DecodeTimeout, decode_threads, process_cores, time_limit
from benchmark.data import decoders
from benchmark.data.loader import SupervisedLoader, test_hooks
from benchmark.data.manifest import Manifest, Video, data_fingerprint, load_dataset
from benchmark.run.device import (
    PRECISIONS,
    Stopwatch,
    autocast,
    compile_problem,
    precision_problem,
    prepare_model,
    reuse_freed_memory,
    set_tf32,
)
from benchmark.results.metrics import accuracy, top_k
from benchmark.run.models import (OUTPUTS, Model, WeightsError, build_model, class_names_file,
                                  model_spec, offline_class_names, resolve_weights)
from benchmark.run.progress import Progress
from benchmark.frameworks.clips import HEADS, protocol_from_config
from benchmark.results.tables import check_eval_table, report_run, tables_dir
from benchmark.run.store import RunStore, check_writable, fingerprint, run_lock
from benchmark.frameworks.views import (CROP_INDICES, FAULTS, InputSpec, decode_clips, make_views,
                                       sample_clips)

log = logging.getLogger(__name__)


NON_FINITE = "non-finite probabilities"  # a failure reason's start: decoded, then overflowed


class SettingsError(ValueError):
    """An impossible setting; the message names the config key."""


class DeviceUnavailable(SettingsError):
    """The asked-for device is not on this machine (a sweep records the job as skipped)."""


class StrictFailure(RuntimeError):
    """strict=true and a video could not be evaluated."""


class NothingEvaluated(RuntimeError):
    """No listed video could be evaluated: an error, never an empty result with status ok."""


class Preempted(RuntimeError):
    """SIGTERM (SLURM's notice before it kills a job) or SIGINT (Ctrl-C) stopped the run after
    its finished videos were saved; ``signum`` gives the exit status (128 + signum)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class _Signalled(BaseException):
    """Raised by the signal handler inside the loop (BaseException: no ``except Exception``
    on the way swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """Turn the first of ``signals`` into ``_Signalled`` in the main thread during the block;
    the ones after it are ignored till the block ends, so the flush that follows (inside the
    block: saved_on_signal) is never cut."""
    def handler(signum, frame):
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        raise _Signalled(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def saved_on_signal(store: RunStore, listed: int, keep: Callable[[], None]):
    """A ``_Signalled`` anywhere in the block: ``keep()`` (store the videos finished but not yet
    recorded), flush, mark the progress interrupted, raise Preempted. Enter it inside
    stop_on_signals, so a second signal cannot cut this."""
    try:
        yield
    except _Signalled as caught:
        keep()
        raise preempted(store, caught.signum, listed) from None


@dataclass
class LoadedVideo:
    index: int  # position in the manifest
    clips: torch.Tensor | None  # uint8 (clips, C, T, H, W)
    failure: str | None = None
    seconds: float = 0.0  # decoding and cutting, in the worker
    transient: bool = False  # a failure a later try may not repeat (store.add_failure)
    kind: str | None = None  # of failure: loader.CRASH (killed its decoder twice) or None
    note: str | None = None  # where the decoder backend disagreed with itself (decoders.py)


class VideoClipsDataset:
    """Decodes one video per item and cuts its clips; failures come back as values."""

    def __init__(self, videos: list[Video], indices: list[int], spec: InputSpec, clips: int,
                 timing: str, decode_threads: int, decode_timeout_s: float | None,
                 fault: str | None = None, decoder: str = "pyav"):
        self.videos, self.indices, self.spec, self.clips = videos, indices, spec, clips
        self.timing, self.decode_threads, self.fault = timing, decode_threads, fault
        self.decode_timeout_s, self.decoder = decode_timeout_s, decoder

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> LoadedVideo:
        index = self.indices[item]
        video = self.videos[index]
        if video.path is None:
            return LoadedVideo(index, None,
                               video.there or f"file not found: looked for {video.expected}",
                               transient=not video.there)
        test_hooks(video.video_id)
        try:
            start = time.perf_counter()
            note = None
            with time_limit(self.decode_timeout_s):
                if self.decoder == "pyav":  # clips cut while decoding
                    clips = decode_clips(video.path, self.spec, self.clips, self.timing,
                                         self.decode_threads, self.fault)
                else:
                    decoded = decoders.decode(video.path, self.decoder, self.decode_threads)
                    clips = sample_clips(decoded, self.spec, self.clips, self.timing, self.fault)
                    note = "; ".join(decoded.notes) or None
            return LoadedVideo(index, clips, seconds=time.perf_counter() - start, note=note)
        except DecodeTimeout as err:
            return LoadedVideo(index, None, str(err), transient=True)
        except (DecodeError, ValueError) as err:
            return LoadedVideo(index, None, str(err))
        except Exception as err:  # one odd file must never end a long run
            return LoadedVideo(index, None, f"unexpected {type(err).__name__}: {err}")


def check_settings(cfg: DictConfig) -> None:
    """Reject impossible settings before any work, naming the key: ranges and rules between
    keys (the types were checked as the config was composed, benchmark/run/schema.py)."""
    spec = cfg.model.input
    iters = OmegaConf.select(cfg, "cost.throughput_iters", default=0)  # bench.yaml has no cost
    min_coverage = OmegaConf.select(cfg, "report.min_coverage", default=0)  # nor report
    checks = [
        (cfg.views.clips >= 1, "views.clips", f"must be >= 1, got {cfg.views.clips}"),
        (cfg.views.get("fault") in (None, *FAULTS), "views.fault",
         f"must be null or one of {', '.join(FAULTS)}, got {cfg.views.get('fault')}"),
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
        (cfg.model.get("output", "logits") in OUTPUTS, "model.output",
         f"must be one of {', '.join(OUTPUTS)}, got {cfg.model.get('output')}"),
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
    model_framework = str(cfg.model.get("framework", protocol.framework))
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
    if not hasattr(frameworks.get(protocol.framework), "CROPS") and \
            cfg.views.crops not in CROP_INDICES:  # a framework with CROPS checks its own
        raise SettingsError(f"views.crops: must be 1, 2 or 3 (UniformCropVideo's aug_index), "
                            f"got {cfg.views.crops}")
    for key, message in frameworks.get(protocol.framework).setting_problems(
            protocol, cfg.views.crops, spec):
        raise SettingsError(f"{key}: {message}")
    most = getattr(frameworks.get(protocol.framework), "MAX_CLIPS", {}).get(protocol.clips)
    if most is not None and cfg.views.clips > most:
        raise SettingsError(f"views.clips: the {protocol.name} protocol takes at most {most} "
                            f"clips, got {cfg.views.clips}")
    if protocol.framework != model_framework and any(
            getattr(adapter, "OWN_PROTOCOLS_ONLY", False) for adapter in adapters):
        # A framework whose models take their own layout and heads (transformers: (B, T, C, H,
        # W) views) runs only under its own protocols, and its protocols only its models.
        raise SettingsError(f"protocol: {protocol.name} is {protocol.framework}'s but the model "
                            f"{cfg.model.name} is {model_framework}'s; pass one of its protocols")
    heads = getattr(adapters[1], "HEADS", HEADS)  # what the model's apply_head can do
    if protocol.head not in heads:
        raise SettingsError(f"protocol.head: {protocol.name}'s {protocol.head} is not a head "
                            f"{model_framework}'s models take (they take {', '.join(heads)}); "
                            "pass another protocol")
    clips_problem = getattr(adapters[0], "clips_problem", None)
    if clips_problem is not None:  # a clip count the timing cannot cut for this model
        try:
            problem = clips_problem(model_spec(cfg.model), int(cfg.views.clips), protocol.clips)
        except WeightsError as err:  # the model's config disagrees with itself: its one line
            raise SettingsError(str(err)) from None
        if problem:
            raise SettingsError(problem)


def decoder_name(cfg: DictConfig) -> str:
    """``decoder.name`` (pyav where a program's config has no decoder group)."""
    return str(OmegaConf.select(cfg, "decoder.name", default="pyav"))


def settle_channels_last(cfg: DictConfig) -> None:
    """``eval.channels_last`` off (and recorded off) for a framework whose adapter says its
    models have no NDHWC layout to use (``CHANNELS_LAST = False``: transformers' (B, T, C, H, W)
    views and 2D patch convolutions)."""
    framework = str(cfg.model.get("framework", "pytorchvideo"))
    if cfg.eval.channels_last and not getattr(frameworks.get(framework), "CHANNELS_LAST", True):
        log.info("eval.channels_last: not for %s's models; off", framework)
        cfg.eval.channels_last = False


def fuse_rewrites(cfg: DictConfig, device: torch.device) -> tuple[str, ...]:
    """The rewrites ``eval.fuse`` names on ``device`` (frameworks/pytorchvideo/fuse.py); a bad value is a
    SettingsError naming the key."""
    try:
        return fuse.resolve(cfg.eval.get("fuse", "none"), device.type)
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


def predict(model: torch.nn.Module, videos: Iterable[tuple[Hashable, torch.Tensor]],
            spec: InputSpec, crops: int, batch_views: int, device: torch.device, precision: str,
            channels_last: bool = False, fault: str | None = None,
            stopwatch: Stopwatch | None = None,
            spatial: str = "uniform_crop",
            finished: list | None = None,
            combine: str = "softmax_mean") -> Iterator[tuple[Hashable, torch.Tensor]]:
    """Each video's mean softmax over its clips x crops views (the softmax of their mean logits
    where ``spec.views_mean`` says so, mmaction2's TSN, or the protocol's ``combine`` is
    ``logit_mean``: TimeSformer, ViViT), in the order the videos come.

    ``videos``: (key, uint8 clips (clips, C, T, H, W)). The views are built on ``device``, fp32
    as the reference builds them (autocast casts them at the first layer), in the model's
    layout, for as many clips as fill a batch; the model runs ``batch_views`` views at a time,
    and a batch may hold the last views of one video and the first of the next, so the device
    always gets full batches. A video comes out (float32, on the CPU) once its last view has
    run. ``stopwatch``: times ``views`` (building them) and ``model`` (the forward passes).
    ``spatial``: the protocol's spatial step (views.make_views). ``finished``: the caller's
    list to hold the videos whose mean is computed but not yet handed over (key, mean, copy
    event), so that a caller stopped mid-way (a signal) can still store them
    (``finished_means``); a video stays in it until the caller asks for the next one.
    """
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    # the softmax of the mean logits (spec.views_mean, protocol.combine)
    logits_mean = spec.views_mean == "logits" or combine == "logit_mean"
    clips_per_build = max(1, -(-batch_views // crops))
    timed = stopwatch or (lambda name: contextlib.nullcontext())
    pending: list[tuple[list[torch.Tensor], Hashable]] = []  # built views not yet run, per video
    queued = 0  # views in ``pending``
    sums: dict[Hashable, torch.Tensor] = {}
    left: dict[Hashable, int] = {}  # views of each video still to run
    total: dict[Hashable, int] = {}
    # Finished videos, their means on their way to the CPU: (key, probs, copy done or None).
    finished = [] if finished is None else finished

    def run(size: int) -> None:
        """Run the first ``size`` pending views as one batch; queue the videos it finishes."""
        nonlocal queued
        parts, owners = [], []  # per part: pathways, (video, views)
        while size:
            views, key = pending[0]
            n = min(size, views[0].shape[0])
            parts.append([v[:n] for v in views])
            owners.append((key, n))
            if n == views[0].shape[0]:
                pending.pop(0)
            else:
                pending[0] = ([v[n:] for v in views], key)
            size -= n
            queued -= n
        batch = [p[0] if len(parts) == 1 else torch.cat(p).contiguous(memory_format=layout)
                 for p in zip(*parts)]
        with timed("model"), autocast(device, precision):
            probs = model(batch).float()  # a fresh list: the model mutates it
            probs = probs if logits_mean else probs.softmax(dim=-1)
        for (key, n), share in zip(owners, probs.split([n for _, n in owners])):
            sums[key] = share.sum(dim=0) + sums.get(key, 0)
            left[key] -= n
            if not left[key]:
                del left[key]
                mean = sums.pop(key) / total.pop(key)
                mean = (mean.softmax(dim=-1) if logits_mean else mean).to("cpu", non_blocking=True)
                copied = None
                if device.type == "cuda":
                    copied = torch.cuda.Event()
                    copied.record(torch.cuda.current_stream(device))  # the run's device's
                finished.append((key, mean, copied))

    def hand_over(count: int) -> Iterator[tuple[Hashable, torch.Tensor]]:
        """The first ``count`` finished videos, once their means are on the CPU, then those
        whose copy is already done (all on a CPU): none waits for the next video's decoding."""
        while finished and (count > 0 or finished[0][2] is None or finished[0][2].query()):
            yield from finished_means(finished[:1])
            finished.pop(0)  # the caller has it (it asked for the next)
            count -= 1

    with torch.inference_mode():
        for key, clips in videos:
            clips = clips.to(device, non_blocking=True)
            total[key] = left[key] = clips.shape[0] * crops
            for chunk in clips.split(clips_per_build):
                with timed("views"):
                    views = make_views(chunk, spec, crops, fault, memory_format=layout,
                                       spatial=spatial)
                pending.append((views, key))
                queued += views[0].shape[0]
                while queued >= batch_views:
                    earlier = len(finished)
                    run(batch_views)
                    # The videos earlier batches finished, handed over while this batch runs:
                    # waiting for the result of the batch just queued would leave a GPU idle
                    # until the next one is launched.
                    yield from hand_over(earlier)
        if queued:
            run(queued)
        yield from hand_over(len(finished))


def finished_means(finished: list) -> Iterator[tuple[Hashable, torch.Tensor]]:
    """(key, mean) of predict's ``finished`` entries, once each mean is on the CPU."""
    for key, mean, copied in finished:
        if copied is not None:
            copied.synchronize()
        yield key, mean


def on_device(items: Iterable[LoadedVideo], device: torch.device) -> Iterator[LoadedVideo]:
    """The loader's items with their clips on ``device``.

    On CUDA the next item's clips (pinned by the loader) are copied on a side stream while the
    current one is computed, so the transfer overlaps the model; the compute stream waits for
    the copy before it touches them.
    """
    if device.type != "cuda":
        yield from items
        return
    copies = torch.cuda.Stream(device)
    ahead: tuple[LoadedVideo, torch.cuda.Event] | None = None
    for item in items:
        if item.clips is not None:
            with torch.cuda.stream(copies):
                item.clips = item.clips.to(device, non_blocking=True)
        copied = copies.record_event()
        if ahead is not None:
            yield ready(*ahead)
        ahead = item, copied
    if ahead is not None:
        yield ready(*ahead)


def ready(item: LoadedVideo, copied: torch.cuda.Event) -> LoadedVideo:
    """``item`` once the compute stream has waited for its copy; its memory, allocated on the
    copy stream, is marked as used by the compute stream (so the allocator keeps it till then)."""
    if item.clips is not None:
        stream = torch.cuda.current_stream(item.clips.device)
        stream.wait_event(copied)
        item.clips.record_stream(stream)
    return item


def video_loader(videos: list[Video], indices: list[int], spec: InputSpec, cfg: DictConfig,
                 device: torch.device) -> SupervisedLoader:
    """Loader workers decode the videos at ``indices`` and cut their clips (uint8), in order,
    supervised by this process (benchmark/data/loader.py: a worker that dies or hangs costs one
    video, not the run); on CUDA the clips come pinned, so their copy to the GPU can run
    asynchronously."""
    workers = loader_workers(cfg.data.workers, device.type)
    dataset = VideoClipsDataset(
        videos, indices, spec, int(cfg.views.clips), str(cfg.protocol.clips),
        decode_threads(cfg.data.decode_threads, workers, device.type), cfg.data.decode_timeout_s,
        cfg.views.get("fault"), decoder_name(cfg))

    def failed(position: int, reason: str, kind: str | None) -> LoadedVideo:
        """A video whose worker died (kind crash: never retried) or hung (transient: a resumed
        run tries it again, as a decode that timed out in its worker)."""
        return LoadedVideo(indices[position], None, reason, transient=kind is None, kind=kind)

    return SupervisedLoader(dataset.__getitem__, len(dataset), workers, failed,
                            cfg.data.decode_timeout_s, pin_memory=device.type == "cuda",
                            memory_bytes=int(cfg.data.get("loader_memory_mb", 4096)) << 20)


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


def versions() -> dict[str, str]:
    """The versions a run records: torch, every framework's (its adapter's ``version()``), PyAV,
    Python and the harness's own."""
    found = {"torch": torch.__version__}
    for name in frameworks.KNOWN:
        found.update(frameworks.get(name).version())
    return {**found, "av": av.__version__, "python": platform.python_version(),
            **harness_version()}


@functools.lru_cache(maxsize=1)
def harness_version() -> dict[str, str]:
    """The harness's own version and a hash of its package's .py sources (read once, ~0.1 MB):
    an edit to the code that makes predictions is a different run, installed or not."""
    try:
        version = importlib.metadata.version("benchmark")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"benchmark": version,
            "benchmark_source": source_digest(Path(__file__).resolve().parents[1])}


def source_digest(package: Path) -> str:
    """SHA-256 (16 hex) of a package's .py files, their names included."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def evaluate(cfg: DictConfig, run_dir: Path) -> dict | None:
    """Run one evaluation; write the run's files into ``run_dir`` and its row into the tables.

    Under torchrun every rank evaluates its share of the videos; rank 0 returns the metrics,
    the other ranks None.
    """
    check_settings(cfg)
    ranks = distributed.init(str(cfg.device.type))
    try:
        # ``held``: the run dir's lock and the signal handlers, released as the run ends, an
        # error or a signal included
        with contextlib.ExitStack() as held:
            return _evaluate(cfg, run_dir, ranks, held)
    finally:
        distributed.close(ranks)


def _evaluate(cfg: DictConfig, run_dir: Path, ranks: distributed.Ranks,
              held: contextlib.ExitStack) -> dict | None:
    device = resolve_device(str(cfg.device.type), ranks.local_rank)
    settle_channels_last(cfg)
    problem = precision_problem(str(cfg.precision), device)
    if problem:
        raise SettingsError(problem)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # device=cuda:1: streams and events default to the run's
    tf32 = set_tf32(device, bool(cfg.eval.get("tf32", False)))
    rewrites = fuse_rewrites(cfg, device)
    run_dir = Path(distributed.broadcast(str(run_dir), ranks))  # rank 0's dir for all
    results_dir = tables_dir(cfg)

    def claim_run_dir() -> None:
        held.enter_context(run_lock(run_dir))  # a live run there: refused at once
        check_eval_table(results_dir)  # before any work, not after the whole run

    distributed.from_main(claim_run_dir, ranks)  # rank 0's refusal stops every rank
    manifest = load_dataset(with_model_class_names(cfg), int(cfg.model.num_classes),
                            offline_class_names)
    found, data_print = data_fingerprint(manifest.videos) if ranks.is_main else (0, "")
    # Rank 0 resolves (downloads) the weights first; the others wait and load the same file.
    # A real data set is never scored with random weights that weights=auto fell back to.
    real = None if cfg.data.get("synthetic") is not None else str(cfg.data.name)
    resolved = distributed.from_main(lambda: resolve_weights(cfg.model, real), ranks)
    torch.manual_seed(int(cfg.seed))  # random-init weights are then the same in every run
    protocol = protocol_from_config(cfg.protocol)
    model = build_model(cfg.model, protocol.head, resolved, manifest.class_names)
    if cfg.eval.reuse_memory:
        reuse_freed_memory()
    module = model.module
    runner = prepare_model(module, device, bool(cfg.eval.channels_last), bool(cfg.compile),
                           rewrites)
    made = fuse.applied(runner)
    if made != rewrites:
        log.info("eval.fuse: %s asked, %s fits %s's blocks", fuse.label(rewrites),
                 fuse.label(made), model.name)
    rewrites = made  # what the run records: the rewrites made
    spec, clips, crops = model.spec, int(cfg.views.clips), int(cfg.views.crops)
    log.info("dataset %s: %d videos (%s); model %s, weights %s; %dx%d views, protocol %s, on %s, %s",
             manifest.name, len(manifest.videos), cfg.data.description, model.name, model.weights,
             clips, crops, protocol.name, device, cfg.precision)
    if protocol.precision is not None and protocol.precision != str(cfg.precision):
        log.warning("precision=%s: the %s protocol's authors tested in %s (protocol.precision); "
                    "this run's numbers may differ from theirs by that", cfg.precision,
                    protocol.name, protocol.precision)

    def check_room() -> None:
        # Room for the parts and the final files (probabilities as float64, twice, with slack).
        check_writable(run_dir, needed_bytes=len(manifest.videos) * model.num_classes * 8 * 3)
        check_writable(results_dir)

    distributed.from_main(check_room, ranks)

    batch_views = batch_views_for(cfg.eval.batch_views, device.type)
    identity = run_identity(cfg, model, manifest, device, batch_views, tf32, rewrites)
    check_ranks_agree(identity, ranks)
    store = RunStore(run_dir, identity,
                     int(cfg.eval.flush_every), float(cfg.eval.flush_seconds), ranks.rank)
    def videos_done() -> set[str]:
        if cfg.resume:
            return store.resume(list(cfg.eval.resume_search), str(cfg.live_run))
        store.start_fresh()
        return set()

    done: set[str] = distributed.from_main(videos_done, ranks)
    todo = [i for i, v in enumerate(manifest.videos) if v.video_id not in done]
    if store.resumed_from is not None:
        log.info("resuming %s: %d of %d videos already done, %d to go", store.resumed_from,
                 len(manifest.videos) - len(todo), len(manifest.videos), len(todo))
    todo = distributed.shard(todo, ranks)
    loader = video_loader(manifest.videos, todo, spec, cfg, device)
    start, evaluated_now = time.perf_counter(), 0

    def loaded(progress: Progress) -> Iterator[tuple[int, torch.Tensor]]:
        """The videos that decoded; the others go to failures.csv (or stop a strict run)."""
        for item in on_device(loader, device):
            if item.failure is None:
                if item.note:
                    notes[item.index] = item.note
                    log.warning("%s: %s", manifest.videos[item.index].path, item.note)
                yield item.index, item.clips
                continue
            video = manifest.videos[item.index]
            log.warning("%s: %s", video.path or video.video_id, item.failure)
            store.add_failure(video.video_id, video.path, item.failure, item.transient,
                              item.kind)
            progress.update(None)
            if cfg.strict:
                store.flush()
                raise StrictFailure(f"{video.path or video.video_id}: {item.failure} (strict=true)")

    finished: list = []  # predict's videos whose mean is computed, not yet recorded
    notes: dict[int, str] = {}  # the decoder's notes on a video, recorded with its prediction

    def keep_finished() -> None:
        """After a signal: store the videos predict finished that are not recorded yet."""
        recorded = {row["video_id"] for row in store.rows}
        for index, probs in finished_means(finished):
            if manifest.videos[index].video_id not in recorded:
                record_prediction(store, manifest.videos[index], probs, strict=False,
                                  note=notes.pop(index, None))

    # From here to the end a SIGTERM/SIGINT saves every finished video and stops the run.
    held.enter_context(stop_on_signals())
    held.enter_context(saved_on_signal(store, len(manifest.videos), keep_finished))
    # videos, videos/s, ETA, running top-1
    with store.timed_flushes(), Progress(len(todo), model.name) as progress:
        for index, probs in predict(runner, loaded(progress), spec, crops, batch_views,
                                    device, str(cfg.precision), bool(cfg.eval.channels_last),
                                    cfg.views.get("fault"), spatial=protocol.spatial,
                                    finished=finished, combine=protocol.combine):
            video = manifest.videos[index]
            if record_prediction(store, video, probs, bool(cfg.strict), notes.pop(index, None)):
                progress.update(int(top_k(probs, 1)) == video.label)
                evaluated_now += 1
            else:
                progress.update(None)
    seconds = time.perf_counter() - start
    store.flush()
    shares = distributed.gather((store.rows, evaluated_now, seconds), ranks)
    if not ranks.is_main:
        return None
    for rows, _, _ in shares[1:]:
        store.extend(rows)
    evaluated_now = sum(n for _, n, _ in shares)
    seconds = max(s for _, _, s in shares)

    order = [v.video_id for v in manifest.videos]
    check_some_evaluated(store, len(manifest.videos), order)
    probs, labels = store.probs_and_labels()
    metrics = {
        "model": model.name, "weights": model.weights, "dataset": manifest.name,
        **data_identity(cfg, identity), "protocol": protocol.name,
        "device": device.type, "decoder": decoder_name(cfg),
        "decoder_version": decoders.version(decoder_name(cfg)),
        "videos_with_decoder_notes": sum(isinstance(r.get("decoder_note"), str)
                                         for r in store.predictions),
        "precision": str(cfg.precision), "tf32": tf32,
        "batch_views": batch_views, "channels_last": bool(cfg.eval.channels_last),
        "compile": bool(cfg.compile), "fuse": fuse.label(rewrites),
        "clips": clips, "crops": crops, "fault": cfg.views.get("fault"),
        "processes": ranks.world,
        "videos_listed": len(manifest.videos), "videos_found": found,
        "videos_decodable": decodable(store), **copy_fields(manifest),
        "data_fingerprint": data_print, "videos_evaluated": len(store.predictions),
        "videos_failed": len(store.failures), "duplicates_in_csv": len(manifest.duplicates),
        **accuracy(probs, labels, model.num_classes),
        "class_names": manifest.class_names_source,
        **measure_cost(module, runner, spec, cfg, device, batch_views),
        "videos_per_s": evaluated_now / seconds if evaluated_now and seconds > 0 else None,
        "seconds": seconds,
        "resumed_from": str(store.resumed_from) if store.resumed_from else None,
        "versions": versions(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    store.finish(metrics, order=order)
    published = OmegaConf.to_container(cfg.model.published, resolve=True) if "published" in cfg.model else {}
    # Per-run report files and plots; the run's row in results/evaluations and the results plots.
    report_run(run_dir, published, results_dir, manifest.class_names,
               float(cfg.report.min_coverage))
    return metrics


def copy_fields(manifest: Manifest) -> dict:
    """Which copy the run read, for metrics.json and its row (benchmark/data/subset.py): split,
    leakage count, subset list name and SHA-256, found fraction against its threshold."""
    fields = manifest.copy_fields()
    del fields["videos_found"]  # metrics.json's comes with the data fingerprint
    return {**fields, "min_found_fraction": manifest.min_found_fraction}


def decodable(store: RunStore) -> int:
    """Listed videos that decoded: the predicted ones and those whose model output was not
    finite (decoded, then failed); not-found, undecodable and timed-out videos are not."""
    return len(store.predictions) + sum(str(r["reason"]).startswith(NON_FINITE)
                                        for r in store.failures)


def preempted(store: RunStore, signum: int, listed: int) -> Preempted:
    """Save the finished videos and the progress at once; the one line to show."""
    store.flush()
    name = signal.Signals(signum).name
    store.mark_interrupted(name)
    return Preempted(f"stopped by {name}: {len(store.rows)} of {listed} videos done and saved "
                     f"in {store.parts}; run the same command again to resume from there",
                     signum)


def with_model_class_names(cfg: DictConfig) -> DictConfig:
    """``cfg.data``, with a torchvision model's own class names (its weights' categories) in
    place of ``data.class_names=auto`` on a real data set (generated sets have their own)."""
    if cfg.data.get("class_names") != "auto" or cfg.data.get("synthetic"):
        return cfg.data
    path = class_names_file(cfg.model, Path(cfg.cache_dir))
    return cfg.data if path is None else OmegaConf.merge(cfg.data, {"class_names": str(path)})


def run_identity(cfg: DictConfig, model: Model, manifest: Manifest, device: torch.device,
                 batch_views: int, tf32: bool, rewrites: tuple[str, ...] | None = None) -> dict:
    """What determines a run's predictions: a run resumes only work with the same identity, and
    the ranks of one run must all have it. Anything here that changes changes the predictions
    (or may: batch size and layout move the float rounding), so one run never mixes them.
    ``rewrites``: the ``eval.fuse`` rewrites made (default: those it names)."""
    csv = Path(cfg.data.csv).resolve()
    return {
        "model": {"name": model.name, "builder": OmegaConf.to_container(cfg.model.builder),
                  "input": model.spec, "num_classes": model.num_classes,
                  "output": str(cfg.model.get("output", "logits"))},
        "weights": {"label": model.weights, "sha256": model.checkpoint_sha256,
                    "url": cfg.model.get("checkpoint_url")},
        "seed": int(cfg.seed),
        # A format that reads several files (a UCF101 split folder) hashes them all.
        "data": {"csv": str(csv), "subset_sha256": manifest.subset_sha256,
                 "csv_sha256": manifest.list_sha256 or hashlib.sha256(csv.read_bytes()).hexdigest(),
                 "root": str(Path(cfg.data.root or ".").resolve()), "limit": cfg.data.limit,
                 "class_names": hashlib.sha256("\n".join(manifest.class_names).encode()).hexdigest(),
                 "decode_timeout_s": cfg.data.decode_timeout_s},
        "views": OmegaConf.to_container(cfg.views),
        "protocol": OmegaConf.to_container(cfg.protocol),
        "device": device.type,
        "decoder": {"name": decoder_name(cfg), "version": decoders.version(decoder_name(cfg))},
        "precision": str(cfg.precision),
        "run": {"batch_views": batch_views, "channels_last": bool(cfg.eval.channels_last),
                "compile": bool(cfg.compile), "tf32": tf32,
                "fuse": fuse.label(fuse_rewrites(cfg, device) if rewrites is None else rewrites)},
        "versions": {k: v for k, v in versions().items() if k != "python"},
    }


def data_identity(cfg: DictConfig, identity: dict) -> dict:
    """What was evaluated, for metrics.json and the table key: a 100-video ``data.limit`` run,
    another CSV or the same CSV over another root is a row of its own, never the full list's."""
    data = identity["data"]
    return {"csv": data["csv"], "csv_sha256": data["csv_sha256"], "root": data["root"],
            "limit": data["limit"]}


def check_ranks_agree(identity: dict, ranks: distributed.Ranks) -> None:
    """Under torchrun every rank must evaluate the same run (weights, data, settings, code): any
    rank whose fingerprint differs from rank 0's stops every rank, saying what differs."""
    identities = distributed.all_gather(identity, ranks)
    prints = [fingerprint(i) for i in identities]
    differ = {rank: sorted(k for k in set(i) | set(identities[0])
                           if json_of(i.get(k)) != json_of(identities[0].get(k)))
              for rank, i in enumerate(identities) if prints[rank] != prints[0]}
    if differ:
        raise SettingsError("ranks disagree on the run's fingerprint: " + "; ".join(
            f"rank {r} differs from rank 0 in {', '.join(keys) or 'its fingerprint'}"
            for r, keys in differ.items()) + " (every rank must see the same weights, data, "
            "settings and code); stopping")


def json_of(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def record_prediction(store: RunStore, video: Video, probs: torch.Tensor, strict: bool,
                      note: str | None = None) -> bool:
    """Store ``video``'s probabilities; NaN or inf in them (an fp16 overflow) makes the video a
    failure with the reason, never a silent miss. Returns whether it was a prediction."""
    finite = torch.isfinite(probs)
    if bool(finite.all()):
        store.add_prediction(video.video_id, video.path, video.label, probs, note)
        return True
    reason = (f"{NON_FINITE}: {int(probs.isnan().sum())} NaN and "
              f"{int(probs.isinf().sum())} inf of {probs.numel()} (the model's output overflowed?)")
    log.warning("%s: %s", video.path or video.video_id, reason)
    store.add_failure(video.video_id, video.path, reason)
    if strict:
        store.flush()
        raise StrictFailure(f"{video.path or video.video_id}: {reason} (strict=true)")
    return False


def check_some_evaluated(store: RunStore, listed: int, order: list[str]) -> None:
    """A run in which no video could be evaluated is an error: its failures are written (for
    the reasons), no metrics.json and no table row; its progress.json says so, and no later run
    adopts its failures (they may be the setup's, not the videos')."""
    if store.predictions:
        return
    store.write_failures(order)
    store.mark_nothing_evaluated()
    reasons = sorted({str(r["reason"]) for r in store.failures})
    raise NothingEvaluated(
        f"no video could be evaluated: {len(store.failures)} of {listed} listed failed"
        + (f" (first reason: {reasons[0]}; all in {store.run_dir / 'failures.csv'})" if reasons else ""))


def measure_cost(module: torch.nn.Module, runner: torch.nn.Module, spec: InputSpec,
                 cfg: DictConfig, device: torch.device, batch_views: int) -> dict:
    """GFLOPs per view (zoo convention) and params of ``module``; model-only views/s of
    ``runner`` (the module as the run calls it: layout, compile) on the device."""
    result = {"gflops": None, "params_m": cost.params_m(module), "views_per_s": None}
    # The adapter's layout and attention convention (results/cost.py's adapter_flop_counts).
    adapter = frameworks.get(str(cfg.model.framework))
    if cfg.cost.flops:
        result["gflops"] = cost.adapter_flop_counts(adapter, module, spec, device)["gflops"]
    if cfg.cost.throughput_iters > 0:
        layout = torch.channels_last_3d if cfg.eval.channels_last else torch.contiguous_format
        example = [x.to(device).contiguous(memory_format=layout)
                   for x in cost.example_views(adapter, spec, batch_views)]
        with autocast(device, str(cfg.precision)):
            result["views_per_s"] = cost.model_views_per_s(
                runner, example, device, warmup=1, iters=int(cfg.cost.throughput_iters))
    return result
