"""Peak memory of an evaluation over generated 1080p 10 s videos (main process + loader workers).

    python tests/loader_memory.py REPO [--videos 3] [--workers 1]

Runs ``python -m benchmark.eval`` from ``REPO`` (so the same script measures two checkouts) with
a tiny SlowFast (8 frames at rate 8: slowfast_r50's 64/30 s clips) over 40 clips x 1 crop, so the
loader carries 320 frames per video as for slowfast_r50's 10 clips x 32 frames, and samples
the process tree's memory every 0.2 s: the peak sum of PSS (shared pages counted once) and RSS.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import psutil


def make_videos(root: Path, count: int, seconds: float = 10.0, fps: int = 30) -> Path:
    """``count`` 1920x1080 x264 videos in the official layout, written frame by frame."""
    folder = root / "moving left"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    for i in range(count):
        with av.open(str(folder / f"hd{i:04d}_000000_000010.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
            for t in range(int(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(np.roll(base, 8 * t, axis=1), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    (root / "val.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
        f'"moving left",hd{i:04d},0,10,val\n' for i in range(count)))
    (root / "names.json").write_text(json.dumps({'"moving left"': 0, '"moving right"': 1}))
    return root


def measure(repo: Path, data: Path, workers: int, out: Path) -> dict:
    command = [sys.executable, "-m", "benchmark.eval", "model=slowfast_tiny", "model.num_classes=2",
               "model.weights=random", "views.clips=40", "views.crops=1", "device=cpu", "data=kinetics400", f"data.csv={data / 'val.csv'}",
               f"data.root={data}", f"data.class_names={data / 'names.json'}",
               f"data.workers={workers}", "cost.flops=false", "cost.throughput_iters=0",
               "resume=false", f"results_dir={out / 'results'}", f"hydra.run.dir={out / 'run'}"]
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parent, peak_pss, peak_rss = psutil.Process(process.pid), 0, 0
    start = time.monotonic()
    while process.poll() is None:
        pss = rss = 0
        try:
            for p in [parent, *parent.children(recursive=True)]:
                info = p.memory_full_info()
                pss, rss = pss + info.pss, rss + info.rss
        except psutil.Error:
            pass
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(process.stderr.read().decode()[-2000:])
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    return {"repo": str(repo), "workers": workers, "videos": metrics["videos_evaluated"],
            "peak_pss_mb": round(peak_pss / 2**20), "peak_rss_mb": round(peak_rss / 2**20),
            "seconds": round(time.monotonic() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="+", type=Path)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_videos(Path(tmp) / "hd", args.videos)
        for repo in args.repos:
            for workers in args.workers:
                print(json.dumps(measure(repo.resolve(), data, workers,
                                         Path(tmp) / f"out{len(list(Path(tmp).iterdir()))}")),
                      flush=True)


if __name__ == "__main__":
    main()
