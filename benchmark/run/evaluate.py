"""The evaluation loop: manifest -> decode -> views -> model -> per-video mean softmax -> metrics.

Read top to bottom, ``evaluate`` is the run: the settings checked before any work (settings.py),
the run directory claimed, the data set and the model loaded, the protocol's steps resolved to
its adapters' once, the run's identity agreed across ranks (record.py), then the loop: loader
workers decode each video once and cut its clips (clip_loader.py), the view batcher builds the
views on the device and runs the model in full batches (batches.py), and each video's
probabilities are stored as it finishes (store.py). A video that cannot be read is recorded in
failures.csv with its reason and the run goes on; a signal saves what is finished
(signals.py). Then the metrics record and the run's report.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from benchmark import frameworks
from benchmark.data.load import load_dataset
from benchmark.data.manifest import data_fingerprint
from benchmark.frameworks import fuse, protocol_from_config
from benchmark.results.metrics import top_k
from benchmark.results.tables import check_eval_table, report_run, tables_dir
from benchmark.run import distributed
from benchmark.run.batches import ViewBatcher, finished_means, on_device
from benchmark.run.clip_loader import video_loader
from benchmark.run.device import precision_problem, prepare_model, reuse_freed_memory, set_tf32
from benchmark.run.models import (build_model, class_names_file, given_model, offline_class_names,
                                  resolve_weights)
from benchmark.run.progress import Progress
from benchmark.run.record import (StrictFailure, check_ranks_agree, check_some_evaluated,
                                  measure_cost, metrics_record, record_prediction, run_identity)
from benchmark.run.settings import (SettingsError, batch_views_for, check_settings, fuse_rewrites,
                                    resolve_device, settle_channels_last)
from benchmark.run.signals import saved_on_signal, stop_on_signals
from benchmark.run.sources import from_source
from benchmark.run.store import RunStore, check_writable, run_lock

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None,
             module: torch.nn.Module | None = None) -> dict | None:
    """Run one evaluation; write the run's files into ``run_dir`` and its row into the tables.
    ``overrides``: the command line's (default: the Hydra run's), which win over what a
    ``model.source`` says of itself (sources.py); ``module``: a model handed to the Python API
    (benchmark/api.py), evaluated as given instead of built from ``cfg.model``.

    Under torchrun every rank evaluates its share of the videos; rank 0 returns the metrics,
    the other ranks None.
    """
    cfg = from_source(cfg, overrides)
    check_settings(cfg)
    ranks = distributed.init(str(cfg.device.type))
    try:
        # ``held``: the run dir's lock and the signal handlers, released as the run ends, an
        # error or a signal included
        with contextlib.ExitStack() as held:
            return _evaluate(cfg, run_dir, ranks, held, module)
    finally:
        distributed.close(ranks)


def _evaluate(cfg: DictConfig, run_dir: Path, ranks: distributed.Ranks,
              held: contextlib.ExitStack, given: torch.nn.Module | None) -> dict | None:
    device = resolve_device(str(cfg.device.type), ranks.local_rank)
    settle_channels_last(cfg)
    problem = precision_problem(str(cfg.precision), device)
    if problem:
        raise SettingsError(problem)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # device=cuda:1: streams and events default to the run's
    tf32 = set_tf32(device, bool(cfg.eval.tf32))
    rewrites = fuse_rewrites(cfg, device)
    run_dir = Path(distributed.broadcast(str(run_dir), ranks))  # rank 0's dir for all
    results_dir = tables_dir(cfg)

    def claim_run_dir() -> None:
        held.enter_context(run_lock(run_dir))  # a live run there: refused at once
        check_eval_table(results_dir)  # before any work, not after the whole run

    distributed.from_main(claim_run_dir, ranks)  # rank 0's refusal stops every rank
    # model.num_classes 0: the model takes the data set's classes (X-CLIP: their names' text)
    manifest = load_dataset(with_model_class_names(cfg), int(cfg.model.num_classes) or None,
                            offline_class_names)
    found, data_print = data_fingerprint(manifest.videos) if ranks.is_main else (0, "")
    # Rank 0 resolves (downloads) the weights first; the others wait and load the same file.
    # A real data set is never scored with random weights that weights=auto fell back to.
    real = None if cfg.data.synthetic is not None else str(cfg.data.name)
    resolved = None if given is not None else distributed.from_main(
        lambda: resolve_weights(cfg.model, real), ranks)
    torch.manual_seed(int(cfg.seed))  # random-init weights are then the same in every run
    protocol = protocol_from_config(cfg.protocol)
    # The protocol's steps, resolved to their adapters' once and handed down.
    timing, spatial = frameworks.timing(protocol.clips), frameworks.spatial(protocol.spatial)
    model = (given_model(cfg.model, given) if given is not None else
             build_model(cfg.model, protocol.head, resolved, manifest.class_names))
    if cfg.eval.reuse_memory:
        reuse_freed_memory()
    module = model.module
    runner = prepare_model(module, device, bool(cfg.eval.channels_last), bool(cfg.compile),
                           rewrites, frameworks.get(str(cfg.model.framework)))
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
    loader = video_loader(manifest.videos, todo, spec, cfg, device, timing)
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

    finished: list = []  # the batcher's videos whose mean is computed, not yet recorded
    notes: dict[int, str] = {}  # the decoder's notes on a video, recorded with its prediction

    def keep_finished() -> None:
        """After a signal: store the videos the batcher finished that are not recorded yet."""
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
        batcher = ViewBatcher(runner, spec, crops, batch_views, device, str(cfg.precision),
                              bool(cfg.eval.channels_last), cfg.views.fault, spatial=spatial,
                              finished=finished, combine=protocol.combine)
        for index, probs in batcher.predict(loaded(progress)):
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
    metrics = metrics_record(
        cfg, identity, model, manifest, store, protocol=protocol.name, processes=ranks.world,
        found=found, data_print=data_print,
        cost_fields=measure_cost(module, runner, spec, cfg, device, batch_views),
        evaluated_now=evaluated_now, seconds=seconds)
    store.finish(metrics, order=order)
    published = OmegaConf.to_container(cfg.model.published, resolve=True)
    # Per-run report files and plots; the run's row in results/evaluations and the results plots.
    report_run(run_dir, published, results_dir, manifest.class_names,
               float(cfg.report.min_coverage))
    return metrics


def with_model_class_names(cfg: DictConfig) -> DictConfig:
    """``cfg.data``, with a torchvision model's own class names (its weights' categories) in
    place of ``data.class_names=auto`` on a real data set (generated sets have their own)."""
    if cfg.data.class_names != "auto" or cfg.data.synthetic:
        return cfg.data
    path = class_names_file(cfg.model, Path(cfg.cache_dir))
    return cfg.data if path is None else OmegaConf.merge(cfg.data, {"class_names": str(path)})
