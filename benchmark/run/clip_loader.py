"""The loader side of a run: workers decode each video once and cut its clips (uint8) as the
protocol's timing picks them; a video that cannot be read comes back as a value with its reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from benchmark.data import decoders
from benchmark.data.decode import DecodeError, DecodeTimeout, decode_threads, time_limit
from benchmark.data.loader import SupervisedLoader, test_hooks
from benchmark.data.manifest import Video
from benchmark.frameworks.clips import Timing
from benchmark.frameworks.views import InputSpec, decode_clips, sample_clips
from benchmark.run.settings import decoder_name, loader_workers


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
                 timing: Timing, decode_threads: int, decode_timeout_s: float | None,
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


def video_loader(videos: list[Video], indices: list[int], spec: InputSpec, cfg: DictConfig,
                 device: torch.device, timing: Timing) -> SupervisedLoader:
    """Loader workers decode the videos at ``indices`` and cut their clips (uint8) as
    ``timing`` (the protocol's, resolved: ``frameworks.timing``) picks them, in order,
    supervised by this process (benchmark/data/loader.py: a worker that dies or hangs costs one
    video, not the run); on CUDA the clips come pinned, so their copy to the GPU can run
    asynchronously."""
    workers = loader_workers(cfg.data.workers, device.type)
    dataset = VideoClipsDataset(
        videos, indices, spec, int(cfg.views.clips), timing,
        decode_threads(cfg.data.decode_threads, workers, device.type), cfg.data.decode_timeout_s,
        cfg.views.fault, decoder_name(cfg))

    def failed(position: int, reason: str, kind: str | None) -> LoadedVideo:
        """A video whose worker died (kind crash: never retried) or hung (transient: a resumed
        run tries it again, as a decode that timed out in its worker)."""
        return LoadedVideo(indices[position], None, reason, transient=kind is None, kind=kind)

    return SupervisedLoader(dataset.__getitem__, len(dataset), workers, failed,
                            cfg.data.decode_timeout_s, pin_memory=device.type == "cuda",
                            memory_bytes=int(cfg.data.loader_memory_mb) << 20)
