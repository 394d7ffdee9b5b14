"""The transformers adapter (benchmark/frameworks/transformers.py): tiny configs of each
architecture built here, saved with save_pretrained and loaded back through the real path (no
downloads); strict loading; the authors' temporal samplers; views equal to the transformers
processors' output on the shared videos; FLOPs in both attention conventions; X-CLIP by text."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers")

import benchmark.frameworks.transformers as hf  # noqa: E402
from benchmark.data.decode import DecodedVideo, decode_video  # noqa: E402
from benchmark.frameworks.views import InputSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "videos"
MODELS = ("videomae_base_k400", "timesformer_base_k400", "vivit_b_16x2_k400", "xclip_base_p32_k400")
CLASSES = ["abseiling", "air drumming", "answering questions", "applauding"]

# Tiny versions of each architecture (same code paths, seconds to build).
TINY = {
    "videomae": dict(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
                     num_hidden_layers=2, num_attention_heads=2, intermediate_size=37),
    "timesformer": dict(image_size=32, patch_size=16, num_frames=4, hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=37),
    "vivit": dict(image_size=32, num_frames=4, tubelet_size=[2, 16, 16], hidden_size=32,
                  num_hidden_layers=2, num_attention_heads=2, intermediate_size=37),
    "xclip": dict(projection_dim=16, prompt_layers=1, prompt_num_attention_heads=2,
                  text_config=dict(vocab_size=600, hidden_size=16, intermediate_size=24,
                                   num_hidden_layers=1, num_attention_heads=2,
                                   max_position_embeddings=32),
                  vision_config=dict(image_size=32, patch_size=16, num_frames=4, hidden_size=32,
                                     intermediate_size=37, num_hidden_layers=2,
                                     num_attention_heads=2, mit_hidden_size=16,
                                     mit_intermediate_size=24, mit_num_hidden_layers=1,
                                     mit_num_attention_heads=2)),
}


def model_cfg(name: str):
    return OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")


def protocol_cfg(name: str):
    return OmegaConf.load(REPO / "conf" / "protocol" / f"{name}.yaml")


def tiny_cfg(name: str, weights: str = "random"):
    cfg = model_cfg(name)
    arch = cfg.builder.architecture
    cfg.builder.config = TINY[arch]
    cfg.builder.preprocessor.shortest_edge = 36 if arch == "vivit" else 32
    cfg.builder.preprocessor.crop_size = [32, 32]
    cfg.source = "local/not-cached"  # never in the hub cache: random init when auto
    cfg.num_classes = len(CLASSES)
    cfg.input.num_frames = 4
    # model.input's sizes follow builder.preprocessor's (build refuses a difference).
    cfg.input.side_size = cfg.builder.preprocessor.shortest_edge
    cfg.input.crop_size = 32
    cfg.weights = weights
    return cfg


def spec_of(cfg) -> InputSpec:
    i = cfg.input
    return InputSpec(num_frames=i.num_frames, sampling_rate=i.sampling_rate,
                     frames_per_second=i.frames_per_second, side_size=i.side_size,
                     crop_size=i.crop_size, mean=tuple(i.mean), std=tuple(i.std))


def build_quiet(cfg, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.build(cfg, **kw)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each tiny architecture built with random weights and saved as save_pretrained does
    (X-CLIP with a byte-level CLIP tokenizer beside it)."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name in MODELS:
        cfg = tiny_cfg(name)
        torch.manual_seed(0)
        module = build_quiet(cfg, class_names=CLASSES)
        model = module.model if isinstance(module, hf.XCLIPClassifier) else module
        path = root / name
        model.save_pretrained(path)
        if isinstance(module, hf.XCLIPClassifier):
            hf.load_tokenizer(None).save_pretrained(path)
        out[name] = path
    return out


def _safetensors(path: Path):
    from safetensors.torch import load_file, save_file

    file = path / "model.safetensors"
    return file, load_file(file), save_file


# --- building and strict loading --------------------------------------------------------------

def test_random_init_warns_loudly():
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        hf.build(tiny_cfg("videomae_base_k400", weights="auto"))


@pytest.mark.parametrize("name", MODELS)
def test_saved_checkpoint_loads_back_strictly(name, saved):
    torch.manual_seed(0)
    first = build_quiet(tiny_cfg(name), class_names=CLASSES)
    loaded = hf.build(tiny_cfg(name, weights=str(saved[name])), class_names=CLASSES)
    x = torch.randn(2, 4, 3, 32, 32)
    assert torch.allclose(hf.logits(first, x), hf.logits(loaded, x), atol=1e-5)


@pytest.mark.parametrize("edit", ["missing", "unexpected", "mismatched"])
def test_checkpoint_with_a_bad_key_is_refused(edit, saved, tmp_path):
    import shutil

    path = tmp_path / "ckpt"
    shutil.copytree(saved["videomae_base_k400"], path)
    file, state, save_file = _safetensors(path)
    key = "classifier.weight"
    if edit == "missing":
        del state[key]
    elif edit == "unexpected":
        state["extra.head.weight"] = torch.zeros(3)
    else:
        state[key] = torch.zeros(7, state[key].shape[1])
    save_file(state, file, metadata={"format": "pt"})
    with pytest.raises(hf.CheckpointError) as err:
        hf.build(tiny_cfg("videomae_base_k400", weights=str(path)))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert f"{edit}: " in msg and (("extra.head.weight" if edit == "unexpected" else key) in msg)


def test_expected_keys_are_accepted(saved, tmp_path):
    import shutil

    path = tmp_path / "ckpt"
    shutil.copytree(saved["videomae_base_k400"], path)
    file, state, save_file = _safetensors(path)
    state["extra.head.weight"] = torch.zeros(3)
    save_file(state, file, metadata={"format": "pt"})
    cfg = tiny_cfg("videomae_base_k400", weights=str(path))
    cfg.builder.expected_keys = ["extra.*"]
    hf.build(cfg)


def test_videomae_original_q_v_bias_names_load(saved, tmp_path):
    """The authors' checkpoints name the attention biases q_bias/v_bias; transformers >= 5.23
    maps them (earlier 5.x zeroed them with a log line): loaded, not refused, not zero."""
    import shutil

    path = tmp_path / "ckpt"
    shutil.copytree(saved["videomae_base_k400"], path)
    file, state, save_file = _safetensors(path)
    old = {}
    for k, v in state.items():
        k = k.replace("attention.attention.query.bias", "attention.attention.q_bias")
        old[k.replace("attention.attention.value.bias", "attention.attention.v_bias")] = v
    assert any("q_bias" in k for k in old)
    for k in old:
        if k.endswith("q_bias"):
            old[k] = torch.full_like(old[k], 0.25)
    save_file(old, file, metadata={"format": "pt"})
    model = hf.build(tiny_cfg("videomae_base_k400", weights=str(path)))
    bias = model.videomae.encoder.layer[0].attention.attention.query.bias
    assert torch.all(bias == 0.25)


def test_old_transformers_is_refused(monkeypatch):
    """When a transformers model is built; the version every run records is read from the
    package's metadata and refuses nothing (a pytorchvideo run does not need transformers)."""
    import transformers

    monkeypatch.setattr(transformers, "__version__", "5.22.2")
    with pytest.raises(RuntimeError, match=">= 5.23"):
        hf.hf_config(tiny_cfg("videomae_base_k400"))
    assert hf.version()["transformers"] != "not installed"


def test_preprocessor_file_that_disagrees_is_refused(saved, tmp_path):
    import json
    import shutil

    path = tmp_path / "ckpt"
    shutil.copytree(saved["timesformer_base_k400"], path)
    (path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
         "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}))
    with pytest.raises(hf.CheckpointError, match="image_mean"):
        hf.build(tiny_cfg("timesformer_base_k400", weights=str(path)))


def test_a_path_without_a_checkpoint_is_one_line(tmp_path):
    with pytest.raises(hf.CheckpointError, match="not a save_pretrained directory"):
        hf.build(tiny_cfg("vivit_b_16x2_k400", weights=str(tmp_path)))


@pytest.mark.parametrize("name,params_m", [("videomae_base_k400", 86.5),
                                           ("videomae_base_ssv2", 86.4),
                                           ("timesformer_base_k400", 121.6),
                                           ("vivit_b_16x2_k400", 89.0),
                                           ("xclip_base_p32_k400", 196.6)])
def test_full_size_configs_have_the_published_parameter_counts(name, params_m):
    """Built from the yaml's hyper-parameters alone (meta device: no memory, no weights). X-CLIP
    counts the whole XCLIPModel: text and vision encoders, MIT, prompt generator, projections."""
    cfg = model_cfg(name)
    with torch.device("meta"):
        model = hf._model_cls(cfg)(hf.hf_config(cfg))
    assert round(hf.num_params(model) / 1e6, 1) == params_m


# --- X-CLIP by the class names' text -----------------------------------------------------------

def test_xclip_classifier_equals_xclip_forward(saved):
    module = hf.build(tiny_cfg("xclip_base_p32_k400", weights=str(saved["xclip_base_p32_k400"])),
                      class_names=CLASSES)
    assert module.prompts == CLASSES  # the authors' "{}" prompt
    x = torch.randn(3, 4, 3, 32, 32)
    with torch.no_grad():
        ours = module(x)
        theirs = module.model(input_ids=module.input_ids, attention_mask=module.attention_mask,
                              pixel_values=x).logits_per_video
    assert ours.shape == (3, len(CLASSES))
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_xclip_needs_class_names():
    with pytest.raises(ValueError, match="class names"):
        build_quiet(tiny_cfg("xclip_base_p32_k400"))


# --- temporal samplers against the authors' code, restated here ---------------------------------
# Each reference below restates its authors' code from the lines cited (never the adapter's
# formulas): MCG-NJU/VideoMAE 14ef8d8, facebookresearch/TimeSformer a5ef29a, deepmind/dmvr
# adf78b7 (+ FFmpeg's fps filter), microsoft/VideoX 1744b21.

def fake_video(n: int, fps: float, first_pts: int = 0) -> DecodedVideo:
    tb = Fraction(1, 90000)
    step = 90000 / fps
    pts = [first_pts + int(round(i * step)) for i in range(n)]
    return DecodedVideo(frames=[None] * n, pts=pts, time_base=tb, start_pts=0,
                        end_pts=pts[-1] + int(step), header_duration=True, decoded_pts=pts,
                        average_fps=fps)


def videomae_reference(n, clip_len, rate, segs):
    """VideoMAE kinetics.py 244-246 (loadvideo_decord, test: all_index) and 141-149
    (__getitem__, test: temporal_step, temporal_start)."""
    all_index = [x for x in range(0, n, rate)]
    while len(all_index) < clip_len:
        all_index.append(all_index[-1])
    buffer = np.array(all_index)
    out = []
    for chunk_nb in range(segs):
        temporal_step = max(1.0 * (buffer.shape[0] - clip_len) / (segs - 1), 0)
        temporal_start = int(chunk_nb * temporal_step)
        out.append(buffer[temporal_start:temporal_start + clip_len].tolist())
    return out


def pyslowfast_reference(n, fps, rate, num_frames, clips, target_fps=30):
    """TimeSformer timesformer/datasets/decoder.py 383-390 (decode), 30-57 get_start_end_idx,
    10-25 temporal_sampling."""
    out = []
    for clip_idx in range(clips):
        clip_size = rate * num_frames / target_fps * fps
        delta = max(n - clip_size, 0)
        start_idx = delta * clip_idx / clips
        end_idx = start_idx + clip_size - 1
        index = torch.linspace(start_idx, end_idx, num_frames)
        out.append(torch.clamp(index, 0, n - 1).long().tolist())
    return out


def ffmpeg_fps_reference(pts, time_base, rate):
    """FFmpeg's fps filter (the DMVR example's extract_frames, dmvr examples/generate_from_file.py
    101) as a stream: each input frame's timestamp rescaled to 1 / rate ticks rounding to
    nearest (AV_ROUND_NEAR_INF); the held frame is emitted at every tick before the next
    frame's, a frame reaching the tick replaces it, and at the end the held frame is emitted at
    its tick. Returns, per output frame, the input frame's index."""
    def ticks(p):
        x = Fraction(p - pts[0]) * time_base * rate
        return int(x + Fraction(1, 2))  # x >= 0: nearest, halves away from zero

    out, held, next_tick = [], 0, 0
    for i in range(1, len(pts)):
        while next_tick < ticks(pts[i]):
            out.append(held)
            next_tick += 1
        held = i
    out.append(held)
    return out


def dmvr_reference(frames, num_steps, stride, windows):
    """DMVR processors.py 93-137 sample_linspace_sequence (numpy), with 55-92
    sample_or_pad_sequence_indices (repeat_sequence True), over the 25 fps sequence
    ``frames``."""
    n = len(frames)
    max_offset = max(0, n - num_steps * stride)
    offsets = np.linspace(0.0, max_offset, windows).astype(np.float32).astype(np.int32)
    out = []
    for off in offsets:
        num_repeats = int(math.ceil((num_steps * stride + off) / n))
        sel = np.tile(np.arange(n), num_repeats)
        out.append([frames[i] for i in sel[np.arange(off, off + num_steps * stride, stride)]])
    return out


def xclip_reference(n, num_clips, multiview, draw):
    """VideoX X-CLIP datasets/pipeline.py 1970-1987 _sample_clips: test mode (multiview 1,
    1945-1968 _get_test_clips) or one _get_train_clips (1912-1943) per view, whose
    np.random.randint(avg) is ``draw(avg, view)``; 2010-2045 __call__ loops (mod n)."""
    if multiview == 1:
        avg = (n - 1 + 1) / float(num_clips)
        offs = (np.arange(num_clips) * avg + avg / 2.0).astype(int) if n > 0 else np.zeros(
            num_clips, dtype=int)
        return [np.mod(offs, n).tolist()]
    views = []
    for v in range(multiview):
        avg = (n - 1 + 1) // num_clips
        if avg > 0:
            offs = np.arange(num_clips) * avg + np.array([draw(avg, v)] * num_clips)
        elif n > max(num_clips, 1):
            raise AssertionError("unreachable with clip_len 1")
        else:
            offs = np.around(np.arange(num_clips) * ((n - 1 + 1.0) / num_clips))
        views.append(np.mod(offs.astype(int), n).tolist())
    return views


def the_harness_draw(avg, view):
    """The fixed offset the harness takes for X-CLIP's random draw: view v of 4 at
    int(avg * (v + 0.5) / 4), a value the authors' randint(avg) can return."""
    return int(avg * (view + 0.5) / 4)


AWKWARD = [(300, 30.0, 0), (280, 28.0, 0), (300, 30000 / 1001, 0), (164, 25.0, 0),
           (30, 30.0, 0), (20, 30.0, 0), (47, 30000 / 1001, 0), (7, 29.97, 0), (1, 30.0, 0),
           (61, 23.976, 0), (125, 12.5, 0), (250, 25.0, 0), (300, 30.0, 45000)]  # the last: late


@pytest.mark.parametrize("n,fps,first", AWKWARD)
def test_samplers_follow_the_authors_code(n, fps, first):
    """On 1, 7 and 47 frames, 29.97 fps, a first frame at 0.5 s and the Kinetics shapes."""
    video = fake_video(n, fps, first)

    def s(t, r, f=30):
        return InputSpec(num_frames=t, sampling_rate=r, frames_per_second=f, side_size=224,
                         crop_size=224, mean=(0,) * 3, std=(1,) * 3)

    assert hf.frame_windows(video, s(16, 4), 5, "videomae") == videomae_reference(n, 16, 4, 5)
    for clips in (1, 3):
        assert (hf.frame_windows(video, s(8, 32), clips, "pyslowfast")
                == pyslowfast_reference(n, fps, 32, 8, clips))
    at_25 = ffmpeg_fps_reference(video.pts, video.time_base, 25)
    assert hf.frame_windows(video, s(32, 2, 25), 4, "dmvr") == dmvr_reference(at_25, 32, 2, 4)
    assert hf.frame_windows(video, s(8, 1), 1, "xclip") == xclip_reference(n, 8, 1, None)
    assert (hf.frame_windows(video, s(8, 1), 4, "xclip")
            == xclip_reference(n, 8, 4, the_harness_draw))
    for timing, t, clips in (("videomae", 16, 5), ("pyslowfast", 8, 1), ("dmvr", 32, 4),
                             ("xclip", 8, 4)):
        for w in hf.frame_windows(video, s(t, 4), clips, timing):
            assert len(w) == t and all(0 <= i < n for i in w)


@pytest.mark.parametrize("n", [8, 15, 47, 300, 301])
def test_xclip_views_take_frames_the_authors_sampler_can_draw(n):
    """Each of the 4 views' frame k lies in the authors' segment k of N // 8 frames,
    [k * avg, k * avg + avg) (their randint(avg)): N / 8 segments reach frames they never
    sample (47 frames: 46 is beyond 7 * 5 + 4)."""
    spec = InputSpec(num_frames=8, sampling_rate=1, frames_per_second=30, side_size=224,
                     crop_size=224, mean=(0,) * 3, std=(1,) * 3)
    avg = n // 8
    for view in hf.frame_windows(fake_video(n, 30.0), spec, 4, "xclip"):
        assert all(k * avg <= i < k * avg + avg for k, i in enumerate(view)), view


def test_vivit_clips_are_drawn_from_the_video_at_25_fps():
    """scenic's Kinetics TFRecords hold 25 fps ("Kinetics videos has 250 frames"): 32 frames at
    stride 2 span 64 / 25 = 2.56 s of a 30 fps video, not 64 / 30 = 2.13 s."""
    video = fake_video(300, 30.0)
    spec = InputSpec(num_frames=32, sampling_rate=2, frames_per_second=25, side_size=256,
                     crop_size=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    for window in hf.frame_windows(video, spec, 4, "dmvr"):
        span = (video.pts[window[-1]] - video.pts[window[0]]) * video.time_base
        assert abs(float(span) - 62 / 25) <= 1 / 30 + 1e-9  # 31 steps of 2 / 25 s
    assert len(ffmpeg_fps_reference(video.pts, video.time_base, 25)) == 250


def videomae_ssv2_reference(n, num_segment, test_num_segment):
    """VideoMAE ssv2.py 238-246 (loadvideo_decord, test: all_index), then __getitem__'s
    buffer[chunk_nb::2] per chunk_nb (clip_len 1: one frame per segment)."""
    tick = n / float(num_segment)
    all_index = list(np.array([int(tick / 2.0 + tick * x) for x in range(num_segment)]
                              + [int(tick * x) for x in range(num_segment)]))
    while len(all_index) < (num_segment * test_num_segment):
        all_index.append(all_index[-1])
    all_index = list(np.sort(np.array(all_index)))
    return [[int(i) for i in all_index[chunk_nb::2]] for chunk_nb in range(test_num_segment)]


@pytest.mark.parametrize("n,fps,first", AWKWARD + [(15, 12.0, 0), (16, 12.0, 0), (17, 12.0, 0),
                                                   (33, 12.0, 0)])
def test_videomae_ssv2_sampler_follows_the_authors_code(n, fps, first):
    """Segment starts (clip 0) and centres (clip 1) of 16 segments, fewer frames than segments,
    one frame and odd counts included; a third clip is refused (the authors' code would give
    24 frames)."""
    video = fake_video(n, fps, first)
    spec = InputSpec(num_frames=16, sampling_rate=1, frames_per_second=30, side_size=224,
                     crop_size=224, mean=(0,) * 3, std=(1,) * 3)
    for clips in (1, 2):
        got = hf.frame_windows(video, spec, clips, "videomae_ssv2")
        assert got == videomae_ssv2_reference(n, 16, clips)
        assert all(len(w) == 16 and all(0 <= i < n for i in w) for w in got)
    with pytest.raises(ValueError, match="views.clips=3: the VideoMAE SSv2 test takes 1 or 2"):
        hf.frame_windows(video, spec, 3, "videomae_ssv2")


def test_more_than_two_videomae_ssv2_clips_stop_the_run_before_any_work():
    from benchmark.run.settings import SettingsError, check_settings
    from conftest import compose_eval

    check_settings(compose_eval("model=videomae_base_ssv2", "data=ssv2"))  # 2x3: fine
    with pytest.raises(SettingsError, match="^views.clips: the videomae_ssv2 protocol takes at "
                                            "most 2 clips, got 3$"):
        check_settings(compose_eval("model=videomae_base_ssv2", "views.clips=3"))


def test_sampler_values_on_a_kinetics_clip():
    """300 frames at 30 fps, the published tests' clips, by hand from the sources' formulas."""
    video = fake_video(300, 30.0)
    spec = lambda t, r, f=30: InputSpec(num_frames=t, sampling_rate=r,  # noqa: E731
                                        frames_per_second=f, side_size=224, crop_size=224,
                                        mean=(0,) * 3, std=(1,) * 3)
    starts = [w[0] for w in hf.frame_windows(video, spec(16, 4), 5, "videomae")]
    assert starts == [0, 56, 116, 176, 236]  # 4 * int(k * (75 - 16) / 4)
    assert (hf.frame_windows(video, spec(8, 32), 1, "pyslowfast")
            == [[0, 36, 72, 109, 145, 182, 218, 255]])
    # 250 frames at 25 fps: offsets int(linspace(0, 186, 4)) = 0, 62, 124, 186 -> 30 fps frames
    assert [w[0] for w in hf.frame_windows(video, spec(32, 2, 25), 4, "dmvr")] == [0, 74, 149,
                                                                                  223]
    assert hf.frame_windows(video, spec(8, 1), 1, "xclip") == [[18, 56, 93, 131, 168, 206, 243, 281]]
    # 4 views, segments of 37 frames: offsets 4, 13, 23, 32 (int(37 * (v + 0.5) / 4))
    assert [w[0] for w in hf.frame_windows(video, spec(8, 1), 4, "xclip")] == [4, 13, 23, 32]


# --- pixels: each protocol's resize, crops and normalisation against its authors' code ----------

def shared_videos():
    if not SHARED_VIDEOS.is_dir():
        return []
    return sorted(p for p in SHARED_VIDEOS.iterdir() if p.suffix in (".mp4", ".mkv", ".avi"))


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def videomae_pixels(frames, crops, side=224):
    """VideoMAE kinetics.py 64 Resize -> functional.py 26-43 resize_clip (cv2 INTER_LINEAR,
    get_resize_sizes 67-74, nothing when the short side fits), 141-152 the crops, 66-68
    ClipToTensor (/255) + Normalize(ImageNet). frames: uint8 (T, H, W, 3) numpy; returns
    (crops, T, 3, side, side)."""
    import cv2

    im_h, im_w = frames.shape[1:3]
    if (im_w <= im_h and im_w == side) or (im_h <= im_w and im_h == side):
        buffer = frames
    else:
        oh, ow = (int(side * im_h / im_w), side) if im_w < im_h else (side, int(side * im_w / im_h))
        buffer = np.stack([cv2.resize(f, (ow, oh), interpolation=cv2.INTER_LINEAR) for f in frames])
    out = []
    for split_nb in range(crops):
        spatial_step = 1.0 * (max(buffer.shape[1], buffer.shape[2]) - side) / (crops - 1)
        start = int(split_nb * spatial_step)
        if buffer.shape[1] >= buffer.shape[2]:
            crop = buffer[:, start:start + side, :, :]
        else:
            crop = buffer[:, :, start:start + side, :]
        x = torch.from_numpy(crop.copy()).float() / 255  # ClipToTensor
        x = (x - torch.tensor(IMAGENET[0])) / torch.tensor(IMAGENET[1])
        out.append(x.permute(0, 3, 1, 2))
    return torch.stack(out)


def pyslowfast_pixels(frames, crops, side=224, crop=224, mean=0.45, std=0.225):
    """TimeSformer kinetics.py 250-265: utils.py 308-318 tensor_normalize (uint8 /255, then
    mean/std), permute to (C, T, H, W), transform.py 8-62 random_short_side_scale_jitter with
    min = max = side (F.interpolate bilinear, align_corners False), 150-190 uniform_crop."""
    x = (torch.from_numpy(frames).float() / 255.0 - mean) / std
    x = x.permute(3, 0, 1, 2)
    height, width = x.shape[2], x.shape[3]
    if not ((width <= height and width == side) or (height <= width and height == side)):
        new_w, new_h = side, side
        if width < height:
            new_h = int(math.floor((float(height) / width) * side))
        else:
            new_w = int(math.floor((float(width) / height) * side))
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear",
                                            align_corners=False)
    out = []
    for idx in (range(3) if crops == 3 else [1]):
        h, w = x.shape[2], x.shape[3]
        y_off, x_off = int(math.ceil((h - crop) / 2)), int(math.ceil((w - crop) / 2))
        if h > w:
            y_off = {0: 0, 1: y_off, 2: h - crop}[idx]
        else:
            x_off = {0: 0, 1: x_off, 2: w - crop}[idx]
        out.append(x[:, :, y_off:y_off + crop, x_off:x_off + crop].permute(1, 0, 2, 3))
    return torch.stack(out)


def tf_resize_bilinear(img, out_h, out_w):
    """tf.image.resize(method=BILINEAR, antialias=False) = ResizeBilinear with half-pixel
    centres (TensorFlow's resize_bilinear_op: in = (out + 0.5) * scale - 0.5, the lower index
    floor(in) clamped at 0, the upper ceil(in) clamped at size - 1, weight in - floor(in)), in
    float64 numpy. img: (H, W, C) -> float (out_h, out_w, C)."""
    in_h, in_w = img.shape[:2]

    def axis(out, size):
        scale = size / out
        pos = (np.arange(out) + 0.5) * scale - 0.5
        lo = np.floor(pos)
        frac = pos - lo
        return (np.clip(lo, 0, size - 1).astype(int),
                np.clip(np.ceil(pos), 0, size - 1).astype(int), frac)

    y0, y1, fy = axis(out_h, in_h)
    x0, x1, fx = axis(out_w, in_w)
    img = img.astype(np.float64)
    top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * fx[None, :, None]
    bottom = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * fx[None, :, None]
    return top + (bottom - top) * fy[:, None, None]


def scenic_pixels(frames, crops, side=256, crop=224):
    """ViViT: dmvr processors.py 374-420 resize_smallest (max(side, L * side // s), TF
    bilinear, cast back to uint8: truncation), scenic video_ops.py 420-478 three_spatial_crops /
    deterministic_crop (one crop: processors.py 310-372 tf.image.resize_with_crop_or_pad, a floor
    centre), processors.py 465-486 normalize_image(zero_centering): x * 2 / 255 - 1."""
    in_h, in_w = frames.shape[1:3]
    out_h, out_w = max(side, (in_h * side) // in_w), max(side, (in_w * side) // in_h)
    if (out_h, out_w) != (in_h, in_w):
        frames = np.stack([tf_resize_bilinear(f, out_h, out_w) for f in frames]).astype(np.uint8)
    h, w = frames.shape[1:3]
    boxes = []
    for idx in range(crops):
        if crops == 1:  # resize_with_crop_or_pad: offset (-diff) // 2 of diff = target - size
            boxes.append(((h - crop) // 2, (w - crop) // 2))
            continue
        y_off, x_off = int(math.ceil((h - crop) / 2)), int(math.ceil((w - crop) / 2))
        if h > w:
            y_off = {0: 0, 1: y_off, 2: h - crop}[idx]
        else:
            x_off = {0: 0, 1: x_off, 2: w - crop}[idx]
        boxes.append((y_off, x_off))
    out = [frames[:, y:y + crop, x:x + crop].astype(np.float32) * (2.0 / 255.0) - 1.0
           for y, x in boxes]
    return torch.from_numpy(np.stack(out)).permute(0, 1, 4, 2, 3)


def xclip_pixels(frames, crops, side=224, crop=224):
    """X-CLIP build.py 296-298 Resize(-1, 224) + ThreeCrop(224) (one crop, 289-290:
    Resize(-1, 256) + CenterCrop(224)): pipeline.py 1049-1050 mmcv.rescale_size
    (int(x * factor + 0.5)), 1009-1013 mmcv.imresize (cv2 INTER_LINEAR), 1477-1535 ThreeCrop
    (left, right, middle; step (L - 224) // 2), CenterCrop (floor offsets); build.py 34-35
    Normalize on 0-255 with mean 123.675/116.28/103.53, std 58.395/57.12/57.375."""
    import cv2

    h, w = frames.shape[1:3]
    factor = min(float("inf") / max(h, w), side / min(h, w))
    new_w, new_h = int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)
    imgs = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in frames])
    img_h, img_w = imgs.shape[1:3]
    if crops == 1:
        offsets = [((img_w - crop) // 2, (img_h - crop) // 2)]
    elif crop == img_h:
        w_step = (img_w - crop) // 2
        offsets = [(0, 0), (2 * w_step, 0), (w_step, 0)]
    else:
        h_step = (img_h - crop) // 2
        offsets = [(0, 0), (0, 2 * h_step), (0, h_step)]
    mean = np.array([123.675, 116.28, 103.53], dtype=np.float32)
    std = np.array([58.395, 57.12, 57.375], dtype=np.float32)
    out = [(imgs[:, y:y + crop, x:x + crop].astype(np.float32) - mean) / std for x, y in offsets]
    return torch.from_numpy(np.stack(out)).permute(0, 1, 4, 2, 3)


AUTHORS_PIXELS = {"videomae_base_k400": videomae_pixels, "timesformer_base_k400": pyslowfast_pixels,
                  "vivit_b_16x2_k400": scenic_pixels, "xclip_base_p32_k400": xclip_pixels}


def clip_frames(clips):
    """uint8 (T, H, W, 3) numpy of the first clip of the harness's (N, C, T, H, W) clips."""
    return clips[0].permute(1, 2, 3, 0).contiguous().numpy()


@pytest.mark.parametrize("name", MODELS)
def test_views_follow_the_authors_pixels_on_the_shared_videos(name):
    """Resize, crops and normalisation of each authors' protocol against its code restated
    (VideoMAE and X-CLIP through cv2 as theirs; TimeSformer's float interpolate; ViViT's TF
    bilinear in numpy), 1 and 3 crops, on the six shared videos."""
    paths = shared_videos()
    if not paths:
        pytest.skip(f"{SHARED_VIDEOS} is absent")
    cfg = model_cfg(name)
    proto = protocol_cfg(cfg.published.protocol)
    spec = hf.input_spec(cfg)
    worst, far = 0.0, 0
    for path in paths:
        clips = hf.sample_clips(decode_video(path), spec, 1, proto.clips)
        # one crop: each one's single-crop test (ViViT: resize 256, central crop; TimeSformer:
        # TRAIN_JITTER_SCALES[0] = 256 then the centre; X-CLIP: Resize(-1, 256), CenterCrop);
        # VideoMAE's divides by zero (a stated departure: the processor's centre crop)
        one_crop_side = {"timesformer_base_k400": 256, "xclip_base_p32_k400": 256}.get(name)
        for crops in ((3,) if name == "videomae_base_k400" else (1, 3)):
            ours = hf.views(clips, spec, crops, spatial=proto.spatial)[0]
            side = {"side": one_crop_side} if crops == 1 and one_crop_side else {}
            want = AUTHORS_PIXELS[name](clip_frames(clips), crops, **side)
            assert ours.shape == want.shape
            diff = (ours - want).abs()
            worst = max(worst, diff.max().item())
            far += int((diff > 1e-4).sum())
    print(f"\n{name}: max |views - authors' pixels| over {len(paths)} shared videos = {worst:.3g}")
    if name == "vivit_b_16x2_k400":
        # torch's bilinear for TF's: a value on an exact integer may truncate one level apart
        assert worst <= 2 / 255 + 1e-5 and far <= 1e-4 * 3 * 32 * 224 * 224 * len(paths)
    else:
        assert worst <= 1e-5


def test_vivit_reaches_the_model_in_minus_one_to_one():
    """The authors' [-1, 1] (zero centring), not the processor's [-3, 1]: black is -1, white 1
    under protocol vivit, -3 and 1 under vivit_processor."""
    cfg = model_cfg("vivit_b_16x2_k400")
    spec = hf.input_spec(cfg)
    clips = torch.zeros((1, 3, 32, 256, 256), dtype=torch.uint8)
    clips[..., 128:] = 255
    ours = hf.views(clips, spec, 3, spatial="scenic")[0]
    assert math.isclose(ours.min().item(), -1.0, abs_tol=1e-6)
    assert math.isclose(ours.max().item(), 1.0, abs_tol=1e-6)
    card = hf.views(clips, spec, 3, spatial="processor")[0]
    assert math.isclose(card.min().item(), -3.0, abs_tol=1e-6)
    assert math.isclose(card.max().item(), 1.0, abs_tol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_processor_protocol_equals_the_processor_on_the_shared_videos(name):
    """protocol=<family>_processor, the model card's pipeline: the checkpoint's transformers
    video processor (and, for VideoMAE, the image processor its checkpoint names) on the
    authors' frames, within 1e-5; three crops at uniform_crop's boxes of the processor's
    resized, normalised frames."""
    paths = shared_videos()
    if not paths:
        pytest.skip(f"{SHARED_VIDEOS} is absent")
    cfg = model_cfg(name)
    proto = protocol_cfg(f"{cfg.published.protocol}_processor")
    assert proto.spatial == "processor"
    spec = hf.input_spec(cfg)
    pre = hf.Preprocess.from_model(cfg)
    video_proc, image_proc = hf.processor(cfg), hf.processor(cfg, video=False)
    worst = 0.0
    for path in paths:
        video = decode_video(path)
        clips = hf.sample_clips(video, spec, 1, proto.clips)  # (1, C, T, H, W) uint8
        frames = list(clips.permute(0, 2, 1, 3, 4)[0])  # T x (C, H, W), the processor's input
        ref = video_proc([torch.stack(frames)], return_tensors="pt")["pixel_values"]
        ours = hf.views(clips, spec, 1, spatial=proto.spatial)[0]
        assert ours.shape == ref.shape == (1, cfg.input.num_frames, 3, *pre.crop_size)
        worst = max(worst, (ours - ref).abs().max().item())
        if name == "videomae_base_k400":  # the image processor the checkpoint names, too
            img = image_proc([frames], return_tensors="pt")["pixel_values"]
            worst = max(worst, (ours - torch.stack(list(img))).abs().max().item())
        whole = video_proc([torch.stack(frames)], do_center_crop=False, return_tensors="pt")
        whole = whole["pixel_values"][0]
        three = hf.views(clips, spec, 3, spatial=proto.spatial)[0]
        ch, cw = pre.crop_size
        h, w = whole.shape[-2:]
        y, x = int(math.ceil((h - ch) / 2)), int(math.ceil((w - cw) / 2))
        boxes = ([(0, x), (y, x), (h - ch, x)] if h > w else [(y, 0), (y, x), (y, w - cw)])
        for view, (y, x) in zip(three, boxes):
            worst = max(worst, (view - whole[:, :, y:y + ch, x:x + cw]).abs().max().item())
    print(f"\n{name}: max |views - processor| over {len(paths)} shared videos = {worst:.3g}")
    assert worst <= 1e-5


def test_views_are_written_in_the_model_layout_without_a_per_view_copy():
    clips = torch.randint(0, 256, (2, 8, 48, 64, 3), dtype=torch.uint8).permute(0, 4, 1, 2, 3)
    pre = hf.Preprocess(shortest_edge=32, crop_size=(32, 32), rescale_factor=1 / 255,
                        offset=False, image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    for rule in hf.SPATIALS:
        out = hf.preprocess_views(clips, pre, 3, rule)
        assert out.shape == (6, 8, 3, 32, 32) and out.is_contiguous()  # (B, T, C, H, W) as built
        buffer = torch.empty_like(out)
        assert hf.preprocess_views(clips, pre, 3, rule, out=buffer).data_ptr() == buffer.data_ptr()


def test_crop_rules_follow_the_authors_code():
    """Crop boxes on odd and even margins, wide and tall frames, restated by hand from each
    rule's code (VideoMAE kinetics.py 141-152, PySlowFast and scenic uniform_crop /
    deterministic_crop, X-CLIP ThreeCrop)."""
    # 224-high frames, 298 wide (L - c = 74) and 299 wide (odd: the rules round differently)
    assert [x for _, x in hf.crop_boxes(224, 298, (224, 224), 3, "videomae")] == [0, 37, 74]
    assert [x for _, x in hf.crop_boxes(224, 299, (224, 224), 3, "videomae")] == [0, 37, 75]
    assert [x for _, x in hf.crop_boxes(224, 299, (224, 224), 3, "pyslowfast")] == [0, 38, 75]
    assert hf.crop_boxes(224, 299, (224, 224), 3, "mmaction") == [(0, 0), (0, 74), (0, 37)]
    assert hf.crop_boxes(299, 224, (224, 224), 3, "mmaction") == [(0, 0), (74, 0), (37, 0)]
    # ViViT: scenic's three_spatial_crops on a 256 x 455 frame: the short axis at
    # ceil(32 / 2) = 16, the long at 0, ceil(231 / 2) = 116, 231; one crop: the floor centre
    assert hf.crop_boxes(256, 455, (224, 224), 3, "scenic") == [(16, 0), (16, 116), (16, 231)]
    assert hf.crop_boxes(455, 256, (224, 224), 3, "scenic") == [(0, 16), (116, 16), (231, 16)]
    assert hf.crop_boxes(256, 455, (224, 224), 1, "scenic") == [(16, 115)]
    assert hf.crop_boxes(256, 256, (224, 224), 3, "scenic") == [(16, 0), (16, 16), (16, 32)]
    with pytest.raises(ValueError, match="views.crops"):
        hf.crop_boxes(224, 299, (224, 224), 5, "videomae")


# --- FLOPs --------------------------------------------------------------------------------------

def test_flops_count_the_attention_matmuls_under_eager():
    """fvcore misses SDPA's matmuls; the eager count adds exactly QK^T and AV per layer."""
    cfg = tiny_cfg("videomae_base_k400")
    model = build_quiet(cfg)
    x = hf.example(cfg)
    eager, sdpa = hf.gflops(model, x, "eager"), hf.gflops(model, x, "sdpa")
    tokens = (4 // 2) * (32 // 16) ** 2
    c = TINY["videomae"]
    attention = c["num_hidden_layers"] * 2 * tokens * tokens * c["hidden_size"] / 1e9
    assert math.isclose(eager - sdpa, attention, rel_tol=1e-6)
    assert model.config._attn_implementation == "sdpa"  # switched back after counting


def test_one_flops_helper_counts_each_framework_in_its_own_layout(tiny_model):
    """results/cost.py's adapter_flop_counts (evaluate's cost, make flops, make bench): a
    transformers model gets (B, T, C, H, W) examples and both attention conventions (eager:
    the matmuls counted, switched back after), a pytorchvideo model its (B, C, T, H, W)
    pathways and no attention convention."""
    from benchmark import frameworks
    from benchmark.results import cost
    from benchmark.run.models import build_model

    cfg = tiny_cfg("videomae_base_k400")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, "model").module  # as the run builds it (pathway list in)
    adapter = frameworks.get("transformers")
    seen = []
    hook = model.register_forward_pre_hook(
        lambda m, args: seen.append(m.config._attn_implementation))
    counts = cost.adapter_flop_counts(adapter, model, spec_of(cfg), sdpa=True)
    hook.remove()
    assert set(seen) == {"sdpa"}  # counted as it runs: no (tokens x tokens) weights held
    tokens, c = (4 // 2) * (32 // 16) ** 2, TINY["videomae"]
    attention = c["num_hidden_layers"] * 2 * tokens * tokens * c["hidden_size"] / 1e9
    assert math.isclose(counts["gflops"] - counts["gflops_sdpa"], attention, rel_tol=1e-6)
    with adapter.counted_as(model, "eager"):  # SDPA's products from shapes = eager's matmuls
        eager = cost.flop_counts(model, cost.example_views(adapter, spec_of(cfg), 1))
    for key in ("gflops", "gflops_with_norm", "gmacs_flop_counter"):
        assert math.isclose(counts[key], eager[key], rel_tol=1e-9), key
    assert model.config._attn_implementation == "sdpa"
    assert cost.example_views(adapter, spec_of(cfg), 2)[0].shape == (2, 4, 3, 32, 32)
    pv = frameworks.get("pytorchvideo")
    plain = cost.adapter_flop_counts(pv, tiny_model.module, tiny_model.spec, sdpa=True)
    assert "gflops_sdpa" not in plain
    assert plain == cost.flop_counts(tiny_model.module, tiny_model.spec.example(1))


# --- end to end: build + views + forward -> per-video probabilities -----------------------------

@pytest.mark.parametrize("name", MODELS)
def test_each_tiny_model_gives_per_video_probabilities(name, saved, videos):
    cfg = tiny_cfg(name, weights=str(saved[name]))
    proto = protocol_cfg(cfg.published.protocol)
    module = hf.build(cfg, class_names=CLASSES)
    spec = hf.input_spec(cfg)
    clips_n, crops = 2, 3
    batch = [hf.views(hf.sample_clips(decode_video(videos[k]), spec, clips_n, proto.clips),
                      spec, crops, spatial=proto.spatial)[0] for k in ("landscape", "portrait")]
    probs = hf.probabilities(module, torch.cat(batch), clips_n * crops, proto.combine)
    assert probs.shape == (2, len(CLASSES))
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)


# How each family's authors combine a video's views, restated from their code: the score whose
# top-k they rank, from the views' raw logits (V, classes).
def videomae_merge(logits):
    """VideoMAE engine_for_finetuning.py 249 (softmax per view, since 2254c5e) and 275-278
    compute_video (np.mean over the views)."""
    return np.mean([scipy_softmax(x) for x in logits.numpy()], axis=0)


def timesformer_test_meter(logits):
    """TimeSformer vit.py 302-305 (the head's raw logits), tools/test_net.py 96-112 and
    utils/meters.py 107-108: video_preds += preds (ENSEMBLE_METHOD "sum")."""
    preds = torch.zeros(logits.shape[1])
    for view in logits:
        preds += view
    return preds.numpy()


def scenic_test_step(logits):
    """scenic train_utils.py 318-324 test_step (softmax_logits False): the views' logits
    summed, divided by their number."""
    return (logits.sum(0) / logits.shape[0]).numpy()


def xclip_validate(logits):
    """VideoX X-CLIP main.py 219-220: tot_similarity += similarity.softmax(dim=-1)."""
    return sum(view.softmax(-1) for view in logits).numpy()


def scipy_softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


AUTHORS_COMBINE = {"videomae_base_k400": videomae_merge, "timesformer_base_k400": timesformer_test_meter,
                   "vivit_b_16x2_k400": scenic_test_step, "xclip_base_p32_k400": xclip_validate}


@pytest.mark.parametrize("name", MODELS)
def test_the_run_combines_views_as_the_authors_do(name, saved, videos):
    """The run's loop (evaluate.predict) under each family's protocol file against its authors'
    combine restated: the stored probabilities are their scores' softmax (TimeSformer's summed
    logits, ViViT's mean logits: the softmax of the mean) or their mean of softmax (VideoMAE,
    X-CLIP's sum / views); the same top classes in the same order."""
    from benchmark import frameworks
    from benchmark.frameworks import protocol_from_config
    from benchmark.run.batches import predict
    from benchmark.run.models import build_model

    cfg = tiny_cfg(name, weights=str(saved[name]))
    protocol = protocol_from_config(protocol_cfg(cfg.published.protocol))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, protocol.head, class_names=CLASSES)
    spec = model.spec
    clips = hf.sample_clips(decode_video(videos["landscape"]), spec, 2, protocol.clips)
    [(_, stored)] = list(predict(model.module, [("v", clips)], spec, 3, 4, torch.device("cpu"),
                                 "fp32", spatial=frameworks.spatial(protocol.spatial),
                                 combine=protocol.combine))
    with torch.no_grad():
        views = hf.views(clips, spec, 3, spatial=protocol.spatial)[0]
        view_logits = model.module([views]).float()  # the views' raw logits, as the run calls it
    theirs = AUTHORS_COMBINE[name](view_logits)
    if name in ("timesformer_base_k400", "vivit_b_16x2_k400"):  # ranked on logits
        want = torch.from_numpy(theirs / (6 if name.startswith("timesformer") else 1)).softmax(-1)
    else:
        want = torch.from_numpy(theirs) / (6 if name.startswith("xclip") else 1)
    assert torch.allclose(stored, want.float(), atol=1e-5), (stored, want)
    assert stored.argsort(descending=True).tolist() == np.argsort(-theirs).tolist()


def test_an_unknown_hyper_parameter_is_named():
    cfg = tiny_cfg("xclip_base_p32_k400")
    cfg.builder.config.mit_hidden_size = 16  # belongs in vision_config
    with pytest.raises(ValueError, match="model.builder.config.mit_hidden_size"):
        hf.hf_config(cfg)


# --- the real CLI: python -m benchmark.eval on a tiny checkpoint directory ----------------------

@pytest.mark.parametrize("name", ["videomae_base_k400", "xclip_base_p32_k400",
                                  "vivit_b_16x2_k400"])
def test_the_cli_evaluates_a_tiny_checkpoint_directory(name, saved, action_set, tmp_path):
    """The run's path (registry, weights from a save_pretrained directory, the loader's frame
    indices, the views, the head, the cost, the protocol's combine: ViViT's mean of logits)
    gives each video exactly the adapter's own per-video probabilities for the same protocol,
    and records the directory's digest."""
    import json

    import pandas as pd
    from conftest import run_eval

    cfg = tiny_cfg(name, weights=str(saved[name]))
    names_file = action_set / "kinetics_classnames.json"
    result = run_eval(
        f"model={name}", f"model.weights={saved[name]}", "model.num_classes=4",
        "model.input.num_frames=4", f"model.input.side_size={cfg.input.side_size}",
        "model.input.crop_size=32",
        f"model.builder.preprocessor.shortest_edge={cfg.input.side_size}",
        "model.builder.preprocessor.crop_size=[32,32]",
        "data=kinetics400", f"data.csv={action_set / 'validate.csv'}", f"data.root={action_set}",
        f"data.class_names={names_file}", "views.clips=2", "views.crops=3", "device=cpu",
        "cost.throughput_iters=1", f"results_dir={tmp_path / 'results'}",
        f"hydra.run.dir={tmp_path / 'out'}")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["videos_evaluated"] == 4 and metrics["videos_failed"] == 0, result.stderr[-2000:]
    assert metrics["weights"].startswith(f"{name}@") and metrics["channels_last"] is False
    assert metrics["gflops"] > 0 and metrics["views_per_s"] > 0
    assert metrics["versions"]["transformers"]
    ids = json.loads(names_file.read_text())
    class_names = sorted(ids, key=ids.get)
    module = build_quiet(cfg, class_names=class_names)
    proto = protocol_cfg(cfg.published.protocol)
    assert metrics["protocol"] == proto.name
    # a CPU fp32 run of an fp16-tested protocol (VideoMAE, X-CLIP) says so; ViViT's is fp32
    said = f"the {proto.name} protocol's authors tested in fp16" in result.stdout + result.stderr
    assert said == (proto.precision == "fp16")
    spec = hf.input_spec(cfg)
    for row in pd.read_parquet(tmp_path / "out" / "predictions.parquet").itertuples():
        clips = hf.sample_clips(decode_video(row.path), spec, 2, proto.clips)
        views = hf.views(clips, spec, 3, spatial=proto.spatial)[0]
        want = hf.probabilities(module, views, 6, proto.combine)[0]
        assert torch.allclose(torch.as_tensor(row.probs, dtype=torch.float32), want, atol=1e-5)


def test_the_cli_evaluates_videomae_ssv2_on_the_official_layout(tmp_path):
    """VideoMAE-SSv2's config (174 classes, protocol videomae_ssv2, 2 clips x 3 crops) with a tiny
    save_pretrained checkpoint on SSv2 as released (the labels and validation JSON, <id>.webm in
    VP9 at 12 fps): each video gets the class id of its template, and exactly the adapter's own
    probabilities for the authors' segments and crops."""
    import json

    import pandas as pd
    from conftest import run_eval
    from test_datasets import SSV2_IDS, render, write_ssv2

    cfg = tiny_cfg("videomae_base_ssv2")
    torch.manual_seed(0)
    checkpoint = tmp_path / "videomae-ssv2"
    build_quiet(cfg).save_pretrained(checkpoint)
    videos, labels, root = write_ssv2(tmp_path / "ssv2")
    for n, video_id in enumerate(SSV2_IDS):
        render(root / f"{video_id}.webm", "moving left", n, 12, codec="libvpx-vp9",
               options={"deadline": "realtime", "cpu-used": "8"})
    result = run_eval(
        "model=videomae_base_ssv2", f"model.weights={checkpoint}", "model.num_classes=4",
        "model.input.num_frames=4", "model.input.side_size=32", "model.input.crop_size=32",
        "model.builder.preprocessor.shortest_edge=32", "model.builder.preprocessor.crop_size=[32,32]",
        "data=ssv2", f"data.csv={videos}", f"data.class_names={labels}", f"data.root={root}",
        "device=cpu", "cost.flops=false", "cost.throughput_iters=0",
        f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'out'}")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["videos_evaluated"] == 4 and metrics["videos_failed"] == 0, result.stderr[-2000:]
    assert (metrics["protocol"], metrics["clips"], metrics["crops"]) == ("videomae_ssv2", 2, 3)
    predictions = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert dict(zip(predictions.video_id, predictions.label)) == SSV2_IDS
    cfg = tiny_cfg("videomae_base_ssv2", weights=str(checkpoint))
    module = build_quiet(cfg)
    spec = hf.input_spec(cfg)
    for row in predictions.itertuples():
        clips = hf.sample_clips(decode_video(row.path), spec, 2, "videomae_ssv2")
        want = hf.probabilities(module, hf.views(clips, spec, 3, spatial="videomae")[0], 6)[0]
        assert torch.allclose(torch.as_tensor(row.probs, dtype=torch.float32), want, atol=1e-5)
    row = pd.read_csv(tmp_path / "results" / "evaluations.csv").iloc[0]
    # A checkpoint of one's own, not the hub's: the SSv2 number is not beside it, and it says why.
    assert row.dataset == "ssv2" and pd.isna(row.published_top1)
    assert "not the checkpoint the published numbers are of" in row.no_delta_because


def test_make_protocols_shows_the_model_card_beside_the_authors(tmp_path):
    """``python -m benchmark.protocols --model videomae_base_k400`` (what ``make protocols``
    runs for each transformers model): the authors' protocol and the model card's, through the
    real entry point on the toy set, one table; the processor's pixels move the probabilities."""
    import subprocess
    import sys

    import pandas as pd

    tiny = [f"model.builder.config.{k}={v}" for k, v in TINY["videomae"].items()]
    out = tmp_path / "protocols"
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.protocols", "--model", "videomae_base_k400", *tiny,
         "model.input.num_frames=4", "model.input.side_size=32", "model.input.crop_size=32",
         "model.builder.preprocessor.shortest_edge=32", "model.builder.preprocessor.crop_size=[32,32]",
         "model.source=local/not-cached", "views.clips=2", "data.limit=2",
         "--out", str(out), "--run-dir", str(tmp_path / "runs")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(out.with_suffix(".csv"))
    assert table.protocol.tolist() == ["videomae", "videomae_processor"]
    assert table.spatial.tolist() == ["videomae", "processor"]
    assert table.precision.fillna("").tolist() == ["fp16", ""]
    assert table.videos.tolist() == [2, 2]
    assert table.max_prob_diff_vs_videomae[1] > 0  # antialiased resize: other pixels
    assert "videomae_base_k400 (random-init weights)" in out.with_suffix(".md").read_text()


def test_the_bench_card_row_needs_the_model_card_protocol():
    """make bench's card pipeline is the checkpoint's processor: under the authors' protocol the
    harness would run other pixels, so the bench asks for <authors'>_processor."""
    from benchmark.run.bench import card_pipeline
    from benchmark.run.evaluate import SettingsError
    from conftest import compose_eval

    with pytest.raises(SettingsError, match="pass protocol=videomae_processor, got videomae$"):
        card_pipeline(compose_eval("model=videomae_base_k400"))
    assert card_pipeline(compose_eval("model=videomae_base_k400", "protocol=videomae_processor"))
