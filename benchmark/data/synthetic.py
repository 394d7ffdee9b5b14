"""Generated action videos: the offline sample set and the tests' corpus.

Kinetics cannot be downloaded here, so the harness makes its own labelled videos with PyAV. Each
video shows a red object doing one motion (its class) over a textured background, and a blue
distractor doing a random one. The motions happen in random time windows and at random horizontal
positions, so in a wide frame a single centre clip often misses the action while 10 clips x 3
crops catch it (the toy set, ``conf/data/toy.yaml``, is built for that). A set is written in the
official Kinetics-400 layout (CSV, ``<root>/<label>/<id>_<start>_<end>.mp4``,
``kinetics_classnames.json``) and read back through the same manifest code as a real copy.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from benchmark.data.files import file_lock

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
    distractor: bool = True  # a blue object doing a random action of the set
    seed: int = 0
    split: str = "validate"


# x264 at qp 0 (lossless) in yuv420p: the same frames give the same bytes in every process. At
# crf 18 PyAV's bundled libx264 (even on one thread) gave some videos other bytes in some
# processes (3 of the toy split's 48 among 8 processes generating it at once), decoded frames up
# to 5 levels apart, enough to move the regression check's probabilities past its tolerance.
# The mp4 stays H.264 in yuv420p, which PyAV, torchcodec and decord all decode alike
# (tests/test_decoders.py); FFV1, deterministic too, would need .mkv.
LOSSLESS_X264 = {"qp": "0"}


def write_video(path: Path, frames: np.ndarray, fps: float, codec: str = "libx264",
                pix_fmt: str = "yuv420p", options: dict | None = None) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames into ``path`` with PyAV (no audio).

    libx264 without ``options`` is lossless (``LOSSLESS_X264``), so a generated file is the same
    bytes on every run; ``options`` replace that (the tests' awkward files).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Bit-exact muxing: without it the mp4 names its muxer's version (Lavf62.12.102), so PyAV
    # 18.1.1's FFmpeg patch release alone changed one byte of every file and the regression check
    # refused its baseline's set ("the generated set differs"); the frames were the same.
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        # One encoder thread: x264's output depends on its thread count.
        stream.thread_count = 1
        stream.options = dict(LOSSLESS_X264 if options is None and codec == "libx264"
                              else options or {})
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random texture: distracting, but static so it carries no motion class.

    Every channel is drawn alike, so swapping red and blue leaves its statistics unchanged.
    """
    coarse = rng.integers(70, 170, size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.uint8)


@dataclass(frozen=True)
class _Mover:
    """One object: its action, colour, place, and the frames [start, start + span) it acts in."""

    action: str
    colour: np.ndarray
    cx: float
    cy: float
    start: int
    span: int

    def mask(self, t: int, size: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Pixels the object covers in frame ``t``: still before and after its window."""
        p = min(max((t - self.start) / max(self.span - 1, 1), 0.0), 1.0)
        travel = 4 * size / 3
        dx = dy = 0.0
        angle, radius = 0.0, size / 2
        if self.action == "moving left":
            dx = travel / 2 - p * travel
        elif self.action == "moving right":
            dx = -travel / 2 + p * travel
        elif self.action == "moving up":
            dy = travel / 2 - p * travel
        elif self.action == "moving down":
            dy = -travel / 2 + p * travel
        elif self.action == "rotating clockwise":
            angle = p * np.pi  # image y points down: increasing angle turns clockwise
        elif self.action == "rotating anticlockwise":
            angle = -p * np.pi
        elif self.action == "growing":
            radius = size * (0.25 + 0.75 * p)
        elif self.action == "shrinking":
            radius = size * (1.0 - 0.75 * p)
        u, v = xx - (self.cx + dx), yy - (self.cy + dy)
        if self.action.startswith("rotating"):
            along = u * np.cos(angle) + v * np.sin(angle)
            across = -u * np.sin(angle) + v * np.cos(angle)
            # A bar with a knob at one end, so a half turn is not a symmetry.
            return ((np.abs(along) < size) & (np.abs(across) < size / 4)) | (
                (along - size) ** 2 + across**2 < (size / 3) ** 2)
        return u**2 + v**2 < radius**2


def _mover(action: str, dominant: int, spec: ActionSetSpec, n: int, size: float,
           rng: np.random.Generator) -> _Mover:
    """An object doing ``action`` at a random place and time; ``dominant`` is its strong channel."""
    colour = rng.integers(0, 90, size=3).astype(np.uint8)
    colour[dominant] = rng.integers(200, 256)
    cx = rng.uniform(size * 1.5, spec.width - size * 1.5)
    cy = spec.height / 2 + rng.uniform(-spec.height / 8, spec.height / 8)
    span = min(max(int(n * spec.action_fraction), 2), n)
    return _Mover(action, colour, cx, cy, int(rng.integers(0, n - span + 1)), span)


def render_action(action: str, spec: ActionSetSpec, rng: np.random.Generator) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of a red object performing ``action`` in a random window.

    With ``spec.distractor`` a blue object of the same kinds does a random action of the set at
    its own place and time: only colour tells which object's action is the label, so a model
    that learned the set depends on colour, motion direction, time and place alike.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; choose from {ACTIONS}")
    n = max(int(round(spec.seconds * spec.fps)), 1)
    h, w = spec.height, spec.width
    size = min(h, w) / 4
    background = _background(rng, h, w)
    movers = [_mover(action, 0, spec, n, size, rng)]
    if spec.distractor:
        other = ACTIONS[int(rng.integers(0, spec.classes))]
        movers.insert(0, _mover(other, 2, spec, n, size, rng))  # drawn first: the actor is on top
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    for t in range(n):
        frame = background.copy()
        for mover in movers:
            frame[mover.mask(t, size, yy, xx)] = mover.colour
        frames[t] = frame
    return frames


def video_name(index: int) -> tuple[str, int, int]:
    """(youtube_id, time_start, time_end) in the official CSV's terms for video ``index``."""
    return f"gen{index:07d}", 0, 10


def _stamp(spec: ActionSetSpec) -> dict:
    """What a cached set was made from: the spec and this file's code (an edit regenerates)."""
    return {**asdict(spec), "generator": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}


def set_folder(synthetic: Mapping) -> str:
    """The cache folder's name for a set of this spec (``data.synthetic``) and this generator:
    its split and a short hash of its stamp. Two checkouts of different versions, or two specs,
    sharing one cache then each keep their own set instead of regenerating over each other.
    The data configs name it through the ``generated_set`` resolver (benchmark/__init__.py)."""
    spec = ActionSetSpec(**synthetic)
    digest = hashlib.sha256(json.dumps(_stamp(spec), sort_keys=True).encode()).hexdigest()
    return f"{spec.split}-{digest[:12]}"


def set_sha256(root: Path) -> dict[str, str]:
    """SHA-256 of each file of the generated set in ``root`` (its CSV, class names and videos) by
    path relative to ``root``: what a regression baseline keeps to tell a changed set from a
    changed model. The stamp (spec.json) is left out: it names the generator's source, which a
    comment changes without changing a byte of the set."""
    root = Path(root)
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != "spec.json"}


def ensure_action_set(root: Path, spec: ActionSetSpec) -> Path:
    """Generate the set into ``root`` unless an identical one is there; return its CSV path.

    Written into a temporary folder and renamed when complete, so an interrupted generation never
    leaves a half set that a later run trusts.
    """
    root = Path(root)
    csv_path = root / f"{spec.split}.csv"
    if _complete(root, spec):
        return csv_path
    # Two runs starting together on a fresh machine (a sweep, test workers) generate it once: the
    # second waits and finds it done, instead of deleting the first one's set under its reader.
    with file_lock(root):
        if _complete(root, spec):
            return csv_path
        return _generate(root, spec, csv_path)


def _complete(root: Path, spec: ActionSetSpec) -> bool:
    stamp = root / "spec.json"
    return (stamp.exists() and json.loads(stamp.read_text()) == _stamp(spec)
            and (root / f"{spec.split}.csv").exists())


def _generate(root: Path, spec: ActionSetSpec, csv_path: Path) -> Path:
    stamp = root / "spec.json"
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
    (tmp / stamp.name).write_text(json.dumps(_stamp(spec)))
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return csv_path
