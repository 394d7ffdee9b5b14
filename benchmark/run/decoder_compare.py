"""The decoder backends against PyAV (``make decoders``): per video, what each decodes and how
fast; per backend, a model's accuracy through the real entry point. The backends themselves:
benchmark/data/decoders.py."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmark.data.decoders import BACKENDS, decode, version

NEIGHBOURS = 2  # a frame unlike PyAV's at its index is looked for this many indices either side


def frame_rows(paths: list[Path], backends=BACKENDS, repeats: int = 5) -> list[dict]:
    """A row per (video, backend): frames decoded, their timestamps and pixels against PyAV's,
    whole-file decode time (to RGB, one FFmpeg thread; the best of ``repeats`` rounds, each
    round timing every backend in turn, so that a busy moment of a shared machine does not fall
    on one backend alone) in CPU seconds of this process (every thread), whose ratio to PyAV's
    is the comparison (other processes' load moves wall time far more), and in wall seconds;
    and the backend's notes on the file."""
    for backend in backends:  # load each library once before any timing
        decode(paths[0], backend, threads=1)
    rows = []
    for path in paths:
        videos, cpu, wall = {}, {}, {}
        for _ in range(repeats):
            for backend in backends:
                start, start_cpu = time.perf_counter(), time.process_time()
                video = decode(path, backend, threads=1)
                frames = video.rgb(list(range(len(video.frames))))  # PyAV's to RGB too
                took, took_cpu = time.perf_counter() - start, time.process_time() - start_cpu
                wall[backend] = min(took, wall.get(backend, took))
                cpu[backend] = min(took_cpu, cpu.get(backend, took_cpu))
                videos[backend] = (video, frames)
        ref, ref_rgb = videos["pyav"]
        for backend in backends:
            video, rgb = videos[backend]
            rows.append({"video": path.name, "decoder": backend, "frames": len(video.frames),
                         "frames_pyav": len(ref.frames),
                         **compare_frames(ref.pts, ref_rgb, video.pts, rgb),
                         "decode_cpu_s": round(cpu[backend], 4),
                         "decode_vs_pyav": round(cpu[backend] / cpu["pyav"], 2),
                         "decode_wall_s": round(wall[backend], 4),
                         "notes": "; ".join(video.notes)})
    return rows


def compare_frames(ref_pts: list[int], ref: torch.Tensor, pts: list[int],
                   frames: torch.Tensor) -> dict:
    """Against PyAV: timestamps only one side has; over the timestamps both have, the largest
    pixel difference, how many frames differ, and how many of those equal PyAV's frame at a
    nearby index instead (the same pictures in another order: ``moved``, with the offsets)."""
    at = {p: i for i, p in enumerate(ref_pts)}
    shared = [(i, at[p]) for i, p in enumerate(pts) if p in at]
    max_diff, differ, moved, offsets = 0, 0, 0, set()
    for i, j in shared:
        diff = int((frames[i].int() - ref[j].int()).abs().max())
        max_diff = max(max_diff, diff)
        if diff == 0:
            continue
        differ += 1
        for k in range(max(0, j - NEIGHBOURS), min(len(ref_pts), j + NEIGHBOURS + 1)):
            if k != j and torch.equal(frames[i], ref[k]):
                moved += 1
                offsets.add(k - j)
                break
    return {"pts_only_pyav": len(set(ref_pts) - set(pts)),
            "pts_only_this": len(set(pts) - set(ref_pts)),
            "max_pixel_diff": max_diff, "frames_differing": differ,
            "frames_moved": moved,
            "moved_by": " ".join(f"{o:+d}" for o in sorted(offsets))}


def accuracy_rows(overrides: list[str], run_root: Path, backends=BACKENDS) -> tuple[list[dict], dict]:
    """The same model and data under each backend through ``python -m benchmark.eval``: top-1,
    top-5, against PyAV's run the share of videos whose top-1 changes and the largest
    probability difference, and the videos whose prediction row carries a decoder note.
    Returns (rows, PyAV's metrics)."""
    import json

    import numpy as np
    import pandas as pd

    from benchmark.results.metrics import accuracy
    from benchmark.run.regression import CheckError, merge_overrides, run_eval

    runs = {}
    for backend in backends:
        runs[backend] = Path(run_root) / backend
        run_eval(merge_overrides(overrides, [f"decoder={backend}"]), runs[backend])
    tables = {b: pd.read_parquet(d / "predictions.parquet").set_index("video_id")
              for b, d in runs.items()}
    shared = tables["pyav"].index
    for table in tables.values():
        shared = shared[shared.isin(table.index)]
    if not len(shared):
        raise CheckError("no video was evaluated under every decoder: nothing to compare")
    labels = torch.tensor(tables["pyav"].label[shared].to_numpy(), dtype=torch.long)
    probs = {b: np.stack(t.probs[shared].map(np.asarray)) for b, t in tables.items()}
    rows = []
    for backend, run_dir in runs.items():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        ours, theirs = probs[backend], probs["pyav"]
        top = accuracy(torch.from_numpy(ours), labels, ours.shape[1])
        rows.append({
            "decoder": backend, "version": version(backend), "videos": len(shared),
            "evaluated": f"{metrics['videos_evaluated']}/{metrics['videos_listed']}",
            "top1": round(100 * top["top1"], 2), "top5": round(100 * top["top5"], 2),
            "top1_changed_vs_pyav": round(100 * float(np.mean(ours.argmax(1) != theirs.argmax(1))), 2),
            "max_prob_diff_vs_pyav": float(f"{np.abs(ours - theirs).max():.3g}"),
            "videos_with_notes": int(tables[backend].decoder_note.notna().sum()),
            "videos_per_s": round(metrics["videos_per_s"], 3),
        })
    return rows, json.loads((runs["pyav"] / "metrics.json").read_text())
