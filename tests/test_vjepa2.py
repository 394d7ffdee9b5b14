"""V-JEPA 2's probe classifiers under their authors' test (conf/protocol/vjepa2.yaml): the
segments' frames, the views' pixels and the probe reading every segment at once, each against
the authors' code restated here (facebookresearch/vjepa2 at commit c2963a4, file and line cited
per function), and ``model=hf model.source=DIR`` running a tiny save_pretrained checkpoint whose
id2label is in another order than the data set's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers")

import benchmark.frameworks.transformers as hf  # noqa: E402
from benchmark.data.decode import decode_video  # noqa: E402

from conftest import compose_eval  # noqa: E402
from test_own_models import hub_cache, one_hot_head, run_hf_source  # noqa: E402
from test_transformers import IMAGENET, SHARED_VIDEOS, fake_video, model_cfg, shared_videos  # noqa: E402

NAME = "vjepa2_vitl_16_256_ssv2"
VITG = "vjepa2_vitg_64_384_ssv2"
# A tiny V-JEPA 2 (same code paths): 32 px, 4 frames a segment, one encoder layer, one pooler layer.
TINY = dict(crop_size=32, patch_size=16, frames_per_clip=4, tubelet_size=2, hidden_size=32,
            num_hidden_layers=1, num_attention_heads=2, num_pooler_layers=1, pred_hidden_size=16,
            pred_num_hidden_layers=1, pred_num_attention_heads=2)


# --- the authors' code, restated (facebookresearch/vjepa2 c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb) ---

def authors_clip_indices(n, fpc, fstp, num_clips, randint):
    """src/datasets/video_dataset.py 306-366 loadvideo_decord with frame_step given (duration and
    fps None), allow_clip_overlap=True (evals/video_classification_frozen/eval.py 190) and
    random_clip_sampling left at its default True (eval.py 449-464 calls init_data without it;
    src/datasets/data_manager.py 33); len(vr) = n; ``randint`` stands for np.random.randint."""
    clip_len = int(fpc * fstp)
    partition_len = n // num_clips
    clip_indices = []
    for i in range(num_clips):
        if partition_len > clip_len:
            end_indx = randint(clip_len, partition_len)
            start_indx = end_indx - clip_len
            indices = np.linspace(start_indx, end_indx, num=fpc)
            indices = np.clip(indices, start_indx, end_indx - 1).astype(np.int64)
            indices = indices + i * partition_len
        else:
            sample_len = min(clip_len, n) - 1
            indices = np.linspace(0, sample_len, num=sample_len // fstp)
            indices = np.concatenate((indices, np.ones(fpc - sample_len // fstp) * sample_len))
            indices = np.clip(indices, 0, sample_len - 1).astype(np.int64)
            clip_step = 0
            if n > clip_len:
                clip_step = (n - clip_len) // (num_clips - 1)
            indices = indices + i * clip_step
        clip_indices.append(indices)
    return clip_indices


def the_harness_draw(low, high):
    """The harness's fixed stand-in for randint(low, high): the middle of [low, high)."""
    return (low + high - 1) // 2


def authors_resize_clip(clip, size):
    """src/datasets/utils/video/functional.py 37-58 resize_clip (numpy frames, bilinear: cv2
    INTER_LINEAR; the clip as it is when the short side is ``size``) with 88-95
    get_resize_sizes."""
    import cv2

    im_h, im_w, _ = clip[0].shape
    if (im_w <= im_h and im_w == size) or (im_h <= im_w and im_h == size):
        return clip
    if im_w < im_h:
        ow, oh = size, int(size * im_h / im_w)
    else:
        oh, ow = size, int(size * im_w / im_h)
    return [cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR) for img in clip]


def authors_to_tensor(clip):
    """volume_transforms.py 30-89 ClipToTensor (numpy frames into a float64 array, .float(),
    /255) then transforms.py 1151-1158 Normalize -> functional.py 98-110 (sub mean, div std);
    eval.py 411 DEFAULT_NORMALIZATION. Returns (C, T, H, W)."""
    h, w, _ = clip[0].shape
    np_clip = np.zeros([3, len(clip), int(h), int(w)])
    for idx, img in enumerate(clip):
        np_clip[:, idx, :, :] = img.transpose(2, 0, 1)
    tensor = torch.div(torch.from_numpy(np_clip).float(), 255)
    mean, std = torch.as_tensor(IMAGENET[0]), torch.as_tensor(IMAGENET[1])
    return tensor.sub_(mean[:, None, None, None]).div_(std[:, None, None, None])


def authors_eval_views(buffer, num_views, crop):
    """evals/video_classification_frozen/utils.py 28-34 (several views: EvalVideoTransform with
    short_side_size = crop_size), 158-178 EvalVideoTransform.__call__; one view: 68-76 and
    105-108 VideoTransform's eval_transform (Resize(int(crop * 256 / 224)), transforms.py
    1018-1050 CenterCrop: int(round((L - c) / 2.0))). buffer: uint8 (T, H, W, 3) numpy."""
    if num_views == 1:
        clip = authors_resize_clip(list(buffer), int(crop * 256 / 224))
        im_h, im_w = clip[0].shape[:2]
        x1, y1 = int(round((im_w - crop) / 2.0)), int(round((im_h - crop) / 2.0))
        return [authors_to_tensor([img[y1:y1 + crop, x1:x1 + crop, :] for img in clip])]
    buffer = np.array(authors_resize_clip(list(buffer), crop))
    _, H, W, _ = buffer.shape
    spatial_step = (max(H, W) - crop) // (num_views - 1)
    all_views = []
    for i in range(num_views):
        start = i * spatial_step
        if H > W:
            view = buffer[:, start:start + crop, :, :]
        else:
            view = buffer[:, :, start:start + crop, :]
        all_views.append(authors_to_tensor(view))
    return all_views


def authors_probe_logits(model, x):
    """modelcustom/vit_encoder_multiclip.py 107-147 ClipAggregation.forward (use_pos_embed
    false, as configs/eval/vitl/ssv2.yaml), then eval.py 318-320: the classifier on each spatial
    view's tokens. x: a list over clips (segments) of lists over views of (B, C, F, H, W); the
    encoder is the checkpoint's (VJEPA2Model, (B, F, C, H, W)), the classifier its pooler and
    linear head (AttentiveClassifier)."""
    num_clips, num_views_per_clip = len(x), len(x[0])
    B, C, F, H, W = x[0][0].size()
    x = [torch.cat(xi, dim=0) for xi in x]
    x = torch.cat(x, dim=0)
    outputs = model.vjepa2(pixel_values_videos=x.permute(0, 2, 1, 3, 4),
                           skip_predictor=True).last_hidden_state
    _, N, D = outputs.size()
    T = F // model.config.tubelet_size
    S = N // T
    eff_B = B * num_views_per_clip
    all_outputs = [[] for _ in range(num_views_per_clip)]
    for i in range(num_clips):
        o = outputs[i * eff_B:(i + 1) * eff_B]
        for j in range(num_views_per_clip):
            all_outputs[j].append(o[j * B:(j + 1) * B])
    for i, outs in enumerate(all_outputs):
        outs = [o.reshape(B, T, S, D) for o in outs]
        all_outputs[i] = torch.cat(outs, dim=1).flatten(1, 2)
    return [model.classifier(model.pooler(o)) for o in all_outputs]


# --- frames ----------------------------------------------------------------------------------------

def spec(num_frames, step):
    from types import SimpleNamespace

    return SimpleNamespace(num_frames=num_frames, sampling_rate=step)


@pytest.mark.parametrize("fpc,fstp,segments", [(16, 4, 2), (64, 2, 2), (32, 2, 4), (16, 4, 1)])
def test_segments_follow_the_authors_loader(fpc, fstp, segments):
    """SSv2 ViT-L (16 x 4, 2 segments), ViT-g (64 x 2), Diving48 (32 x 2, 4 segments) and one
    segment, on videos of 1 to 400 frames: both branches of loadvideo_decord, the random window
    end replaced by the middle of its range (a value the authors' randint can draw)."""
    for n in range(1, 401):
        ours = hf.frame_windows(fake_video(n, 30.0), spec(fpc, fstp), segments, "vjepa2")
        want = authors_clip_indices(n, fpc, fstp, segments, the_harness_draw)
        # one frame: the authors clip to index -1, decord's last frame, which is frame 0
        assert ours == [[int(i) % n for i in w] for w in want], n


def test_the_segments_form_one_view_in_time_order():
    """cut_clips joins the segments into one view of segments x frames (views.clips counts the
    segments; the probe reads them at once), the first segment first."""
    from dataclasses import replace

    # frame i of 300 is 2x2 pixels of value i % 256
    video = replace(fake_video(300, 30.0), frames=[torch.full((2, 2, 3), i % 256, dtype=torch.uint8)
                                                   for i in range(300)])
    s = spec(16, 4)
    windows = hf.frame_windows(video, s, 2, "vjepa2")
    clips = hf.cut_clips(video, s, 2, "vjepa2")
    assert tuple(clips.shape[:3]) == (1, 3, 32)
    assert clips[0, 0, :, 0, 0].tolist() == [i % 256 for w in windows for i in w]
    assert windows[0][0] == 42 and windows[1][0] == 42 + 150  # partitions of 150: ends at 106


# --- pixels ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [NAME, VITG])
def test_views_follow_the_authors_pixels_on_the_shared_videos(name):
    """The six shared videos through the harness under protocol vjepa2 (the named configs'
    16 x 2 x 3 at 256 px and 64 x 2 x 3 at 384 px, and their one view) against the authors'
    loader and EvalVideoTransform restated: the same frames, each segment's views joined in time
    order as ClipAggregation reads them; float rounding apart, equal (ViT-g: two videos, its
    128 frames at 384 px being six times the pixels)."""
    paths = shared_videos()
    if not paths:
        pytest.skip(f"{SHARED_VIDEOS} is absent")
    paths = paths if name == NAME else paths[:2]
    cfg = model_cfg(name)
    assert cfg.published.protocol == "vjepa2"
    s = hf.input_spec(cfg)
    crop = int(cfg.input.crop_size)
    worst = 0.0
    for path in paths:
        video = decode_video(path)
        n = len(video.frames)
        indices = authors_clip_indices(n, s.num_frames, s.sampling_rate, 2, the_harness_draw)
        frames = video.rgb([int(i) % n for w in indices for i in w]).numpy()
        clips = [frames[i * s.num_frames:(i + 1) * s.num_frames] for i in range(2)]  # split_into_clips
        ours_clips = hf.cut_clips(video, s, 2, "vjepa2")
        for views in (3, 1):
            ours = hf.views(ours_clips, s, views, spatial="vjepa2")[0]
            per_clip = [authors_eval_views(c, views, crop) for c in clips]
            want = torch.stack([torch.cat([per_clip[i][j] for i in range(2)], dim=1)
                                for j in range(views)]).permute(0, 2, 1, 3, 4)
            assert ours.shape == want.shape == (views, 2 * s.num_frames, 3, crop, crop)
            worst = max(worst, (ours - want).abs().max().item())
    print(f"\nvjepa2: max |views - authors' pixels| over {len(paths)} shared videos = {worst:.3g}")
    assert worst <= 1e-5


def test_the_crops_are_the_authors_floored_step():
    """(L - c) // 2 * k, not VideoMAE's int(k * (L - c) / 2): an odd margin ends a pixel short."""
    assert hf.crop_boxes(256, 455, (256, 256), 3, "vjepa2") == [(0, 0), (0, 99), (0, 198)]
    assert hf.crop_boxes(455, 256, (256, 256), 3, "videomae")[2] == (199, 0)
    assert hf.crop_boxes(455, 256, (256, 256), 3, "vjepa2") == [(0, 0), (99, 0), (198, 0)]
    assert hf.crop_boxes(292, 389, (256, 256), 1, "vjepa2") == [(18, 66)]


# --- the probe reads every segment at once ---------------------------------------------------------

def tiny_model(labels, initializer_range=0.02):
    torch.manual_seed(0)
    config = transformers.VJEPA2Config(**TINY, initializer_range=initializer_range,
                                       num_labels=len(labels),
                                       id2label=dict(enumerate(labels)),
                                       label2id={n: i for i, n in enumerate(labels)})
    return transformers.VJEPA2ForVideoClassification(config).eval()


def test_the_segment_classifier_is_the_authors_clip_aggregation():
    """VJEPA2SegmentClassifier on views of 2 segments equals ClipAggregation + the probe
    restated; feeding the 8 frames to the model as one clip does not (the later segment's RoPE
    positions would differ from the probe's training); one segment is the model's own forward."""
    model = tiny_model(["a", "b", "c"], initializer_range=0.5)  # weights that tell positions apart
    wrapped = hf.VJEPA2SegmentClassifier(model, frames=4)
    torch.manual_seed(1)
    views = torch.randn(3, 8, 3, 32, 32)  # 3 spatial views of one video, 2 segments of 4 frames
    with torch.no_grad():
        ours = wrapped(views)
        x = [[views[j:j + 1, 4 * i:4 * (i + 1)].permute(0, 2, 1, 3, 4) for j in range(3)]
             for i in range(2)]
        want = torch.cat(authors_probe_logits(model, x))
        whole = model(pixel_values_videos=views).logits
        one = wrapped(views[:, :4]) - model(pixel_values_videos=views[:, :4]).logits
    print(f"\nvjepa2 probe: max |segments - ClipAggregation| = {(ours - want).abs().max():.3g}, "
          f"|segments - one clip| = {(ours - whole).abs().max():.3g} (logits up to "
          f"{want.abs().max():.3g})")
    assert (ours - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    assert (ours - whole).abs().max().item() > 0.1
    assert one.abs().max().item() == 0


def test_the_probe_runs_with_its_authors_head_count():
    """The probes were trained with 16 heads (configs/eval/*/ssv2.yaml classifier num_heads)
    where transformers' pooler takes the encoder's count (ViT-g: 22). With probe_heads the tiny
    model's 2-head pooler computes what a pooler built with 4 heads computes on the same weights
    (transformers' ViT-L case, whose 16 are the authors'); without, it does not."""
    model = tiny_model(["a", "b", "c"], initializer_range=0.5)
    four = transformers.VJEPA2Config(**{**TINY, "num_attention_heads": 4}, num_labels=3)
    reference = transformers.VJEPA2ForVideoClassification(four).eval()
    reference.pooler.load_state_dict(model.pooler.state_dict())
    torch.manual_seed(2)
    tokens = torch.randn(2, 20, 32)
    with torch.no_grad():
        want, before = reference.pooler(tokens), model.pooler(tokens)
        wrapped = hf.VJEPA2SegmentClassifier(model, frames=4, probe_heads=4)
        after = wrapped.model.pooler(tokens)
    assert wrapped.model.pooler.cross_attention_layer.cross_attn.num_heads == 4
    assert (after - want).abs().max().item() <= 1e-5
    assert (before - want).abs().max().item() > 1e-2
    with pytest.raises(ValueError, match="probe_heads: 3 does not divide the probe's width 32"):
        hf.set_probe_heads(model.pooler, 3)


def test_the_named_config_has_the_checkpoint_s_parameter_count():
    """Built from the yaml's hyper-parameters (meta device): the hub checkpoint's
    VJEPA2ForVideoClassification, the unused predictor included."""
    cfg = model_cfg(NAME)
    with torch.device("meta"):
        model = hf._model_cls(cfg)(hf.hf_config(cfg))
    assert round(hf.num_params(model) / 1e6, 1) == cfg.published.params_m == 375.5
    composed = compose_eval(f"model={NAME}")
    assert (composed.protocol.name, composed.views.clips, composed.views.crops) == ("vjepa2", 2, 3)


def test_the_vitg_config_is_the_authors_vitg_384_under_its_own_settings():
    """model=vjepa2_vitg_64_384_ssv2 builds the converted ViT-g/384 (huggingface/transformers
    convert_vjepa2_to_hf.py get_vjepa2_config("vit_giant_384") with the classifier's 64 frames
    and 174 classes, restated here) tensor for tensor on the meta device, with its measured
    parameter count, and runs under configs/eval/vitg-384/ssv2.yaml's settings: 64 frames at
    step 2 in each of 2 segments x 3 views at 384 px (one view: short side 438)."""
    cfg = model_cfg(VITG)
    authors = transformers.VJEPA2Config(
        crop_size=384, frames_per_clip=64, hidden_size=1408, num_attention_heads=22,
        num_hidden_layers=40, mlp_ratio=48 / 11, pred_hidden_size=384, pred_num_attention_heads=12,
        pred_num_hidden_layers=12, pred_num_mask_tokens=10, num_labels=174)
    with torch.device("meta"):
        ours = hf._model_cls(cfg)(hf.hf_config(cfg))
        want = transformers.VJEPA2ForVideoClassification(authors)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in want.state_dict().items()}
    assert shapes["vjepa2.encoder.layer.39.mlp.fc1.weight"] == (6144, 1408)  # int(1408 * 48 / 11)
    assert round(hf.num_params(ours) / 1e6, 1) == cfg.published.params_m == 1128.0
    composed = compose_eval(f"model={VITG}")
    spec = hf.input_spec(composed.model)
    assert (spec.num_frames, spec.sampling_rate, composed.model.input.crop_size,
            composed.model.input.side_size) == (64, 2, 384, int(384 * 256 / 224))
    assert (composed.protocol.name, composed.views.clips, composed.views.crops) == ("vjepa2", 2, 3)
    assert (composed.model.published.top1, composed.model.source) == (
        77.3, "facebook/vjepa2-vitg-fpc64-384-ssv2")


# --- model=hf model.source=DIR -------------------------------------------------------------------

LABELS = ["moving_down", "Moving Up", "moving right", "moving left"]  # not the data set's order


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny save_pretrained VJEPA2ForVideoClassification with its video processor's file
    (video_preprocessor_config.json, as the hub's V-JEPA 2 checkpoints carry) and id2label
    [down, up, right, left], answering "Moving Up" whatever it sees."""
    source = tmp_path_factory.mktemp("hf") / "vjepa2-tiny"
    model = tiny_model(LABELS)
    one_hot_head(model.classifier.weight, model.classifier.bias, LABELS.index("Moving Up"))
    model.save_pretrained(source)
    transformers.VJEPA2VideoProcessor(crop_size=32).save_pretrained(source)
    assert (source / "video_preprocessor_config.json").is_file()
    return source


@pytest.mark.parametrize("name,step,top1", [(NAME, 4, 73.7), (VITG, 2, 77.3)])
def test_the_named_config_is_its_hub_checkpoint_under_the_authors_protocol(
        name, step, top1, tiny_checkpoint, tmp_path, monkeypatch):
    """model=<name> offline, its hub id in the hub cache: the checkpoint's frames, size and
    classes, the named config's frame step, protocol vjepa2 in 2x3, an official row; model=hf
    with that hub id on SSv2 becomes the named config (ViT-g/384: step 2, not ViT-L's 4), beside
    its published top-1; on Kinetics it is only its family's test, no published number."""
    from huggingface_hub import constants

    from benchmark.run.models import build_model
    from benchmark.run.sources import from_source

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub_id = model_cfg(name).source
    hub_cache(tmp_path / "hub", hub_id, tiny_checkpoint, "d" * 40)
    named = from_source(compose_eval(f"model={name}"), [])
    assert (named.model.num_classes, named.model.input.num_frames, named.model.input.crop_size,
            named.model.input.side_size, named.model.input.sampling_rate) == (4, 4, 32, 36, step)
    assert (named.protocol.name, named.views.clips, named.views.crops) == ("vjepa2", 2, 3)
    built = build_model(named.model, "model")
    assert (built.weights, built.checkpoint) == ("official", f"{hub_id}@{'d' * 12}")
    assert isinstance(built.module, hf.VJEPA2SegmentClassifier) and built.module.frames == 4
    pooler = built.module.model.pooler  # the authors' 16 probe heads, not the checkpoint's 2
    assert {a.num_heads for a in [pooler.cross_attention_layer.cross_attn]
            + [layer.self_attn for layer in pooler.self_attention_layers]} == {16}
    on_ssv2 = from_source(compose_eval("model=hf", f"model.source={hub_id}", "data=ssv2"), [])
    assert (on_ssv2.model.name, on_ssv2.model.published.top1) == (name, top1)
    assert (on_ssv2.model.input.sampling_rate, on_ssv2.views.clips, on_ssv2.views.crops,
            on_ssv2.protocol.name) == (step, 2, 3, "vjepa2")
    assert build_model(on_ssv2.model, "model").weights == "official"
    elsewhere = from_source(compose_eval("model=hf", f"model.source={hub_id}"), [])
    assert elsewhere.model.name == hub_id and not elsewhere.model.published


def test_model_hf_runs_a_vjepa2_checkpoint_under_its_authors_protocol(tiny_checkpoint,
                                                                      action_set, tmp_path):
    """The tiny checkpoint through model=hf model.source=DIR on the generated set (its order
    left, right, up, down): the run reads 4 frames a segment and 32 px from the checkpoint,
    takes V-JEPA 2's protocol (2 segments x 3 views), and scores "moving up" by name."""
    source, labels = tiny_checkpoint, LABELS
    out = tmp_path / "out"
    result = run_hf_source(source, action_set, tmp_path, out)
    assert (f"model {source}: vjepa2 (vjepa2 on kinetics is tested as {NAME} is), 4 classes, "
            "4 frames at 32 px; protocol vjepa2, views 2x3") in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["protocol"], metrics["clips"], metrics["crops"]) == ("vjepa2", 2, 3)
    assert metrics["label_map"] == "name" and metrics["weights"].startswith("vjepa2-tiny@")
    predictions = pd.read_parquet(out / "predictions.parquet")
    names = json.loads((action_set / "kinetics_classnames.json").read_text())
    up = {k.strip('"'): i for k, i in names.items()}["moving up"]
    assert up != labels.index("Moving Up")  # by position it would be another class
    assert {int(torch.tensor(list(p)).argmax()) for p in predictions.probs} == {up}
