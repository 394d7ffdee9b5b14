"""Scan before a long run: ``python -m benchmark.check [data overrides]`` (``make check``).

Decodes every listed video with the run's decoder (``decoder=pyav|torchcodec|decord``, as the
evaluation will; the same time limit) in supervised loader workers (benchmark/data/loader.py:
a file that kills or hangs its decoder is a failed row, not the end of the scan), with the
progress bar, and writes ``check.csv`` in its run dir: one row per listed video (with what the
backend says against itself: ``notes``, as a run records them). Prints the counts by reason
and the data fingerprint (the one metrics.json records). Exit 0; ``strict=true`` exits 1 when a
video failed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import av
import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from benchmark.run.schema import composed, hydra_cli
from benchmark.data import decoders
from benchmark.data.decode import DecodeError, process_cores, time_limit
from benchmark.data.loader import SupervisedLoader, test_hooks
from benchmark.data.load import load_dataset
from benchmark.data.manifest import ManifestError, Video, data_fingerprint
from benchmark.run.models import offline_class_names
from benchmark.run.progress import Progress
from benchmark.data.files import atomic_write

log = logging.getLogger("benchmark")

CHECK_COLUMNS = ["video_id", "path", "status", "reason", "duration_s", "fps", "frames", "width",
                 "height", "codec", "bytes", "notes"]


@dataclass
class Scanned:
    row: dict
    clips: None = None  # nothing for the loader to carry but the row


class Scan:
    """Decode one listed video (in a worker) and describe it."""

    def __init__(self, videos: list[Video], timeout_s: float | None, decoder: str = "pyav"):
        self.videos, self.timeout_s, self.decoder = videos, timeout_s, decoder

    def __call__(self, position: int) -> Scanned:
        video = self.videos[position]
        if video.path is None:
            return failed_row(video, f"file not found: looked for {video.expected}")
        test_hooks(video.video_id)
        try:
            with time_limit(self.timeout_s):
                decoded = decoders.decode(video.path, self.decoder, threads=1)
                with av.open(str(video.path)) as container:
                    stream = container.streams.video[0]
                    codec, rate = stream.codec_context.name, stream.average_rate
        except DecodeError as err:
            return failed_row(video, str(err))
        except Exception as err:  # one odd file must never end the scan
            return failed_row(video, f"unexpected {type(err).__name__}: {err}")
        height, width = decoded.rgb([0]).shape[1:3]
        return Scanned({**base_row(video), "status": "ok", "reason": "",
                        "duration_s": round(float(decoded.duration), 3),
                        "fps": round(float(rate), 3) if rate else None,
                        "frames": len(decoded.frames), "width": width, "height": height,
                        "codec": codec, "notes": "; ".join(decoded.notes)})


def base_row(video: Video) -> dict:
    size = video.path.stat().st_size if video.path is not None and video.path.exists() else None
    return {"video_id": video.video_id, "path": str(video.path or video.expected), "bytes": size}


def failed_row(video: Video, reason: str) -> Scanned:
    return Scanned({**base_row(video), "status": "failed", "reason": reason})


def scan(cfg: DictConfig, run_dir: Path) -> pd.DataFrame:
    decoder = str(cfg.decoder.name)
    decoders.check_available(decoder)  # before any work: one line saying what to install
    manifest = load_dataset(cfg.data, offline_names=offline_class_names)
    videos = manifest.videos
    workers = process_cores() if cfg.workers == "auto" else int(cfg.workers)
    loader = SupervisedLoader(
        Scan(videos, cfg.data.decode_timeout_s, decoder), len(videos), workers,
        lambda position, reason, kind: failed_row(videos[position], reason),
        cfg.data.decode_timeout_s)
    rows = []
    start = time.perf_counter()
    with Progress(len(videos), "check") as progress:
        for item in loader:
            rows.append(item.row)
            progress.update(None)
    seconds = time.perf_counter() - start
    table = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    atomic_write(run_dir / "check.csv", lambda p: table.to_csv(p, index=False))
    found, fingerprint = data_fingerprint(videos)
    reasons = Counter(r.split(":")[0] for r in table.reason[table.status == "failed"])
    print(f"{manifest.name}: {len(videos)} listed, {found} found, "
          f"{int((table.status == 'ok').sum())} decoded, {len(table) - int((table.status == 'ok').sum())} failed "
          f"in {seconds:.1f} s ({len(videos) / seconds:.3g} videos/s, {workers} workers, "
          f"decoder {decoder}), {int((table.notes.fillna('') != '').sum())} with decoder notes")
    for reason, count in reasons.most_common():
        print(f"  {count:6d}  {reason}")
    print(f"data fingerprint: {fingerprint}\ncheck table: {run_dir / 'check.csv'}")
    return table


@hydra.main(version_base=None, config_path="../conf", config_name="check")
def main(cfg: DictConfig) -> None:
    composed()
    try:
        table = scan(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (ManifestError, decoders.BackendUnavailable, OSError) as err:
        sys.exit(f"error: {err}")
    failed = int((table.status == "failed").sum())
    if cfg.strict and failed:
        sys.exit(f"error: {failed} of {len(table)} listed videos cannot be decoded (strict=true)")


if __name__ == "__main__":
    hydra_cli(main)  # a config that cannot be composed: one line, no traceback
