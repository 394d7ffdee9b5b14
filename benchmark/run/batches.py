"""The view batcher: videos' uint8 clips in, each video's mean probabilities out, the model fed
full batches of views on its device (and the clips' copies to a GPU overlapped with the model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterable, Iterator

import torch

from benchmark.frameworks.views import InputSpec, Spatial, make_views
from benchmark.run.clip_loader import LoadedVideo
from benchmark.run.device import Stopwatch, autocast


class ViewBatcher:
    """Builds each video's views on the device and runs the model ``batch_views`` views at a
    time; a batch may hold the last views of one video and the first of the next, so the device
    always gets full batches. A video is finished once its last view has run: its mean (softmax
    per view, then the mean; the softmax of the mean logits where ``spec.views_mean`` says so,
    mmaction2's TSN, or the protocol's ``combine`` is ``logit_mean``: TimeSformer, ViViT) goes
    to the CPU and waits in ``finished`` (key, mean, copy event or None)
    until it is handed over.

    The views are fp32 as the reference builds them (autocast casts them at the first layer),
    in the model's layout (``channels_last``), made by the protocol's ``spatial`` step
    (views.make_views; default ``uniform_crop``). ``stopwatch``: times ``views`` (building
    them) and ``model`` (the forward passes). ``finished``: the caller's list, so that a caller
    stopped mid-way (a signal) can still store the videos computed but not yet handed over
    (``finished_means``); a video stays in it until the caller asks for the next one.
    """

    def __init__(self, model: torch.nn.Module, spec: InputSpec, crops: int, batch_views: int,
                 device: torch.device, precision: str, channels_last: bool = False,
                 fault: str | None = None, stopwatch: Stopwatch | None = None,
                 spatial: Spatial | None = None, finished: list | None = None,
                 combine: str = "softmax_mean"):
        self.model, self.spec, self.crops, self.batch_views = model, spec, crops, batch_views
        self.device, self.precision, self.fault, self.spatial = device, precision, fault, spatial
        self.layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.logits_mean = spec.views_mean == "logits" or combine == "logit_mean"
        self.clips_per_build = max(1, -(-batch_views // crops))
        self.timed = stopwatch or (lambda name: contextlib.nullcontext())
        self.pending: list[tuple[list[torch.Tensor], Hashable]] = []  # built, not yet run
        self.queued = 0  # views in ``pending``
        self.sums: dict[Hashable, torch.Tensor] = {}
        self.left: dict[Hashable, int] = {}  # views of each video still to run
        self.total: dict[Hashable, int] = {}
        self.finished = [] if finished is None else finished

    def predict(self, videos: Iterable[tuple[Hashable, torch.Tensor]]
                ) -> Iterator[tuple[Hashable, torch.Tensor]]:
        """(key, mean probabilities as float32 on the CPU) for each (key, uint8 clips (clips, C,
        T, H, W)) of ``videos``, in the order they come."""
        with torch.inference_mode():
            for key, clips in videos:
                yield from self.add(key, clips)
            if self.queued:
                self.run(self.queued)
            yield from self.hand_over(len(self.finished))

    def add(self, key: Hashable, clips: torch.Tensor) -> Iterator[tuple[Hashable, torch.Tensor]]:
        """Queue a video's views, running every full batch; yields the videos handed over."""
        clips = clips.to(self.device, non_blocking=True)
        self.total[key] = self.left[key] = clips.shape[0] * self.crops
        for chunk in clips.split(self.clips_per_build):
            with self.timed("views"):
                views = make_views(chunk, self.spec, self.crops, self.fault,
                                   memory_format=self.layout, spatial=self.spatial)
            self.pending.append((views, key))
            self.queued += views[0].shape[0]
            while self.queued >= self.batch_views:
                earlier = len(self.finished)
                self.run(self.batch_views)
                # The videos earlier batches finished, handed over while this batch runs:
                # waiting for the result of the batch just queued would leave a GPU idle
                # until the next one is launched.
                yield from self.hand_over(earlier)

    def run(self, size: int) -> None:
        """Run the first ``size`` pending views as one batch; queue the videos it finishes."""
        parts, owners = [], []  # per part: pathways, (video, views)
        while size:
            views, key = self.pending[0]
            n = min(size, views[0].shape[0])
            parts.append([v[:n] for v in views])
            owners.append((key, n))
            if n == views[0].shape[0]:
                self.pending.pop(0)
            else:
                self.pending[0] = ([v[n:] for v in views], key)
            size -= n
            self.queued -= n
        batch = [p[0] if len(parts) == 1 else torch.cat(p).contiguous(memory_format=self.layout)
                 for p in zip(*parts)]
        with self.timed("model"), autocast(self.device, self.precision):
            probs = self.model(batch).float()  # a fresh list: the model mutates it
            probs = probs if self.logits_mean else probs.softmax(dim=-1)
        for (key, n), share in zip(owners, probs.split([n for _, n in owners])):
            self.sums[key] = share.sum(dim=0) + self.sums.get(key, 0)
            self.left[key] -= n
            if not self.left[key]:
                del self.left[key]
                mean = self.sums.pop(key) / self.total.pop(key)
                mean = (mean.softmax(dim=-1) if self.logits_mean else mean).to(
                    "cpu", non_blocking=True)
                copied = None
                if self.device.type == "cuda":
                    copied = torch.cuda.Event()
                    copied.record(torch.cuda.current_stream(self.device))  # the run's device's
                self.finished.append((key, mean, copied))

    def hand_over(self, count: int) -> Iterator[tuple[Hashable, torch.Tensor]]:
        """The first ``count`` finished videos, once their means are on the CPU, then those
        whose copy is already done (all on a CPU): none waits for the next video's decoding."""
        finished = self.finished
        while finished and (count > 0 or finished[0][2] is None or finished[0][2].query()):
            yield from finished_means(finished[:1])
            finished.pop(0)  # the caller has it (it asked for the next)
            count -= 1


def predict(model: torch.nn.Module, videos: Iterable[tuple[Hashable, torch.Tensor]],
            spec: InputSpec, crops: int, batch_views: int, device: torch.device, precision: str,
            channels_last: bool = False, fault: str | None = None,
            stopwatch: Stopwatch | None = None, spatial: Spatial | None = None,
            finished: list | None = None,
            combine: str = "softmax_mean") -> Iterator[tuple[Hashable, torch.Tensor]]:
    """Each video's mean softmax over its clips x crops views, in the order the videos come:
    ``ViewBatcher(...).predict(videos)`` (its docstring says how)."""
    return ViewBatcher(model, spec, crops, batch_views, device, precision, channels_last, fault,
                       stopwatch, spatial, finished, combine).predict(videos)


def finished_means(finished: list) -> Iterator[tuple[Hashable, torch.Tensor]]:
    """(key, mean) of a batcher's ``finished`` entries, once each mean is on the CPU."""
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
