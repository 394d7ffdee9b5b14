"""Generated action videos: the offline sample set and the tests' corpus.

Kinetics cannot be downloaded here, so the harness makes its own labelled videos with PyAV. Each
video shows one object doing one motion (its class) over a textured background. The motion happens
in a random time window and at a random horizontal position, so a single centre clip can miss it
while 10 clips x 3 crops catch it. The set is written in the official Kinetics-400 layout (CSV,
``<root>/<label>/<id>_<start>_<end>.mp4``, ``kinetics_classnames.json``) and read back through the
same manifest code as a real copy.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

ACTIONS = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating anticlockwise",
    "growing",
    "shrinking",
)


@dataclass(frozen=True)
class ActionSetSpec:
    """Everything that determines a generated set; a change regenerates the cache."""

    videos_per_class: int = 1
    classes: int = len(ACTIONS)
    seconds: float = 4.0
    fps: int = 30
    width: int = 340
    height: int = 256
    action_fraction: float = 0.4  # share of the video during which the action happens
    seed: int = 0
    split: str = "validate"


def write_video(path: Path, frames: np.ndarray, fps: float, codec: str = "libx264",
                pix_fmt: str = "yuv420p", options: dict | None = None) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames into ``path`` with PyAV (no audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": "18"} if options is None and codec == "libx264" else (options or {})
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random texture: distracting, but static so it carries no motion class."""
    coarse = rng.integers(40, 200, size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.uint8)


def render_action(action: str, spec: ActionSetSpec, rng: np.random.Generator) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one object performing ``action`` in a random window."""
    n = max(int(round(spec.seconds * spec.fps)), 1)
    h, w = spec.height, spec.width
    background = _background(rng, h, w)
    colour = rng.integers(0, 256, size=3).astype(np.uint8)
    colour[rng.integers(0, 3)] = 255  # keep it visible against the mid-grey texture
    size = h // 5
    cx = rng.uniform(size * 1.5, w - size * 1.5)
    cy = h / 2 + rng.uniform(-h / 8, h / 8)
    span = max(int(n * spec.action_fraction), 2)
    start = int(rng.integers(0, n - span + 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    travel = h / 3
    for t in range(n):
        p = min(max((t - start) / (span - 1), 0.0), 1.0)  # 0 before, 1 after the action
        dx = dy = 0.0
        angle, radius = 0.0, size / 2
        if action == "moving left":
            dx = travel / 2 - p * travel
        elif action == "moving right":
            dx = -travel / 2 + p * travel
        elif action == "moving up":
            dy = travel / 2 - p * travel
        elif action == "moving down":
            dy = -travel / 2 + p * travel
        elif action == "rotating clockwise":
            angle = p * np.pi  # image y points down: increasing angle turns clockwise
        elif action == "rotating anticlockwise":
            angle = -p * np.pi
        elif action == "growing":
            radius = size * (0.25 + 0.75 * p)
        elif action == "shrinking":
            radius = size * (1.0 - 0.75 * p)
        else:
            raise ValueError(f"unknown action {action!r}; choose from {ACTIONS}")
        u, v = xx - (cx + dx), yy - (cy + dy)
        if action.startswith("rotating"):
            along = u * np.cos(angle) + v * np.sin(angle)
            across = -u * np.sin(angle) + v * np.cos(angle)
            # A bar with a knob at one end, so a half turn is not a symmetry.
            mask = ((np.abs(along) < size) & (np.abs(across) < size / 5)) | (
                (along - size) ** 2 + across**2 < (size / 3) ** 2)
        else:
            mask = u**2 + v**2 < radius**2
        frame = background.copy()
        frame[mask] = colour
        frames[t] = frame
    return frames


def video_name(index: int) -> tuple[str, int, int]:
    """(youtube_id, time_start, time_end) in the official CSV's terms for video ``index``."""
    return f"gen{index:07d}", 0, 10


def ensure_action_set(root: Path, spec: ActionSetSpec) -> Path:
    """Generate the set into ``root`` unless an identical one is there; return its CSV path.

    Written into a temporary folder and renamed when complete, so an interrupted generation never
    leaves a half set that a later run trusts.
    """
    root = Path(root)
    csv_path = root / f"{spec.split}.csv"
    stamp = root / "spec.json"
    if stamp.exists() and json.loads(stamp.read_text()) == asdict(spec) and csv_path.exists():
        return csv_path
    if not 1 <= spec.classes <= len(ACTIONS):
        raise ValueError(f"synthetic.classes must be in 1..{len(ACTIONS)}, got {spec.classes}")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".generating-", dir=root.parent))
    rng = np.random.default_rng(spec.seed)
    actions = ACTIONS[: spec.classes]
    rows = ["label,youtube_id,time_start,time_end,split"]
    index = 0
    for _ in range(spec.videos_per_class):
        for action in actions:
            youtube_id, t0, t1 = video_name(index)
            frames = render_action(action, spec, np.random.default_rng(rng.integers(2**63)))
            write_video(tmp / action / f"{youtube_id}_{t0:06d}_{t1:06d}.mp4", frames, spec.fps)
            rows.append(f'"{action}",{youtube_id},{t0},{t1},{spec.split}')
            index += 1
    (tmp / csv_path.name).write_text("\n".join(rows) + "\n")
    # Same format as the model card's kinetics_classnames.json: quoted name -> id.
    (tmp / "kinetics_classnames.json").write_text(
        json.dumps({f'"{name}"': i for i, name in enumerate(sorted(actions))}, indent=1))
    (tmp / stamp.name).write_text(json.dumps(asdict(spec)))
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return csv_path
