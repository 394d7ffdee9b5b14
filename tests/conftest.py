"""Shared fixtures, made once per session: generated videos, a data set, a tiny SlowFast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import benchmark.frameworks.pytorchvideo  # noqa: F401  (its torchvision alias before pytorchvideo)
from benchmark.run.models import build_model
from benchmark.data.synthetic import ActionSetSpec, ensure_action_set, render_action, write_video
from benchmark.data.decode import decode_video
from benchmark.frameworks import timing
from benchmark.frameworks.views import InputSpec, sample_clips



def repo_root(tests_file: str | Path) -> Path:
    """The folder holding tests/, as the user reached it. Python and pytest give the file's path
    resolved through symlinks (so does os.getcwd()); the shell's $PWD keeps the path as typed,
    so that a clone reached through a link finds the ``../shared`` beside the link."""
    physical = Path(os.path.abspath(tests_file)).parents[1]
    pwd = os.environ.get("PWD", "")
    if os.path.isabs(pwd):
        pwd_path = Path(pwd)
        for above in (pwd_path, *pwd_path.parents):  # pytest run in the root or below it
            if above.resolve() == physical.resolve():
                return above
    return physical


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def shared_video_places(root: Path) -> list[Path]:
    """Where the real test videos may be, in order: ``../shared/videos`` from the repository
    root; for a git worktree, beside the main checkout (the common .git dir's parent); for a
    clone of a local checkout, beside that checkout (its origin)."""
    places = [root.parent / "shared" / "videos", root.resolve().parent / "shared" / "videos"]
    common = _git(root, "rev-parse", "--path-format=absolute", "--git-common-dir")
    if common:
        places.append(Path(common).parent.parent / "shared" / "videos")
    origin = _git(root, "config", "--get", "remote.origin.url")
    if origin and Path(root, origin).is_dir():  # a local path (relative ones from the root)
        source = Path(os.path.abspath(Path(root, origin)))
        source = source.parent if source.name == ".git" else source
        places.append(source.parent / "shared" / "videos")
    return list(dict.fromkeys(places))


def find_shared_videos(root: Path) -> Path | None:
    """The first of ``shared_video_places(root)`` that is a folder; None when none is."""
    return next((place for place in shared_video_places(root) if place.is_dir()), None)


REPO = repo_root(__file__)
CONF_DIR = str(REPO / "conf")
# The six real test videos (never committed), and why a test that needs one skips without it.
SHARED_VIDEOS = find_shared_videos(REPO) or shared_video_places(REPO)[0]
REAL_NAMES = ["k400_30fps.mp4", "k400_28fps.mp4", "ntsc_29.97fps.mp4", "short_1s.mp4",
              "no_header_duration.mkv", "xvid_packed_bframes.avi"]


def real_video_missing(name: str) -> str:
    """The skip reason for a real test video that is not here, naming where it was looked for."""
    tried = ", ".join(str(p) for p in shared_video_places(REPO))
    return f"{name} is not here (the real test videos live in ../shared/videos; tried {tried})"

# The tiny model's test input: 8 frames, 32 px, alpha 4 (conf/model/slowfast_tiny.yaml).
TINY_SPEC = InputSpec(num_frames=8, sampling_rate=8, frames_per_second=30, side_size=32,
                      crop_size=32, mean=(0.45,) * 3, std=(0.225,) * 3, alpha=4)


def compose_eval(*overrides: str):
    """The eval config as the CLI composes it (no Hydra run needed)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose("eval", overrides=list(overrides))


def make_video(path: Path, width: int, height: int, seconds: float, action: str = "moving left",
               seed: int = 0, **encode) -> Path:
    spec = ActionSetSpec(seconds=seconds, width=width, height=height)
    frames = render_action(action, spec, np.random.default_rng(seed))
    return write_video(path, frames, spec.fps, **encode)


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Short generated videos of the shapes the views must handle."""
    root = tmp_path_factory.mktemp("videos")
    return {
        "landscape": make_video(root / "landscape.mp4", 170, 128, 3.0),
        "portrait": make_video(root / "portrait.mp4", 96, 160, 3.0, action="moving up", seed=1),
        "short": make_video(root / "short.mp4", 64, 48, 0.5, seed=2),
    }


@pytest.fixture(scope="session")
def action_set(tmp_path_factory) -> Path:
    """A small labelled set in the official Kinetics layout; returns its root."""
    root = tmp_path_factory.mktemp("actions") / "set"
    ensure_action_set(root, ActionSetSpec(videos_per_class=1, classes=4, seconds=2.5,
                                          width=112, height=64, seed=3))
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny SlowFast's weights in the official .pyth layout ({"model_state": ...})."""
    torch.manual_seed(0)
    cfg = compose_eval("model=slowfast_tiny", "model.num_classes=4")
    module = build_model(cfg.model).module
    path = tmp_path_factory.mktemp("weights") / "tiny.pyth"
    torch.save({"model_state": module.state_dict()}, path)
    return path


def run_eval(*overrides, check=True, env=None):
    """The real entry point, ``python -m benchmark.eval``, in a subprocess (``env``: its
    environment, else this one's)."""
    result = subprocess.run([sys.executable, "-m", "benchmark.eval", *overrides], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env=env)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


@pytest.fixture(scope="session")
def kinetics_run(action_set, tiny_checkpoint, tmp_path_factory):
    """A finished run of the CLI over the generated set plus one listed video not on disk:
    (folder, overrides, CompletedProcess); the run dir is folder / "out". 5 views a batch for
    12 a video: batches span videos, end to end."""
    tmp = tmp_path_factory.mktemp("run")
    csv = tmp / "val.csv"
    csv.write_text((action_set / "validate.csv").read_text() + '"moving left",notthere,0,10,validate\n')
    overrides = [
        "model=slowfast_tiny", "model.num_classes=4", f"model.weights={tiny_checkpoint}",
        "data=kinetics400", f"data.csv={csv}", f"data.root={action_set}",
        f"data.class_names={action_set / 'kinetics_classnames.json'}", "views.clips=4",
        "protocol=pytorchvideo", "eval.batch_views=5", "device=cpu",
        f"results_dir={tmp / 'results'}", f"hydra.run.dir={tmp / 'out'}",
    ]
    result = run_eval(*overrides)
    return tmp, overrides, result


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny SlowFast with the checkpoint's weights (a test that moves it puts it back)."""
    cfg = compose_eval("model=slowfast_tiny", "model.num_classes=4",
                       f"model.weights={tiny_checkpoint}")
    return build_model(cfg.model)


@pytest.fixture(scope="session")
def tiny_clips(videos, tiny_model):
    """The test videos' 4 clips each (landscape, portrait, and one shorter than a clip)."""
    return [sample_clips(decode_video(path), tiny_model.spec, 4, timing("pytorchvideo_0.1.5"))
            for path in videos.values()]
