"""``python -m benchmark.decoders [overrides]`` (``make decoders``): PyAV, torchcodec and decord on
the six shared videos and the sample set (results/decoders.csv/.md), the toy model's accuracy
under each (results/decoders-accuracy.csv/.md), both on docs/decoders.md; the work is
benchmark/run/decoder_compare.py."""

from __future__ import annotations

PAGE = """# Decoders: PyAV, torchcodec, decord

[Back to the README](../README.md)

`decoder=pyav` (default) | `torchcodec` | `decord` picks the library that decodes the videos
(`conf/decoder/`, `benchmark/data/decoders.py`). Every backend gives the shared view code the same
value (frames in presentation order and their timestamps), so each protocol picks clips the same
way; the decoder and its version are part of the run's fingerprint, and a table row names a
decoder other than PyAV in its protocol cell. The stream header (time base, start, duration,
rate) is read with PyAV for every backend, as pytorchvideo reads it. What differs:

- **Clips while decoding**: PyAV cuts each clip as soon as its frames are decoded and lets the
  rest go; torchcodec and decord decode the whole file to RGB first (frames x H x W x 3 bytes in
  the loader worker: 1.8 GB for 10 s of 1080p).
- **Decoder order**: only PyAV says in which order its decoder produced the frames, which
  pytorchvideo 0.1.5's per-clip decode stops by (a packed-B-frame AVI loses a frame in some
  clips); under the other two that order is the presentation order.
- **Where a backend disagrees with itself** (torchcodec's index lists a frame it cannot decode;
  decord has no timestamps for a file, so frame times come from the frame rate), the run logs it
  and records it in the video's `decoder_note` in predictions.parquet; metrics.json counts them
  (`videos_with_decoder_notes`).
- **Setup**: torchcodec needs FFmpeg's shared libraries from the system (`make install`
  installs them with apt-get when missing; without them a run stops before any work with one
  line saying what to install). decord 0.6.0 installs from its wheel. Both: the `decoders`
  extra, part of `test`.
- The loader's crash isolation, stuck-decode timeout and memory bound are the loader's, the
  same for every backend (tests/test_decoders.py kills a decord worker as a decoder segfault
  would: recorded as a PyAV one is, kind `crash`).

## Measured: `make decoders`

On the five ordinary shared videos and the generated sample set the three backends give the
same frames (max pixel difference 0) at the same timestamps. The packed-B-frame AVI
(`xvid_packed_bframes.avi`, XviD with B-frames packed two to an AVI chunk, which has no
presentation times) is where they part: the frames PyAV decodes carry times out of order (1, 2,
4, 3, 5, 7, 6, ...: the decoder gives frames in display order, the times are the AVI chunks'),
so sorted by time, as the harness and pytorchvideo sort them, two of every three frames swap
places with a neighbour; torchcodec and decord give the decoder's order (the same pictures:
`frames_moved`, `moved_by` -1/+1).
torchcodec's index lists 164 frames and decoding frame 164 fails (163 decoded); decord has no
timestamps for the file, so its frame times come from the rate, one tick before PyAV's (the
`pts_only_*` columns). A run under either records that note with the video; the clips of the
protocols then come from the backend's frames, so on such files the backends' views differ
from PyAV's, and pytorchvideo's own (PyAV) pipeline's. Timing: one thread, whole file to RGB,
CPU seconds (see the note); PyAV's streamed clip cutting in a run (views.py) is not timed here.

{frames_note}

{frames}

{accuracy_note}

{accuracy}
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmark.decoders [overrides]`` (``make decoders``)."""
    import argparse
    import os
    import sys
    from pathlib import Path

    import pandas as pd
    from hydra import compose, initialize_config_dir

    from benchmark import CONF_DIR
    from benchmark.data.decoders import BACKENDS, BackendUnavailable, check_available, version
    from benchmark.data.synthetic import ActionSetSpec, ensure_action_set
    from benchmark.results.tables import to_markdown, write_table
    from benchmark.run.decoder_compare import accuracy_rows, frame_rows
    from benchmark.run.regression import TOY_OVERRIDES, CheckError, merge_overrides

    parser = argparse.ArgumentParser(prog="python -m benchmark.decoders", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the accuracy runs, on "
                        "top of the toy model on the toy set")
    parser.add_argument("--videos", type=Path, default=Path("../shared/videos"),
                        help="the real test videos (default ../shared/videos)")
    parser.add_argument("--out", type=Path, default=Path("results/decoders"))
    parser.add_argument("--page", type=Path, default=Path("docs/decoders.md"))
    parser.add_argument("--run-dir", type=Path, default=Path("outputs/decoders"),
                        help="where each decoder's run goes (replaced each time)")
    args = parser.parse_args(argv)
    try:
        for backend in BACKENDS:
            check_available(backend)
    except BackendUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    real = sorted(p for p in args.videos.glob("*") if p.suffix in (".mp4", ".mkv", ".avi"))
    if not real:
        print(f"error: --videos {args.videos}: no .mp4/.mkv/.avi files", file=sys.stderr)
        return 2
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        sample = compose("eval", overrides=["data=sample"]).data
    csv = ensure_action_set(Path(sample.root), ActionSetSpec(**sample.synthetic))
    paths = real + sorted(Path(csv).parent.rglob("*.mp4"))

    load = os.getloadavg()[0]
    frames = pd.DataFrame(frame_rows(paths))
    frames_note = (
        f"`make decoders`: each backend on the {len(real)} shared videos ({args.videos}) and the "
        f"{len(paths) - len(real)} sample-set videos; {', '.join(f'{b} {version(b)}' for b in BACKENDS)}. "
        "frames: distinct frames decoded (frames_pyav: PyAV's). Against PyAV, over the "
        "timestamps both have: max_pixel_diff (0-255, RGB), frames_differing, frames_moved (a "
        "differing frame that equals PyAV's frame a few indices away: the same pictures in "
        "another order; moved_by: the offsets); pts_only_pyav / pts_only_this: timestamps only one "
        "side has. decode_cpu_s: whole file to RGB with one FFmpeg thread, CPU seconds of the "
        "process (all its threads), the best of 5 rounds that time each backend in turn; "
        "decode_vs_pyav: its ratio to PyAV's; decode_wall_s: the same in wall seconds (on a "
        f"machine with {os.cpu_count()} cores at load average {load:.1f} as this began: "
        "other jobs' load moves wall seconds far more than CPU seconds). notes: what "
        "the backend says against itself (recorded per video in a run).")
    write_table(args.out, frames, frames_note)
    try:
        rows, metrics = accuracy_rows(merge_overrides(TOY_OVERRIDES, args.overrides),
                                      args.run_dir)
    except CheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    accuracy = pd.DataFrame(rows)
    accuracy_note = (
        f"`make decoders` (python -m benchmark.decoders {' '.join(args.overrides)}): "
        f"{metrics['model']} ({metrics['weights']} weights) on {metrics['dataset']}, "
        f"{metrics['clips']}x{metrics['crops']} views, protocol {metrics['protocol']}, "
        f"{metrics['device']} {metrics['precision']}; finished {metrics['finished']}. Over the "
        "videos every decoder's run evaluated: top1/top5 and the share of videos whose top-1 "
        "changes against PyAV in %; max_prob_diff: the largest difference of one class's "
        "averaged probability from PyAV's; videos_with_notes: prediction rows with a "
        "decoder_note.")
    stem = args.out.with_name(args.out.name + "-accuracy")
    write_table(stem, accuracy, accuracy_note)
    args.page.write_text(PAGE.format(frames_note=frames_note, frames=to_markdown(frames).strip(),
                                     accuracy_note=accuracy_note,
                                     accuracy=to_markdown(accuracy).strip()))
    print(frames.to_markdown(index=False))
    print(accuracy.to_markdown(index=False))
    print(f"tables: {args.out.with_suffix('.md')}, {stem.with_suffix('.md')}; page: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
