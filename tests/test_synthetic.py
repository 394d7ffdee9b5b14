"""Generated action sets: deterministic, the label in the red object's motion, cached on disk."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.data import synthetic
from benchmark.data.load import load_dataset
from benchmark.data.manifest import read_manifest
from benchmark.data.synthetic import ACTIONS, ActionSetSpec, ensure_action_set, render_action

from conftest import compose_eval

SPEC = ActionSetSpec(seconds=2.0, width=80, height=32, action_fraction=0.3)


def mask(frames: np.ndarray, channel: int) -> np.ndarray:
    """Pixels of the object whose strong channel is ``channel`` (the texture never gets there)."""
    others = [c for c in range(3) if c != channel]
    return (frames[..., channel] >= 200) & (frames[..., others] < 90).all(-1)


def centroid(pixels: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(pixels)
    return np.array([xs.mean(), ys.mean()])


def test_a_seed_fixes_the_video():
    first = render_action("growing", SPEC, np.random.default_rng(1))
    assert np.array_equal(first, render_action("growing", SPEC, np.random.default_rng(1)))
    assert not np.array_equal(first, render_action("growing", SPEC, np.random.default_rng(2)))


@pytest.mark.parametrize("action", ACTIONS)
def test_the_red_object_does_the_action_in_a_minority_window(action):
    frames = render_action(action, SPEC, np.random.default_rng(5))
    red = mask(frames, 0)
    n = len(frames)
    moving = [t for t in range(1, n) if (red[t] != red[t - 1]).any()]
    assert moving and moving[-1] - moving[0] + 1 <= SPEC.action_fraction * n
    before, middle, after = red[moving[0] - 1], red[moving[len(moving) // 2]], red[moving[-1]]
    (x0, y0), (x1, y1) = centroid(before), centroid(after)
    expected = {
        "moving left": x1 < x0 - 2, "moving right": x1 > x0 + 2,
        "moving up": y1 < y0 - 2, "moving down": y1 > y0 + 2,
        "growing": after.sum() > 4 * before.sum(), "shrinking": before.sum() > 4 * after.sum(),
        # The bar starts level with its knob on the right; image y points down, so a
        # clockwise quarter turn brings the knob (and the centroid) below its start.
        "rotating clockwise": centroid(middle)[1] > y0 + 1,
        "rotating anticlockwise": centroid(middle)[1] < y0 - 1,
    }
    assert expected[action]


def test_the_blue_distractor_moves_and_can_be_left_out():
    frames = render_action("moving left", SPEC, np.random.default_rng(3))
    blue = mask(frames, 2)
    assert blue.any(axis=(1, 2)).all() and (blue[1:] != blue[:-1]).any()
    plain = render_action("moving left", ActionSetSpec(**{**SPEC.__dict__, "distractor": False}),
                          np.random.default_rng(3))
    assert not mask(plain, 2).any()


def test_a_set_is_written_in_the_kinetics_layout_and_cached(tmp_path):
    spec = ActionSetSpec(videos_per_class=2, classes=3, seconds=1.0, width=48, height=32, seed=4)
    csv = ensure_action_set(tmp_path / "set", spec)
    manifest = read_manifest(csv, tmp_path / "set", tmp_path / "set" / "kinetics_classnames.json")
    assert [v.label_name for v in manifest.videos] == list(ACTIONS[:3]) * 2
    assert all(v.path is not None for v in manifest.videos)
    assert manifest.class_names == sorted(ACTIONS[:3])
    stamp = (tmp_path / "set" / "spec.json").stat().st_mtime_ns
    ensure_action_set(tmp_path / "set", spec)  # identical: reused
    assert (tmp_path / "set" / "spec.json").stat().st_mtime_ns == stamp
    first = manifest.videos[0].path.read_bytes()
    # Made again elsewhere, byte for byte the same (the regression baseline is measured on it).
    ensure_action_set(tmp_path / "again", spec)
    again = tmp_path / "again" / manifest.videos[0].path.relative_to(tmp_path / "set")
    assert again.read_bytes() == first
    ensure_action_set(tmp_path / "set", ActionSetSpec(**{**spec.__dict__, "seed": 5}))
    assert manifest.videos[0].path.read_bytes() != first
    assert json.loads((tmp_path / "set" / "spec.json").read_text())["seed"] == 5


def test_runs_starting_together_generate_a_set_once_and_none_loses_it(tmp_path):
    """Two processes asking for the same set on a fresh machine (a sweep's jobs, test workers):
    one generates, the other waits and reads it; before the lock the second deleted the first
    one's finished set (and its files under any reader) to put its own in place."""
    import subprocess
    import sys

    root = tmp_path / "set"
    code = ("import sys, time; from pathlib import Path; "
            "from benchmark.data.synthetic import ActionSetSpec, ensure_action_set; "
            "root = Path(sys.argv[1]); csv = ensure_action_set(root, ActionSetSpec("
            "videos_per_class=4, classes=4, seconds=2.0, width=64, height=48)); "
            "first = root.stat().st_ino; time.sleep(1.5); "
            "print(first, root.stat().st_ino, len(csv.read_text().splitlines()))")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outs = [run.communicate(timeout=120)[0].split() for run in runs]
    assert all(run.returncode == 0 for run in runs)
    ino = str(root.stat().st_ino)
    assert outs[0] == outs[1] == [ino, ino, "17"]  # one set, never replaced under a reader
    assert not list(tmp_path.glob(".generating-*"))


def test_separate_processes_encode_the_same_frames_into_the_same_bytes(tmp_path):
    """At crf 18 PyAV's libx264 gave one or two of the toy set's 48 videos other bytes in about
    one generation of three; lossless (qp 0) is the same bytes in every process. Eight processes
    at once, each encoding the toy set's frame size and two actions."""
    code = ("import sys; import numpy as np; from pathlib import Path; "
            "from benchmark.data.synthetic import ActionSetSpec, render_action, write_video; "
            "spec = ActionSetSpec(seconds=1.0, width=160, height=64, action_fraction=0.35); "
            "[write_video(Path(sys.argv[1]) / f'{i}.mp4', render_action(a, spec, "
            "np.random.default_rng(i)), spec.fps) for i, a in enumerate(['growing', 'moving up'])]")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / str(n))])
            for n in range(8)]
    assert all(run.wait(timeout=300) == 0 for run in runs)
    for name in ("0.mp4", "1.mp4"):
        digests = {hashlib.sha256((tmp_path / str(n) / name).read_bytes()).hexdigest()
                   for n in range(8)}
        assert len(digests) == 1, f"{name}: {len(digests)} different encodings in 8 processes"


def test_a_written_file_does_not_name_the_muxers_version(tmp_path):
    """FFmpeg's muxer writes its version (``Lavf62.12.102``) into every mp4 unless muxing is
    bit-exact: PyAV 18.1.0 -> 18.1.1 changed that byte in every generated file, and the regression
    check refused its baseline's set though the frames were the same."""
    frames = render_action("growing", ActionSetSpec(seconds=0.5, width=64, height=48),
                           np.random.default_rng(0))
    data = synthetic.write_video(tmp_path / "a.mp4", frames, 30).read_bytes()
    assert b"Lavf" not in data and b"x264 - core" in data  # the encoder's own note stays


@pytest.mark.slow
def test_the_regression_set_is_the_same_bytes_in_every_process(tmp_path):
    """The issue's measurement: the toy held-out split (make regression's 48 videos) generated by
    six processes at once, each into an empty cache; on crf 18 this found 3 of the 48 videos
    encoded differently by one of eight processes."""
    code = ("import sys, json; from pathlib import Path; sys.path.insert(1, 'tests'); "
            "from conftest import compose_eval; from benchmark.data.load import load_dataset; "
            "from benchmark.data.synthetic import set_sha256; "
            "data = compose_eval('data=toy', f'cache_dir={sys.argv[1]}').data; load_dataset(data); "
            "print(json.dumps(set_sha256(Path(data.root))))")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / str(n))],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
            for n in range(6)]
    sets = [json.loads(run.communicate(timeout=600)[0]) for run in runs]
    assert len(sets[0]) == 48 + 2
    differ = sorted(name for name in sets[0] if len({s.get(name) for s in sets}) > 1)
    assert not differ, f"{len(differ)} files differ among 6 generations: {differ}"


def test_sets_of_two_specs_or_generators_coexist_in_one_cache(tmp_path, monkeypatch):
    """The cache folder is keyed by the spec and the generator's source (``set_folder``): a
    checkout of another version, or another spec, sharing the cache makes its own set beside
    this one instead of regenerating over it."""
    small = ["data=toy", f"cache_dir={tmp_path}", "data.synthetic.videos_per_class=1",
             "data.synthetic.classes=2", "data.synthetic.seconds=0.5"]

    def made(*overrides: str) -> Path:
        data = compose_eval(*small, *overrides).data
        load_dataset(data)
        return Path(data.root)

    first = made()
    stamp = (first / "spec.json").stat().st_mtime_ns
    other_spec = made("data.synthetic.seed=7")
    real_stamp = synthetic._stamp
    monkeypatch.setattr(synthetic, "_stamp", lambda spec: {**real_stamp(spec), "generator": "v2"})
    other_generator = made()
    monkeypatch.undo()
    assert made() == first and (first / "spec.json").stat().st_mtime_ns == stamp  # not remade
    assert len({first, other_spec, other_generator}) == 3
    assert all(root.parent == tmp_path / "toy" and root.name.startswith("validate-")
               for root in (first, other_spec, other_generator))
    assert all((root / "validate.csv").is_file() for root in (first, other_spec, other_generator))
