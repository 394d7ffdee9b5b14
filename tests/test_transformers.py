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
    cfg.builder.hub_id = "local/not-cached"  # never in the hub cache: random init when auto
    cfg.num_classes = len(CLASSES)
    cfg.input.num_frames = 4
    # model.input mirrors builder.preprocessor (build refuses a difference).
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


# --- temporal samplers against the authors' code, transcribed -----------------------------------

def fake_video(n: int, fps: float) -> DecodedVideo:
    tb = Fraction(1, 90000)
    step = 90000 / fps
    pts = [int(round(i * step)) for i in range(n)]
    return DecodedVideo(frames=[None] * n, pts=pts, time_base=tb, start_pts=0,
                        end_pts=pts[-1] + int(step), header_duration=True, decoded_pts=pts,
                        average_fps=fps)


def videomae_reference(n, clip_len, rate, segs):
    """VideoMAE kinetics.py (test): loadvideo_decord's all_index, __getitem__'s temporal_step."""
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
    """TimeSformer lib/datasets/decoder.py: get_start_end_idx + temporal_sampling."""
    out = []
    for clip_idx in range(clips):
        clip_size = rate * num_frames / target_fps * fps
        delta = max(n - clip_size, 0)
        start_idx = delta * clip_idx / clips
        end_idx = start_idx + clip_size - 1
        index = torch.linspace(start_idx, end_idx, num_frames)
        out.append(torch.clamp(index, 0, n - 1).long().tolist())
    return out


def dmvr_reference(n, num_steps, stride, windows):
    """DMVR sample_linspace_sequence / _sample_or_pad_sequence_indices (numpy)."""
    max_offset = max(0, n - num_steps * stride)
    offsets = np.linspace(0.0, max_offset, windows).astype(np.float32).astype(np.int32)
    out = []
    for off in offsets:
        max_length = num_steps * stride + off
        num_repeats = (max_length + n - 1) // n
        sel = np.tile(np.arange(n), num_repeats)
        out.append(sel[np.arange(off, off + num_steps * stride, stride)].tolist())
    return out


def mmaction_test_reference(n, num_clips):
    """X-CLIP datasets/pipeline.py SampleFrames._get_test_clips (clip_len 1) + loop."""
    avg = (n - 1 + 1) / float(num_clips)
    if n > 0:
        offs = (np.arange(num_clips) * avg + avg / 2.0).astype(int)
    else:
        offs = np.zeros(num_clips, dtype=int)
    return [np.mod(offs, n).tolist()]


AWKWARD = [(300, 30.0), (280, 28.0), (300, 30000 / 1001), (164, 25.0), (30, 30.0), (20, 30.0),
           (7, 29.97), (1, 30.0), (61, 23.976), (125, 12.5)]


@pytest.mark.parametrize("n,fps", AWKWARD)
def test_samplers_follow_the_authors_code(n, fps):
    video = fake_video(n, fps)
    def s(t, r, f=30):
        return InputSpec(num_frames=t, sampling_rate=r, frames_per_second=f, side_size=224,
                         crop_size=224, mean=(0,) * 3, std=(1,) * 3)

    assert hf.frame_windows(video, s(16, 4), 5, "videomae") == videomae_reference(n, 16, 4, 5)
    for clips in (1, 3):
        assert (hf.frame_windows(video, s(8, 32), clips, "pyslowfast")
                == pyslowfast_reference(n, fps, 32, 8, clips))
    assert hf.frame_windows(video, s(32, 2), 4, "dmvr") == dmvr_reference(n, 32, 2, 4)
    assert hf.frame_windows(video, s(8, 1), 1, "tsn") == mmaction_test_reference(n, 8)
    for timing, t, clips in (("videomae", 16, 5), ("pyslowfast", 8, 1), ("dmvr", 32, 4),
                             ("tsn", 8, 4)):
        for w in hf.frame_windows(video, s(t, 4), clips, timing):
            assert len(w) == t and all(0 <= i < n for i in w)


def videomae_ssv2_reference(n, num_segment, test_num_segment):
    """VideoMAE ssv2.py (test): loadvideo_decord's all_index, then __getitem__'s
    buffer[temporal_start::2] per chunk_nb (clip_len 1: one frame per segment)."""
    tick = n / float(num_segment)
    all_index = list(np.array([int(tick / 2.0 + tick * x) for x in range(num_segment)]
                              + [int(tick * x) for x in range(num_segment)]))
    while len(all_index) < (num_segment * test_num_segment):
        all_index.append(all_index[-1])
    all_index = list(np.sort(np.array(all_index)))
    return [[int(i) for i in all_index[chunk_nb::2]] for chunk_nb in range(test_num_segment)]


@pytest.mark.parametrize("n,fps", AWKWARD + [(15, 12.0), (16, 12.0), (17, 12.0), (33, 12.0)])
def test_videomae_ssv2_sampler_follows_the_authors_code(n, fps):
    """Segment starts (clip 0) and centres (clip 1) of 16 segments, fewer frames than segments,
    one frame and odd counts included; a third clip is refused (the authors' code would give
    24 frames)."""
    video = fake_video(n, fps)
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
    spec = lambda t, r: InputSpec(num_frames=t, sampling_rate=r, frames_per_second=30,  # noqa: E731
                                  side_size=224, crop_size=224, mean=(0,) * 3, std=(1,) * 3)
    starts = [w[0] for w in hf.frame_windows(video, spec(16, 4), 5, "videomae")]
    assert starts == [0, 56, 116, 176, 236]  # 4 * int(k * (75 - 16) / 4)
    assert (hf.frame_windows(video, spec(8, 32), 1, "pyslowfast")
            == [[0, 36, 72, 109, 145, 182, 218, 255]])
    assert [w[0] for w in hf.frame_windows(video, spec(32, 2), 4, "dmvr")] == [0, 78, 157, 236]
    assert hf.frame_windows(video, spec(8, 1), 1, "tsn") == [[18, 56, 93, 131, 168, 206, 243, 281]]


# --- views: the transformers processor's output, on the shared videos ---------------------------

def shared_videos():
    if not SHARED_VIDEOS.is_dir():
        return []
    return sorted(p for p in SHARED_VIDEOS.iterdir() if p.suffix in (".mp4", ".mkv", ".avi"))


MAX_DIFF: dict = {}


@pytest.mark.parametrize("name", MODELS)
def test_views_equal_the_processor_on_the_shared_videos(name):
    paths = shared_videos()
    if not paths:
        pytest.skip(f"{SHARED_VIDEOS} is absent")
    cfg = model_cfg(name)
    proto = protocol_cfg(cfg.published.protocol)
    pre = hf.Preprocess.from_model(cfg)
    video_proc, image_proc = hf.processor(cfg), hf.processor(cfg, video=False)
    full = hf.processor(cfg)
    worst = 0.0
    for path in paths:
        video = decode_video(path)
        clips = hf.sample_clips(video, spec_of(cfg), 1, proto.clips)  # (1, C, T, H, W) uint8
        frames = list(clips.permute(0, 2, 1, 3, 4)[0])  # T x (C, H, W), the processor's input
        ref = video_proc([torch.stack(frames)], return_tensors="pt")["pixel_values"]
        ours = hf.preprocess_views(clips, pre, 1, proto.spatial)
        assert ours.shape == ref.shape == (1, cfg.input.num_frames, 3, *pre.crop_size)
        worst = max(worst, (ours - ref).abs().max().item())
        if name == "videomae_base_k400":  # the image processor the checkpoint names, too
            img = image_proc([frames], return_tensors="pt")["pixel_values"]
            worst = max(worst, (ours - torch.stack(list(img))).abs().max().item())
        # three crops: the processor's resized, normalised frames at the authors' crop boxes
        whole = full([torch.stack(frames)], do_center_crop=False, return_tensors="pt")
        whole = whole["pixel_values"][0]
        three = hf.preprocess_views(clips, pre, 3, proto.spatial)
        ch, cw = pre.crop_size
        for view, (y, x) in zip(three, hf.crop_boxes(*whole.shape[-2:], pre.crop_size, 3,
                                                     proto.spatial)):
            worst = max(worst, (view - whole[:, :, y:y + ch, x:x + cw]).abs().max().item())
    MAX_DIFF[name] = worst
    print(f"\n{name}: max |views - processor| over {len(paths)} shared videos = {worst:.3g}")
    assert worst <= 1e-5


def test_views_are_written_in_the_model_layout_without_a_per_view_copy():
    clips = torch.randint(0, 256, (2, 8, 48, 64, 3), dtype=torch.uint8).permute(0, 4, 1, 2, 3)
    pre = hf.Preprocess(shortest_edge=32, crop_size=(32, 32), rescale_factor=1 / 255,
                        offset=False, image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    out = hf.preprocess_views(clips, pre, 3, "mmaction")
    assert out.shape == (6, 8, 3, 32, 32) and out.is_contiguous()  # (B, T, C, H, W) as built
    buffer = torch.empty_like(out)
    assert hf.preprocess_views(clips, pre, 3, "mmaction", out=buffer).data_ptr() == buffer.data_ptr()


def test_crop_rules_follow_the_authors_code():
    # 224-high frames, 298 wide (L - c = 74) and 299 wide (odd: the rules round differently)
    assert [x for _, x in hf.crop_boxes(224, 298, (224, 224), 3, "videomae")] == [0, 37, 74]
    assert [x for _, x in hf.crop_boxes(224, 299, (224, 224), 3, "videomae")] == [0, 37, 75]
    assert [x for _, x in hf.crop_boxes(224, 299, (224, 224), 3, "pyslowfast")] == [0, 38, 75]
    assert [x for _, x in hf.crop_boxes(224, 299, (224, 224), 3, "mmaction")] == [0, 37, 74]
    assert hf.crop_boxes(256, 455, (224, 224), 3, "dmvr") == [(0, 0), (0, 116), (0, 231)]
    assert hf.crop_boxes(256, 455, (224, 224), 1, "dmvr") == [(16, 116)]  # processor's centre
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
    counts = cost.adapter_flop_counts(adapter, model, spec_of(cfg), sdpa=True)
    tokens, c = (4 // 2) * (32 // 16) ** 2, TINY["videomae"]
    attention = c["num_hidden_layers"] * 2 * tokens * tokens * c["hidden_size"] / 1e9
    assert math.isclose(counts["gflops"] - counts["gflops_sdpa"], attention, rel_tol=1e-6)
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
    pre = hf.Preprocess.from_model(cfg)
    clips_n, crops = 2, 3
    batch = [hf.preprocess_views(hf.sample_clips(decode_video(videos[k]), spec_of(cfg), clips_n, proto.clips),
                      pre, crops, proto.spatial) for k in ("landscape", "portrait")]
    probs = hf.probabilities(module, torch.cat(batch), clips_n * crops)
    assert probs.shape == (2, len(CLASSES))
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)


def test_an_unknown_hyper_parameter_is_named():
    cfg = tiny_cfg("xclip_base_p32_k400")
    cfg.builder.config.mit_hidden_size = 16  # belongs in vision_config
    with pytest.raises(ValueError, match="model.builder.config.mit_hidden_size"):
        hf.hf_config(cfg)


# --- the real CLI: python -m benchmark.eval on a tiny checkpoint directory ----------------------

@pytest.mark.parametrize("name", ["videomae_base_k400", "xclip_base_p32_k400"])
def test_the_cli_evaluates_a_tiny_checkpoint_directory(name, saved, action_set, tmp_path):
    """The run's path (registry, weights from a save_pretrained directory, the loader's frame
    indices, the views, the head, the cost) gives each video exactly the adapter's own
    per-video probabilities for the same protocol, and records the directory's digest."""
    import json

    import pandas as pd
    from conftest import run_eval

    cfg = tiny_cfg(name, weights=str(saved[name]))
    names_file = action_set / "kinetics_classnames.json"
    result = run_eval(
        f"model={name}", f"model.weights={saved[name]}", "model.num_classes=4",
        "model.input.num_frames=4", "model.input.side_size=32", "model.input.crop_size=32",
        "model.builder.preprocessor.shortest_edge=32", "model.builder.preprocessor.crop_size=[32,32]",
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
    pre = hf.Preprocess.from_model(cfg)
    for row in pd.read_parquet(tmp_path / "out" / "predictions.parquet").itertuples():
        clips = hf.sample_clips(decode_video(row.path), spec_of(cfg), 2, proto.clips)
        want = hf.probabilities(module, hf.preprocess_views(clips, pre, 3, proto.spatial), 6)[0]
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
    pre = hf.Preprocess.from_model(cfg)
    for row in predictions.itertuples():
        clips = hf.sample_clips(decode_video(row.path), spec_of(cfg), 2, "videomae_ssv2")
        want = hf.probabilities(module, hf.preprocess_views(clips, pre, 3, "videomae"), 6)[0]
        assert torch.allclose(torch.as_tensor(row.probs, dtype=torch.float32), want, atol=1e-5)
    row = pd.read_csv(tmp_path / "results" / "evaluations.csv").iloc[0]
    # A checkpoint of one's own, not the hub's: the SSv2 number is not beside it, and it says why.
    assert row.dataset == "ssv2" and pd.isna(row.published_top1)
    assert "not the checkpoint the published numbers are of" in row.no_delta_because
