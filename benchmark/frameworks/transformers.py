"""The Hugging Face ``transformers`` adapter: VideoMAE, TimeSformer, ViViT and X-CLIP, each
under two protocols: its authors' test code (how the published number was measured) and the
model card's pipeline (the checkpoint's video processor, ``<family>_processor``); V-JEPA 2's
probe classifiers under their authors' test (``vjepa2``).

Why an adapter of its own: the model cards' pipelines differ from the authors' test protocols
(the video processors sample no frames, antialias their resize, and ViViT's normalises to
[-3, 1] where its authors fed [-1, 1]), and ``from_pretrained`` fills a missing weight with an
initial value and only logs it. Here:
- ``build`` loads a ``save_pretrained`` directory or the hub cache offline and refuses any
  missing, unexpected or mismatched key (``load_checkpoint``); without weights it builds the
  architecture from the config's published hyper-parameters and warns loudly;
- ``clip_windows`` picks each clip's frames as the authors' test code does (``TIMINGS``; ViViT's
  from the video resampled to 25 fps, as its TFRecords were written), as frame indices into a
  ``DecodedVideo``;
- ``views`` resizes, crops and normalises as the protocol's ``spatial`` rule says
  (``SPATIALS``): each authors' code (cv2 for VideoMAE and X-CLIP, float bilinear for
  TimeSformer, TF-style bilinear truncated to uint8 for ViViT; ``model.input``'s mean/std), or
  the checkpoint's processor (``processor``: ``builder.preprocessor``, equal to the transformers
  processor on the shared videos), writing the (B, T, C, H, W) batch the models take directly;
- how a video's views combine is the protocol's ``combine`` (the run's loop; ``probabilities``
  here): TimeSformer and ViViT average logits, VideoMAE and X-CLIP softmax scores;
- X-CLIP classifies by the text of the class names the caller passes (``XCLIPClassifier``);
- V-JEPA 2's probe reads all of a view's temporal segments at once: ``cut_clips`` joins the
  segments into one view and ``VJEPA2SegmentClassifier`` encodes each apart before the probe.
Not followed (each stated in its conf/protocol file): the authors' decoders, X-CLIP's random
multi-view offsets (a fixed rule), VideoMAE's single crop and clip (its code divides by zero).
This module imports neither pytorchvideo nor torchvision.models (torchvision.transforms' resize
is the processor's own resize, so the model card's views equal the processor's bit for bit
before normalising).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import logging
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn

from benchmark.frameworks.api import Adapter
from benchmark.frameworks.common import Extra, first_line, installed_version, plain
from benchmark.frameworks.views import InputSpec, faulted

NAME = "transformers"
# The hf extra: not in the core install; nothing imports it until a transformers model is asked for.
EXTRA = Extra(NAME, ("transformers", "cv2"), "pip install -e '.[hf]'")  # cv2: authors' resizes
# 5.23 maps VideoMAE's original q_bias/v_bias names (earlier 5.x releases zeroed them silently).
MIN_VERSION = (5, 23)

log = logging.getLogger(__name__)

# builder.architecture -> (config class, model class), both in the transformers namespace.
ARCHITECTURES = {
    "videomae": ("VideoMAEConfig", "VideoMAEForVideoClassification"),
    "timesformer": ("TimesformerConfig", "TimesformerForVideoClassification"),
    "vivit": ("VivitConfig", "VivitForVideoClassification"),
    "xclip": ("XCLIPConfig", "XCLIPModel"),
    # V-JEPA 2's attentive-probe classifiers (a frozen encoder); build wraps them so that a view's
    # segments are encoded apart and read by the probe at once (VJEPA2SegmentClassifier).
    "vjepa2": ("VJEPA2Config", "VJEPA2ForVideoClassification"),
}


# model_types transformers' AutoModelForVideoClassification maps that the harness refuses, and
# what is missing for them (source_values' line).
NOT_EVALUATED = {
    "videoprism_vision_model": "no fine-tuned classifier to test: Google's released VideoPrism "
                               "checkpoints (google/videoprism-*) are encoders whose "
                               "VideoPrismForVideoClassification head is untrained, and no "
                               "authors' classification test protocol comes with them",
}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: the message names the keys."""


def _transformers():
    EXTRA.require()  # not installed: one line naming the extra
    import transformers

    have = tuple(int(p) for p in transformers.__version__.split(".")[:2])
    if have < MIN_VERSION:
        raise RuntimeError(
            f"transformers {transformers.__version__}: the transformers models need >= "
            f"{'.'.join(map(str, MIN_VERSION))} (earlier 5.x releases zero VideoMAE's q/v biases)")
    return transformers


def version() -> dict:
    """The framework's version, for a run's metrics (from its metadata: every run records every
    framework's), or "not installed"."""
    return {"transformers": installed_version("transformers")}


def _builder(model_cfg) -> dict:
    builder = plain(model_cfg["builder"])
    arch = builder.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"model.builder.architecture: {arch!r} is not one of "
                         f"{sorted(ARCHITECTURES)}")
    return builder


def hf_config(model_cfg):
    """The architecture's config from the model config's published hyper-parameters (offline,
    with no checkpoint there is no config.json to read)."""
    builder = _builder(model_cfg)
    config_cls = getattr(_transformers(), ARCHITECTURES[builder["architecture"]][0])
    kwargs = builder.get("config", {})
    config = config_cls(**kwargs)
    _known(config_cls(), kwargs, "model.builder.config")
    if builder["architecture"] != "xclip":
        config.num_labels = int(model_cfg["num_classes"])
    return config


def _known(default, kwargs: dict, where: str) -> None:
    """A config class stores an unknown keyword silently: name it instead (a misspelt or
    misplaced hyper-parameter would build another architecture)."""
    known = default.to_dict()
    for key, value in kwargs.items():
        if key not in known:
            raise ValueError(f"{where}.{key}: not a {type(default).__name__} key")
        sub = getattr(default, key, None)
        if isinstance(value, dict) and hasattr(sub, "to_dict"):
            _known(sub, value, f"{where}.{key}")


def _model_cls(model_cfg):
    return getattr(_transformers(), ARCHITECTURES[_builder(model_cfg)["architecture"]][1])


def attention(model_cls) -> str:
    """SDPA where the architecture has it (speed); TimeSformer has only the eager attention."""
    return "sdpa" if getattr(model_cls, "_supports_sdpa", False) else "eager"


def source_dir(source: str, revision: str | None) -> Path:
    """``model.source``'s checkpoint directory: a ``save_pretrained`` directory as it is, or
    the hub's snapshot of a hub id at ``revision`` (downloaded where there is a network,
    else the hub cache's copy: huggingface_hub's own fallback, and ``HF_HUB_OFFLINE``)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"model.source={source}: not a save_pretrained directory (no "
                                  "config.json there)")
        return path
    EXTRA.require()
    from huggingface_hub import snapshot_download  # transformers' own dependency

    try:
        return Path(snapshot_download(source, revision=revision))
    except Exception as err:  # no network and not cached, no such repo, a gated one
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"model.source={source}: neither a directory nor a hub id this "
                              f"machine can get ({type(err).__name__}: {first})") from None


def resolve_weights(model_cfg) -> Path | None:
    """The checkpoint directory ``model.weights`` names: a ``save_pretrained`` directory (PATH),
    or ``model.source``'s (auto, pretrained: a directory, or the hub's snapshot, downloaded
    where there is a network, else the hub cache's); None for random init (``random``, or
    ``auto`` with nothing to be had)."""
    weights = str(model_cfg.get("weights", "auto"))
    if weights == "random":
        return None
    if weights not in ("auto", "pretrained"):
        path = Path(weights).expanduser()
        if not (path / "config.json").is_file():
            raise CheckpointError(f"model.weights={weights}: not a save_pretrained directory "
                                  "(no config.json there)")
        return path
    try:
        return source_dir(str(model_cfg["source"]), model_cfg.get("revision"))
    except CheckpointError as err:
        if weights == "pretrained":
            raise CheckpointError(f"model.weights=pretrained: {err}") from None
        return None


def where_weights_go(model_cfg) -> str:
    """Where ``model.weights=auto`` looks for the checkpoint and how it gets there (the hub,
    where there is a network, else its cache), for the line that refuses random weights on a
    real data set."""
    EXTRA.require()
    from huggingface_hub.constants import HF_HUB_CACHE

    source = model_cfg["source"]
    return (f"it is downloaded from the Hugging Face hub, else read from its cache ({HF_HUB_CACHE})"
            f" as {source}, which failed here: download it there with `hf download {source}`")


def _expected(patterns, keys) -> list:
    return [k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in patterns)]


def load_checkpoint(path, model_cfg) -> nn.Module:
    """``from_pretrained`` of a local directory, refusing any missing, unexpected or mismatched
    key that ``builder.expected_keys`` (glob patterns) does not list: transformers would
    initialise a missing weight and only log it. Also refuses a preprocessor_config.json whose
    values differ from the model config's ``builder.preprocessor`` (the views use those)."""
    path = Path(path)
    builder = _builder(model_cfg)
    cls = _model_cls(model_cfg)
    want = getattr(_transformers(), ARCHITECTURES[builder["architecture"]][0]).model_type
    have = _json_object(path / "config.json").get("model_type")
    if have != want:  # another architecture's checkpoint: its keys would all be "missing"
        raise CheckpointError(f"{path / 'config.json'}: model_type {have!r}, but "
                              f"model.builder.architecture {builder['architecture']} loads "
                              f"{want!r} checkpoints")
    try:
        # ignore_mismatched_sizes: report a mismatch in the loading info (refused below, in one
        # line) instead of transformers' multi-line RuntimeError.
        model, info = cls.from_pretrained(path, local_files_only=True, output_loading_info=True,
                                          ignore_mismatched_sizes=True,
                                          attn_implementation=attention(cls))
    except Exception as err:  # no weights file, a damaged one, a config it cannot take ...
        raise CheckpointError(f"{path}: not a loadable {builder['architecture']} checkpoint "
                              f"directory: {first_line(err)}") from None
    patterns = builder.get("expected_keys") or []
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = [k[0] if isinstance(k, (tuple, list)) else k for k in info.get(kind, [])]
        bad = _expected(patterns, sorted(keys))
        if bad:
            problems.append(f"{kind.replace('_keys', '')}: {', '.join(bad)}")
    if info.get("error_msgs"):
        problems.append("errors: " + "; ".join(map(str, info["error_msgs"])))
    if problems:
        raise CheckpointError(f"{path}: the checkpoint does not fit {builder['architecture']} "
                              f"({'; '.join(problems)}); model.builder.expected_keys lists the "
                              "accepted ones")
    check_preprocessor(path, model_cfg)
    return model


def _json_object(file: Path) -> dict:
    """A checkpoint directory's JSON file as a dict; CheckpointError naming the file where it
    is not readable JSON or not an object."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{file}: not readable JSON ({err})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got a JSON {type(raw).__name__}")
    return raw


# preprocessor_config.json key -> how builder.preprocessor holds it.
def _file_preprocessor(raw: dict) -> dict:
    size = raw.get("size")
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    crop = raw.get("crop_size", shortest)
    crop = [crop["height"], crop["width"]] if isinstance(crop, dict) else [crop, crop]
    return {"shortest_edge": shortest, "crop_size": crop,
            "rescale_factor": raw.get("rescale_factor", 1 / 255),
            "offset": raw.get("offset", False),
            "image_mean": raw.get("image_mean"), "image_std": raw.get("image_std"),
            "resample": raw.get("resample", 2)}


# The processor files a checkpoint directory may hold: an image processor's, or a video
# processor's (V-JEPA 2's checkpoints carry only VJEPA2VideoProcessor's).
PREPROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")


def preprocessor_file(path) -> Path | None:
    """The checkpoint directory's processor file (``PREPROCESSOR_FILES``, first found), or None."""
    return next((Path(path) / f for f in PREPROCESSOR_FILES if (Path(path) / f).is_file()), None)


def check_preprocessor(path, model_cfg) -> None:
    """One line naming the key when the checkpoint's preprocessor_config.json disagrees with the
    values the model config stores (offline the harness cannot read them from the hub)."""
    file = preprocessor_file(path)
    if file is None:
        return
    have = _file_preprocessor(_json_object(file))
    want = Preprocess.from_model(model_cfg)
    for key, value in have.items():
        mine = getattr(want, key)
        if value is None:
            continue
        same = (all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(mine, value))
                and len(mine) == len(value)) if isinstance(value, list) else (
            math.isclose(mine, value, rel_tol=1e-6) if isinstance(value, float) else mine == value)
        if not same:
            raise CheckpointError(f"{file}: {key}={value} but model.builder.preprocessor.{key}="
                                  f"{mine} (the views follow the model config; fix it)")


def build(model_cfg, class_names: list[str] | None = None) -> nn.Module:
    """The model in eval mode, with SDPA attention where it has one: the checkpoint
    ``model.weights`` resolves to (strictly loaded), else the architecture with random weights
    and a loud warning.

    X-CLIP classifies by text: pass the data set's class names (the prompt is the bare name, as
    the authors' ``generate_text`` formats it); the result is an ``XCLIPClassifier``.
    """
    problem = input_problem(model_cfg)
    if problem:
        raise ValueError(problem)
    path = resolve_weights(model_cfg)
    if path is None:
        msg = (f"RANDOM WEIGHTS: no checkpoint for {model_cfg['name']} "
               f"({model_cfg.get('source')} is not in the Hugging Face hub cache and "
               "model.weights names no directory); the model is built from its config with "
               "random weights and its accuracy means nothing")
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
        cls = _model_cls(model_cfg)
        model = cls._from_config(hf_config(model_cfg), attn_implementation=attention(cls))
    else:
        model = load_checkpoint(path, model_cfg)
    model.eval()
    if _builder(model_cfg)["architecture"] == "xclip":
        if class_names is None:
            raise ValueError(f"{model_cfg['name']}: X-CLIP classifies by the class names' text; "
                             "pass the data set's class names")
        return XCLIPClassifier(model, class_names, tokenizer=load_tokenizer(path)).eval()
    if _builder(model_cfg)["architecture"] == "vjepa2":
        heads = _builder(model_cfg).get("probe_heads")
        return VJEPA2SegmentClassifier(model, int(model_cfg["input"]["num_frames"]),
                                       None if heads is None else int(heads)).eval()
    return model


def load_tokenizer(path):
    """The checkpoint's CLIP tokenizer; without a checkpoint a byte-level CLIP BPE with no merges
    (random init: the text then only has to be tokenised, not understood)."""
    tr = _transformers()
    if path is not None and any((Path(path) / f).is_file()
                                for f in ("tokenizer.json", "vocab.json")):
        return tr.AutoTokenizer.from_pretrained(path, local_files_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_byte_level_vocab(Path(tmp))
        return tr.CLIPTokenizer(vocab_file=str(Path(tmp) / "vocab.json"),
                                merges_file=str(Path(tmp) / "merges.txt"))


def write_byte_level_vocab(directory: Path) -> None:
    """vocab.json + merges.txt of a CLIP BPE whose tokens are single bytes (GPT-2's byte
    alphabet, each also with CLIP's end-of-word mark): every text tokenises, offline."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")


class XCLIPClassifier(nn.Module):
    """X-CLIP as a classifier over the given class names: logits (B, classes) for a batch of
    (B, T, C, H, W) views, as ``XCLIPModel.forward``'s ``logits_per_video`` computes them,
    with the class names' text encoded once (it does not depend on the video)."""

    def __init__(self, model: nn.Module, class_names: list[str], tokenizer) -> None:
        super().__init__()
        self.model = model
        self.class_names = list(class_names)
        self.prompts = [prompt(n) for n in self.class_names]
        tokens = tokenizer(self.prompts, padding=True, return_tensors="pt")
        self.register_buffer("input_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("attention_mask", tokens["attention_mask"], persistent=False)
        self._text: torch.Tensor | None = None

    @property
    def config(self):
        return self.model.config

    def text_embeds(self) -> torch.Tensor:
        if self.training or self._text is None or self._text.device != self.input_ids.device:
            out = self.model.text_model(input_ids=self.input_ids,
                                        attention_mask=self.attention_mask)
            self._text = self.model.text_projection(out[1])
        return self._text

    def train(self, mode: bool = True):
        if mode:  # weights may change in training: encode the text again (eval() keeps it)
            self._text = None
        return super().train(mode)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        m = self.model
        b, t, c, h, w = pixel_values.shape
        vision = m.vision_model(pixel_values=pixel_values.reshape(-1, c, h, w))
        video = m.visual_projection(vision[1])
        video = m.mit(video.view(b, t, -1))[1]
        img = m.prompts_visual_layernorm(vision[0][:, 1:, :]) @ m.prompts_visual_projection
        img = img.view(b, t, -1, video.shape[-1]).mean(dim=1)
        text = self.text_embeds().to(video.dtype).unsqueeze(0).expand(b, -1, -1)
        text = text + m.prompts_generator(text, img)
        video = video / video.norm(p=2, dim=-1, keepdim=True)
        text = text / text.norm(p=2, dim=-1, keepdim=True)
        return torch.einsum("bd,bkd->bk", video, m.logit_scale.exp() * text)


class VJEPA2SegmentClassifier(nn.Module):
    """V-JEPA 2's frozen encoder and attentive probe as its authors test them on several temporal
    segments (facebookresearch/vjepa2 c2963a4, evals/video_classification_frozen/modelcustom/
    vit_encoder_multiclip.py 107-147 ClipAggregation, then eval.py 318-320): each segment of
    ``frames`` frames is encoded on its own (its RoPE positions start at 0), the segments' tokens
    are concatenated in time order, and the probe (``pooler``) and linear head read them all at
    once. A view (B, S * frames, C, H, W) -> (B, classes) logits; one segment is
    ``VJEPA2ForVideoClassification``'s own forward. Feeding the S * frames frames to the model
    as one clip would give the later segments other positions than the probe was trained on.

    ``probe_heads`` (``model.builder.probe_heads``): the probe's attention heads as its authors
    trained it (every configs/eval/*/*.yaml: classifier num_heads 16; eval.py 77, 152-155
    AttentiveClassifier(num_heads=...)). transformers' pooler takes the encoder's head count
    (modeling_vjepa2.py VJEPA2PoolerSelfAttention / CrossAttention: config.num_attention_heads),
    which is 16 for ViT-L but 22 for ViT-g: the same weights, split into other heads."""

    _supports_sdpa = True  # the encoder's and the probe's attention (counted_as switches them)

    def __init__(self, model: nn.Module, frames: int, probe_heads: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.frames = int(frames)
        if probe_heads is not None:
            set_probe_heads(model.pooler, probe_heads)

    @property
    def config(self):
        return self.model.config

    def set_attn_implementation(self, attention: str) -> None:
        self.model.set_attn_implementation(attention)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = pixel_values.shape
        if t % self.frames:
            raise ValueError(f"a V-JEPA 2 view of {t} frames is not whole segments of "
                             f"{self.frames} (model.input.num_frames)")
        segments = pixel_values.reshape(b * (t // self.frames), self.frames, c, h, w)
        tokens = self.model.vjepa2(pixel_values_videos=segments,
                                   skip_predictor=True).last_hidden_state
        tokens = tokens.reshape(b, -1, tokens.shape[-1])  # each view's segments, in time order
        return self.model.classifier(self.model.pooler(tokens))


def set_probe_heads(pooler: nn.Module, heads: int) -> None:
    """Split V-JEPA 2's attentive pooler's attention into ``heads`` heads (its weights do not
    depend on the count: the q, k, v and output projections are hidden x hidden)."""
    from transformers.models.vjepa2 import modeling_vjepa2 as m

    for module in pooler.modules():
        if isinstance(module, (m.VJEPA2PoolerSelfAttention, m.VJEPA2PoolerCrossAttention)):
            if module.embed_dim % heads:
                raise ValueError(f"model.builder.probe_heads: {heads} does not divide the "
                                 f"probe's width {module.embed_dim}")
            module.num_heads, module.head_dim = heads, module.embed_dim // heads
            module.scale = module.head_dim ** -0.5


def prompt(class_name: str) -> str:
    """X-CLIP's text for a class: the name itself (VideoX X-CLIP/utils/tools.py generate_text:
    ``text_aug = f"{{}}"``, formatted with the labels CSV's name)."""
    return text_aug().format(class_name)


def text_aug() -> str:
    return "{}"


HEADS = ("model",)  # the model's own pooled head (protocol.head)


def _logits_only(module: nn.Module, args: tuple, output):
    """Forward hook: the run takes a logits tensor; transformers' models return a ModelOutput."""
    return output if isinstance(output, torch.Tensor) else output.logits


def apply_head(module: nn.Module, head: str) -> bool:
    """The transformers models classify from their own pooled features; ``model`` is the only
    head (a protocol that re-pools another framework's head cannot apply). Makes the forward
    return the logits tensor (a hook: parameter names stay transformers'); False: logits, not
    probabilities."""
    if head not in HEADS:
        raise ValueError(f"protocol.head={head}: the transformers models take only 'model'")
    if not isinstance(module, XCLIPClassifier):
        module.register_forward_hook(_logits_only)
    return False


def logits(module: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, classes) logits from a (B, T, C, H, W) batch, for either kind of model."""
    out = module(pixel_values) if isinstance(module, XCLIPClassifier) else module(
        pixel_values=pixel_values)
    return out if isinstance(out, torch.Tensor) else out.logits


def probabilities(module: nn.Module, views: torch.Tensor, views_per_video: int,
                  combine: str = "softmax_mean") -> torch.Tensor:
    """Per-video class probabilities as the protocol's ``combine`` says (what the run's loop
    computes): the mean of the views' softmax (``softmax_mean``, ``softmax_sum``: the same
    ranking), or the softmax of their mean logits (``logit_mean``)."""
    with torch.no_grad():
        out = logits(module, views)
    if combine == "logit_mean":
        return out.view(-1, views_per_video, out.shape[-1]).mean(1).softmax(-1)
    p = out.softmax(-1)
    return p.view(-1, views_per_video, p.shape[-1]).mean(1)


# ---------------------------------------------------------------------------------------------
# Preprocessing: the checkpoint's preprocessor config, as the transformers processor applies it.

@dataclass(frozen=True)
class Preprocess:
    """``builder.preprocessor``: the checkpoint's preprocessor_config.json values."""

    shortest_edge: int
    crop_size: tuple[int, int]  # (H, W)
    rescale_factor: float
    offset: bool  # ViViT: x * rescale - 1 before normalising
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    resample: int = 2  # PIL BILINEAR (the processors' torchvision backend: bilinear, antialias)

    @classmethod
    def from_model(cls, model_cfg) -> "Preprocess":
        p = plain(model_cfg["builder"])["preprocessor"]
        crop = p["crop_size"]
        return cls(shortest_edge=int(p["shortest_edge"]),
                   crop_size=(int(crop[0]), int(crop[1])) if isinstance(crop, (list, tuple))
                   else (int(crop), int(crop)),
                   rescale_factor=float(p["rescale_factor"]), offset=bool(p.get("offset", False)),
                   image_mean=tuple(map(float, p["image_mean"])),
                   image_std=tuple(map(float, p["image_std"])), resample=int(p.get("resample", 2)))

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (scale, shift): x * scale + shift is rescale (and offset) then normalise."""
        std = torch.tensor(self.image_std, dtype=torch.float64)
        mean = torch.tensor(self.image_mean, dtype=torch.float64)
        base = -1.0 if self.offset else 0.0
        return (self.rescale_factor / std).float(), ((base - mean) / std).float()


def resized_size(h: int, w: int, shortest_edge: int) -> tuple[int, int]:
    """(H, W) after resizing the short side to ``shortest_edge``, as transformers'
    ``get_resize_output_image_size(default_to_square=False)`` computes it."""
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(shortest_edge * long / short)
    return (new_long, shortest_edge) if w <= h else (shortest_edge, new_long)


def resize(frames: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """uint8 (N, C, H, W) frames resized as the processor does: torchvision's bilinear with
    antialias on the uint8 frames (rounded back to uint8)."""
    import torchvision.transforms.v2.functional as tvF

    if pre.resample != 2:
        raise ValueError(f"builder.preprocessor.resample={pre.resample}: only 2 (bilinear)")
    size = resized_size(frames.shape[-2], frames.shape[-1], pre.shortest_edge)
    if tuple(frames.shape[-2:]) == size:
        return frames
    return tvF.resize(frames, list(size), interpolation=tvF.InterpolationMode.BILINEAR,
                      antialias=True)


# Each protocol's spatial step (protocol.spatial): how a clip's frames are resized, where the crops
# lie and how the pixels are normalised. The four authors' rules restate their test code (the
# protocol files cite file and line); ``processor`` is the model card's: the checkpoint's video
# processor (antialiased resize, builder.preprocessor's rescale and normalisation, its centre
# crop; three crops at uniform_crop's boxes, as the processor has none).
SPATIALS = {
    "processor": "the checkpoint's video processor (torchvision bilinear with antialias)",
    "videomae": "VideoMAE kinetics.py/ssv2.py: cv2 INTER_LINEAR to int(S * L / s), crops "
                "int(k * (L - c) / (n - 1)) along the long side",
    "pyslowfast": "TimeSformer (PySlowFast): F.interpolate bilinear on floats to floor(L / s * S), "
                  "uniform_crop",
    "scenic": "ViViT (scenic + DMVR): tf.image.resize bilinear to max(S, L * S // s), truncated "
              "to uint8, three_spatial_crops (one: the central crop)",
    "mmaction": "X-CLIP (VideoX pipeline.py, mmcv): cv2 INTER_LINEAR to int(L * S / s + 0.5), "
                "ThreeCrop (one: CenterCrop)",
    "vjepa2": "V-JEPA 2 EvalVideoTransform: cv2 INTER_LINEAR to short side c, crops at "
              "k * ((L - c) // (n - 1)) along the long side (one: short side S, CenterCrop)",
}


def _centre(length: int, crop: int) -> int:
    """torchvision's center_crop offset (the processors' centre crop)."""
    return int(round((length - crop) / 2.0))


def _uniform_crop(h: int, w: int, c: int) -> list[tuple[int, int]]:
    """uniform_crop's three boxes (PySlowFast transform.uniform_crop, scenic's deterministic_crop):
    centre ceil((L - c) / 2) on both axes, then 0 and L - c along the height when height > width,
    else along the width."""
    y, x = int(math.ceil((h - c) / 2)), int(math.ceil((w - c) / 2))
    if h > w:
        return [(0, x), (y, x), (h - c, x)]
    return [(y, 0), (y, x), (y, w - c)]


def crop_boxes(h: int, w: int, crop: tuple[int, int], crops: int,
               rule: str) -> list[tuple[int, int]]:
    """(top, left) of each crop of an (h, w) frame under the spatial ``rule``, in the authors'
    order (a video's views are averaged, so the order changes no number)."""
    ch, cw = crop
    if ch > h or cw > w:
        raise ValueError(f"frames of {h}x{w} are smaller than the {ch}x{cw} crop")
    if rule not in SPATIALS:
        raise ValueError(f"protocol.spatial: {rule!r} is not one of {sorted(SPATIALS)}")
    if crops not in (1, 3):
        raise ValueError(f"views.crops: the {rule} protocol takes 1 or 3 crops, got {crops}")
    if crops == 1:
        if rule in ("scenic", "mmaction"):  # tf.image.resize_with_crop_or_pad, CenterCrop: floor
            return [((h - ch) // 2, (w - cw) // 2)]
        if rule == "pyslowfast":  # uniform_crop(spatial_idx=1)
            return [_uniform_crop(h, w, ch)[1]]
        return [(_centre(h, ch), _centre(w, cw))]  # the processor's (VideoMAE: no rule of its own)
    if rule in ("pyslowfast", "scenic", "processor"):
        return _uniform_crop(h, w, ch)
    if rule == "vjepa2":
        return vjepa2_boxes(h, w, ch, crops)
    if rule == "videomae":  # kinetics.py: along the height when H >= W; the short axis whole
        tall = h >= w
        length = h if tall else w
        along = [int(k * (length - ch) / (crops - 1)) for k in range(crops)]
        return [(p, _centre(w, cw)) if tall else (_centre(h, ch), p) for p in along]
    # mmaction ThreeCrop: left, right, middle (step (L - c) // 2) when the crop spans the height
    if ch == h:
        step = (w - cw) // 2
        return [(0, 0), (0, 2 * step), (0, step)]
    if cw == w:
        step = (h - ch) // 2
        return [(0, 0), (2 * step, 0), (step, 0)]
    raise ValueError(f"ThreeCrop {ch} needs a side of {ch} after the resize, got {h}x{w}")


def vjepa2_boxes(h: int, w: int, crop: int, crops: int) -> list[tuple[int, int]]:
    """V-JEPA 2's test views (facebookresearch/vjepa2 c2963a4, evals/video_classification_frozen/
    utils.py 158-178 EvalVideoTransform): spatial_step = (max(H, W) - c) // (n - 1), view k
    from k * spatial_step along the height when H > W, else along the width (the whole other
    axis: the short side is c after its resize). Not VideoMAE's int(k * (L - c) / (n - 1)): the
    step is floored first, so the last view ends a pixel short of the edge when L - c is odd."""
    step = (max(h, w) - crop) // (crops - 1)
    if h > w:
        return [(k * step, 0) for k in range(crops)]
    return [(0, k * step) for k in range(crops)]


def _cv2_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) frames through cv2.resize INTER_LINEAR (what VideoMAE's
    functional.resize_clip and mmcv.imresize call: the authors' library, whose fixed-point
    arithmetic no torch resize reproduces), back on the frames' device."""
    import cv2
    import numpy as np

    h, w = size
    host = frames.permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([cv2.resize(np.ascontiguousarray(f), (w, h), interpolation=cv2.INTER_LINEAR)
                    for f in host])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(frames.device)


def _bilinear(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float bilinear, half-pixel centres, no antialias: F.interpolate(align_corners=False), as
    PySlowFast calls it; tf.image.resize(BILINEAR) computes the same weights."""
    return torch.nn.functional.interpolate(frames.float(), size=list(size), mode="bilinear",
                                           align_corners=False)


def videomae_size(h: int, w: int, side: int) -> tuple[int, int]:
    """VideoMAE functional.get_resize_sizes: the short side ``side``, the long int(side * L / s)."""
    if w < h:
        return int(side * h / w), side
    return side, int(side * w / h)


def pyslowfast_size(h: int, w: int, side: int) -> tuple[int, int]:
    """PySlowFast transform.random_short_side_scale_jitter: the long side floor(L / s * side)."""
    if w < h:
        return int(math.floor((float(h) / w) * side)), side
    return side, int(math.floor((float(w) / h) * side))


def scenic_size(h: int, w: int, side: int) -> tuple[int, int]:
    """DMVR processors.resize_smallest: max(side, L * side // s) on each axis."""
    return max(side, (h * side) // w), max(side, (w * side) // h)


def mmcv_size(h: int, w: int, side: int) -> tuple[int, int]:
    """mmcv.rescale_size((w, h), (inf, side)): factor side / short side, int(x * factor + 0.5)."""
    factor = side / min(h, w)
    return int(h * factor + 0.5), int(w * factor + 0.5)


def one_crop_side(rule: str, crop: int, side: int) -> int:
    """The short side a single-crop test resizes to: TimeSformer's TRAIN_JITTER_SCALES[0] (256,
    its kinetics.py 175-180 when NUM_SPATIAL_CROPS is 1), X-CLIP's int(256 / 224 * INPUT_SIZE)
    (its datasets/build.py 245, 289); every other rule keeps ``side``."""
    if rule == "pyslowfast":
        return 256
    if rule == "mmaction":
        return int(256 / 224 * crop)
    return side


def spatial_resize(frames: torch.Tensor, rule: str, pre: Preprocess) -> torch.Tensor:
    """uint8 (N, C, H, W) frames with the short side at ``pre.shortest_edge`` as ``rule``'s code
    resizes them: uint8 for every rule but ``pyslowfast`` (its floats are never rounded)."""
    h, w = frames.shape[-2:]
    side = pre.shortest_edge
    if rule == "processor":
        return resize(frames, pre)
    if rule in ("videomae", "vjepa2"):  # resize_clip: the clip as it is when the short side fits
        # (V-JEPA 2's src/datasets/utils/video/functional.py 37-95 is VideoMAE's resize_clip)
        return frames if min(h, w) == side else _cv2_resize(frames, videomae_size(h, w, side))
    if rule == "mmaction":  # mmcv resizes always (cv2 returns a same-size frame unchanged)
        return _cv2_resize(frames, mmcv_size(h, w, side))
    if rule == "pyslowfast":
        return frames if min(h, w) == side else _bilinear(frames, pyslowfast_size(h, w, side))
    size = scenic_size(h, w, side)
    if size == (h, w):
        return frames
    return _bilinear(frames, size).floor_().to(torch.uint8)  # tf.cast(float -> uint8) truncates


def preprocess_views(clips: torch.Tensor, pre: Preprocess, crops: int, rule: str,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """float (clips * crops, T, C, H, W) views, clip-major, from uint8 clips in the harness's
    (N, C, T, H, W) layout (a permuted view of its (N, T, H, W, C) frames): resized and cropped
    as ``rule`` says, rescaled and normalised as ``pre`` says.

    The (N, T, C, H, W) order is a permutation of the same memory, so the frames reach the
    resize without a copy; each crop is written once, straight into the batch the model takes,
    and rescale + normalise run in place on it as one multiply-add per value (the resize is
    bilinear, whose weights sum to 1, so normalising after it equals PySlowFast's before).
    """
    n, c, t, h, w = clips.shape
    if crops == 1 and rule != "processor":
        pre = dataclasses.replace(pre, shortest_edge=one_crop_side(rule, pre.crop_size[0],
                                                                    pre.shortest_edge))
    if crops > 1 and rule == "vjepa2":  # EvalVideoTransform(short_side_size=crop_size)
        pre = dataclasses.replace(pre, shortest_edge=pre.crop_size[0])
    frames = spatial_resize(clips.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w), rule, pre)
    frames = frames.view(n, t, c, *frames.shape[-2:])
    boxes = crop_boxes(frames.shape[-2], frames.shape[-1], pre.crop_size, crops, rule)
    ch, cw = pre.crop_size
    if out is None:
        out = torch.empty((n * len(boxes), t, c, ch, cw), dtype=torch.float32, device=clips.device)
    for i in range(n):
        for j, (y, x) in enumerate(boxes):
            out[i * len(boxes) + j].copy_(frames[i, :, :, y:y + ch, x:x + cw])
    scale, shift = (v.to(out.device).view(1, 1, c, 1, 1) for v in pre.affine())
    torch.addcmul(shift, out, scale, out=out)
    return out


# ---------------------------------------------------------------------------------------------
# Temporal sampling: frame indices into DecodedVideo.frames per clip, as each author's test code.

def _count(video) -> int:
    n = len(video.frames)
    if n == 0:
        raise ValueError("the video has no decoded frames")
    return n


def _fps(video) -> float:
    if video.average_fps:
        return float(video.average_fps)
    if len(video.pts) > 1:  # no rate in the header: from the timestamps
        return float((len(video.pts) - 1) / ((video.pts[-1] - video.pts[0]) * video.time_base))
    return 30.0


def videomae_windows(video, spec, clips: int) -> list[list[int]]:
    """VideoMAE kinetics.py, VideoClsDataset test mode (MCG-NJU/VideoMAE): every
    ``sampling_rate``-th frame of the whole video (the last repeated up to ``num_frames``), then
    ``clips`` windows of ``num_frames`` consecutive ones at start = int(k * step),
    step = max((len - num_frames) / (clips - 1), 0). One clip (the authors divide by zero):
    the middle window."""
    n, t = _count(video), spec.num_frames
    index = list(range(0, n, spec.sampling_rate))
    index += [index[-1]] * max(t - len(index), 0)
    if clips == 1:
        starts = [(len(index) - t) // 2]
    else:
        step = max((len(index) - t) / (clips - 1), 0.0)
        starts = [int(k * step) for k in range(clips)]
    return [index[s:s + t] for s in starts]


def videomae_ssv2_windows(video, spec, clips: int) -> list[list[int]]:
    """VideoMAE ssv2.py, SSVideoClsDataset test mode (MCG-NJU/VideoMAE; datasets.py builds it
    with clip_len 1, num_segment = num_frames, test_num_segment = clips): loadvideo_decord
    takes tick = N / num_frames, the segments' centres int(tick / 2 + tick * x) and starts
    int(tick * x), pads with the last of them up to num_frames * clips, sorts; __getitem__ takes
    every second one from ``chunk_nb`` (0 or 1): clip 0 is the starts, clip 1 the centres. More
    than 2 clips would give the model more than num_frames frames: refused (MAX_CLIPS)."""
    if clips > 2:
        raise ValueError(f"views.clips={clips}: the VideoMAE SSv2 test takes 1 or 2 clips "
                         "(test_num_segment: segment starts, then centres)")
    n, t = _count(video), spec.num_frames
    tick = n / float(t)
    index = [int(tick / 2.0 + tick * x) for x in range(t)] + [int(tick * x) for x in range(t)]
    index += [index[-1]] * max(t * clips - len(index), 0)
    index.sort()
    return [index[c::2] for c in range(clips)]


def pyslowfast_windows(video, spec, clips: int) -> list[list[int]]:
    """TimeSformer (facebookresearch/TimeSformer lib/datasets/decoder.py, PySlowFast):
    clip_size = sampling_rate * num_frames / target_fps * fps frames; clip k of ``clips``
    starts at max(N - clip_size, 0) * k / clips; frames =
    clamp(linspace(start, start + clip_size - 1, num_frames), 0, N - 1).long(). The published
    test (NUM_ENSEMBLE_VIEWS 1) is clip 0 of 1: from the video's first frame."""
    n, t = _count(video), spec.num_frames
    size = spec.sampling_rate * t / float(spec.frames_per_second) * _fps(video)
    delta = max(n - size, 0)
    out = []
    for k in range(clips):
        start = delta * k / clips
        idx = torch.linspace(start, start + size - 1, t).clamp(0, n - 1).long()
        out.append(idx.tolist())
    return out


def resampled_frames(video, rate) -> list[int]:
    """The decoded frames as a video re-encoded at ``rate`` fps by FFmpeg's ``fps`` filter
    (DMVR examples/generate_from_file.py extract_frames, how scenic's Kinetics TFRecords were
    written: "Kinetics videos has 250 frames", 25 fps): index into ``video.frames`` of each
    output frame. Output frame k (time k / rate from the first frame) shows the latest frame
    whose time, rounded to the nearest 1 / rate tick (halves away from zero, FFmpeg's
    AV_ROUND_NEAR_INF), is at most k; the output runs to the last frame's tick. Times come from
    the timestamps (a late first frame starts the output), else from the frame rate."""
    from fractions import Fraction

    n, rate = _count(video), Fraction(rate)
    if len(video.pts) == n and n > 1:
        times = [(p - video.pts[0]) * Fraction(video.time_base) for p in video.pts]
    else:
        times = [Fraction(i) / Fraction(_fps(video)) for i in range(n)]
    ticks = [math.floor(t * rate + Fraction(1, 2)) for t in times]  # t >= 0: halves up
    out, i = [], 0
    for k in range(ticks[-1] + 1):
        while i + 1 < n and ticks[i + 1] <= k:
            i += 1
        out.append(i)
    return out


def dmvr_windows(video, spec, clips: int) -> list[list[int]]:
    """ViViT (scenic, DMVR processors.sample_linspace_sequence) on the video resampled to
    ``frames_per_second`` (25: scenic's TFRecords, ``resampled_frames``): offsets =
    int(linspace(0, max(N - num_frames * stride, 0), clips)), frames offset + stride * s, the
    sequence repeated when too short (index mod N). One clip: DMVR's sample_sequence centre,
    offset max((N - num_frames * stride) // 2, 0)."""
    grid = resampled_frames(video, float(spec.frames_per_second))
    n, t, stride = len(grid), spec.num_frames, spec.sampling_rate
    top = max(n - t * stride, 0)
    if clips == 1:
        offsets = [top // 2]
    else:
        offsets = torch.linspace(0.0, float(top), clips, dtype=torch.float32).int().tolist()
    return [[grid[(o + s * stride) % n] for s in range(t)] for o in offsets]


def xclip_windows(video, spec, clips: int) -> list[list[int]]:
    """X-CLIP (VideoX X-CLIP datasets/pipeline.py SampleFrames, clip_len 1, num_clips =
    num_frames segments). One clip (TEST.NUM_CLIP 1): the test mode's segment centres,
    int(k * avg + avg / 2), avg = N / num_frames. Several (TEST.NUM_CLIP 4: ``multiview``): each
    view is the training sampler's, segments of avg = N // num_frames frames from k * avg plus
    a random offset below avg, which here is the fixed int(avg * (v + 0.5) / V) for view v of V
    (the authors' numbers are one draw); a video shorter than num_frames takes
    np.around(k * N / num_frames) (round half to even) in every view. Indices past the end
    loop (mod N)."""
    n, t = _count(video), spec.num_frames
    if clips == 1:
        avg = n / float(t)
        return [[int(k * avg + avg / 2.0) % n for k in range(t)]]
    avg = n // t
    if avg == 0:
        return [[round(k * n / t) % n for k in range(t)] for _ in range(clips)]
    return [[(k * avg + int(avg * (v + 0.5) / clips)) % n for k in range(t)]
            for v in range(clips)]


def vjepa2_windows(video, spec, clips: int) -> list[list[int]]:
    """V-JEPA 2's test clips (facebookresearch/vjepa2 c2963a4, src/datasets/video_dataset.py
    273-370 loadvideo_decord; evals/video_classification_frozen/eval.py 181-197 builds it with
    num_clips = num_segments, frame_step, allow_clip_overlap=True and, not passing it,
    random_clip_sampling's default True): fpc = ``num_frames``, fstp = ``sampling_rate``,
    clip_len = fpc * fstp, the video cut into ``clips`` partitions of N // clips frames.
    - partition longer than clip_len (319-329): a window of clip_len frames ending at a random
      end in [clip_len, partition) of the partition, fpc frames clip(linspace(start, end, fpc),
      start, end - 1); the harness takes the middle of that range, end = (clip_len + partition
      - 1) // 2 (the authors' number is one draw);
    - else (350-364): sample_len = min(clip_len, N) - 1, linspace(0, sample_len, sample_len //
      fstp) then sample_len repeated up to fpc, clipped to sample_len - 1, shifted by
      i * ((N - clip_len) // (clips - 1)) when N > clip_len.
    All the clips form one view (``FUSED_TIMINGS``: VJEPA2SegmentClassifier's segments)."""
    import numpy as np

    n, fpc, fstp = _count(video), spec.num_frames, spec.sampling_rate
    clip_len = fpc * fstp
    partition = n // clips
    out = []
    for i in range(clips):
        if partition > clip_len:
            end = (clip_len + partition - 1) // 2  # the middle of randint(clip_len, partition)
            start = end - clip_len
            idx = np.clip(np.linspace(start, end, num=fpc), start, end - 1).astype(np.int64)
            idx = idx + i * partition
        else:
            sample_len = min(clip_len, n) - 1
            idx = np.linspace(0, sample_len, num=sample_len // fstp)
            idx = np.concatenate((idx, np.ones(fpc - sample_len // fstp) * sample_len))
            idx = np.clip(idx, 0, max(sample_len - 1, 0)).astype(np.int64)  # 1 frame: frame 0
            step = (n - clip_len) // (clips - 1) if n > clip_len else 0
            idx = idx + i * step
        out.append(idx.tolist())
    return out


# Timings that take at most so many clips (check_settings refuses more before any work).
MAX_CLIPS = {"videomae_ssv2": 2}
# Timings whose clips form one view: the segments V-JEPA 2's probe reads at once (cut_clips
# joins them in time order; views.clips counts the segments, each view holds all of them).
FUSED_TIMINGS = ("vjepa2",)

TIMINGS = {
    "videomae": videomae_windows,
    "videomae_ssv2": videomae_ssv2_windows,
    "pyslowfast": pyslowfast_windows,
    "dmvr": dmvr_windows,
    "xclip": xclip_windows,
    "vjepa2": vjepa2_windows,
}


def frame_windows(video, spec, clips: int, timing: str) -> list[list[int]]:
    """Each clip's frame indices (``num_frames`` of them) into ``video.frames``."""
    if timing not in TIMINGS:
        raise ValueError(f"protocol.clips: {timing!r} is not one of {sorted(TIMINGS)}")
    return TIMINGS[timing](video, spec, clips)


def sample_clips(video, spec, clips: int, timing: str) -> torch.Tensor:
    """uint8 (clips, C, T, H, W): the protocol's frames, in the harness's clip layout (a
    permutation of (clips, T, H, W, C) memory); ``cut_clips`` without a fault."""
    return cut_clips(video, spec, clips, timing)


def cut_clips(video, spec, clips: int, timing: str, fault: str | None = None) -> torch.Tensor:
    """(``CUTS_CLIPS``) uint8 (views, C, T, H, W), in the loader worker: each clip's frames
    (``frame_windows``) a view, except under ``FUSED_TIMINGS`` (V-JEPA 2), whose ``clips``
    segments form one view of clips * num_frames frames in time order; ``views.fault`` as
    views.sample_clips applies it to the other frameworks' clips."""
    windows = frame_windows(video, spec, clips, timing)
    if fault == "clips_from_start":
        windows = [windows[0]] * clips
    views = 1 if timing in FUSED_TIMINGS else clips
    frames = video.rgb([i for w in windows for i in w])
    return faulted(frames.view(views, -1, *frames.shape[1:]).permute(0, 4, 1, 2, 3), fault)


# ---------------------------------------------------------------------------------------------
# FLOPs, in both attention conventions.

FLOP_CONVENTIONS = {
    "eager": "fvcore MACs with attention matmuls (eager attention)",
    "sdpa": "fvcore MACs as SDPA hides them: attention matmuls not counted",
}


def gflops(module: nn.Module, example: torch.Tensor, attention: str = "eager") -> float:
    """fvcore's count (one per multiply-add) of one forward pass on ``example``, in G.

    fvcore cannot see inside scaled_dot_product_attention on the CPU, so the count under SDPA
    misses QK^T and AV; ``attention='eager'`` switches the model to the eager attention (the
    matmuls as ops fvcore counts) for the count and back afterwards.
    """
    from fvcore.nn import FlopCountAnalysis

    with counted_as(module, attention), torch.no_grad():
        counter = FlopCountAnalysis(_Logits(module), (example,))
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return counter.total() / 1e9


@contextlib.contextmanager
def counted_as(module: nn.Module, attention: str):
    """Within: the model runs ``attention`` ('eager': the attention matmuls as ops a counter
    sees; 'sdpa': as the run computes them) and X-CLIP's text is encoded already (once per run,
    not per view); the model's own attention afterwards."""
    model = module.model if isinstance(module, XCLIPClassifier) else module
    before = model.config._attn_implementation
    if not getattr(model, "_supports_sdpa", False):
        attention = "eager"  # the only attention it has: both conventions count the matmuls
    model.set_attn_implementation(attention)
    try:
        if isinstance(module, XCLIPClassifier):
            with torch.no_grad():
                module.eval().text_embeds()
        yield module
    finally:
        model.set_attn_implementation(before)


class _Logits(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return logits(self.module, x)


def example(model_cfg, batch: int = 1) -> torch.Tensor:
    """A random (batch, T, C, H, W) input of the model's test shape."""
    pre = Preprocess.from_model(model_cfg)
    return torch.randn(batch, int(model_cfg["input"]["num_frames"]), 3, *pre.crop_size)


def num_params(module: nn.Module) -> int:
    model = module.model if isinstance(module, XCLIPClassifier) else module
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# The reference: what a user writes from the model card (tests and the bench row).

def processor(model_cfg, video: bool = True):
    """The transformers processor with the checkpoint's preprocessor values."""
    tr = _transformers()
    pre = Preprocess.from_model(model_cfg)
    arch = _builder(model_cfg)["architecture"]
    if video:  # AutoVideoProcessor's class per model type (X-CLIP's is VideoMAE's)
        cls_name = {"videomae": "VideoMAE", "timesformer": "Timesformer", "vivit": "Vivit",
                    "xclip": "VideoMAE"}[arch] + "VideoProcessor"
    else:  # the checkpoints' image_processor_type (TimeSformer's names VideoMAE's)
        cls_name = {"vivit": "Vivit"}.get(arch, "VideoMAE") + "ImageProcessor"
    kwargs = dict(size={"shortest_edge": pre.shortest_edge},
                  crop_size={"height": pre.crop_size[0], "width": pre.crop_size[1]},
                  rescale_factor=pre.rescale_factor, image_mean=list(pre.image_mean),
                  image_std=list(pre.image_std), resample=pre.resample)
    if arch == "vivit" and not video:
        kwargs["offset"] = pre.offset
    return getattr(tr, cls_name)(**kwargs)


def reference_views(path, spec, clips: int, crops: int, *, model_cfg, timing: str, spatial: str):
    """The model card's pipeline, per view (``make bench``'s reference): each view as a list
    of one (1, T, C, H, W) tensor, the input ``model(pixel_values=...)`` takes at batch 1.

    Per clip, as a user writes it from the transformers docs: PyAV decodes the video from its
    start up to the clip's last frame and keeps the protocol's frames (the docs'
    ``read_video_pyav``; the frame count from the stream header, as their ``seg_len``), and
    the checkpoint's video processor resizes, crops and normalises them; three crops are cut
    from the processor's resized, normalised frames at the protocol's crop boxes (the processor
    has only the centre crop; the model card's protocols, ``spatial: processor``, take
    uniform_crop's). The frame indices and crop boxes are the protocol's (``frame_windows``,
    ``crop_boxes``): the pipeline differs from the harness's under the same protocol in how it
    decodes, resizes, normalises and batches.
    """
    from types import SimpleNamespace

    import av
    import numpy as np

    video_processor = processor(model_cfg)
    pre = Preprocess.from_model(model_cfg)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        header = SimpleNamespace(frames=range(stream.frames), pts=[], time_base=stream.time_base,
                                 average_fps=float(stream.average_rate or 0))
    if not header.frames:  # read inside: PyAV 18.1.1 refuses a closed container's stream
        raise ValueError(f"{path}: no frame count in the stream header (the card's seg_len)")
    ch, cw = pre.crop_size
    for window in frame_windows(header, spec, clips, timing):
        picked = {}
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i > max(window):
                    break
                if i in window:
                    picked[i] = frame.to_ndarray(format="rgb24")
        frames = np.stack([picked[i] for i in window])  # (T, H, W, 3); a repeated index twice
        if crops == 1:
            yield [video_processor(frames, return_tensors="pt")["pixel_values"]]
            continue
        whole = video_processor(frames, do_center_crop=False, return_tensors="pt")
        whole = whole["pixel_values"][0]
        for y, x in crop_boxes(*whole.shape[-2:], pre.crop_size, crops, spatial):
            yield [whole[None, :, :, y:y + ch, x:x + cw].contiguous()]


# ---------------------------------------------------------------------------------------------
# The registry's adapter API (benchmark/frameworks/__init__.py): what the run calls. The run
# passes this adapter's ``Spec`` (``input_spec``): ``model.input`` is the authors' test input,
# ``builder.preprocessor`` the checkpoint's processor (their sizes agree: ``build`` refuses a
# config where they differ); the protocol's spatial rule picks which normalisation applies.

CHECK_HASH = False  # no URL: the weights are a save_pretrained directory or the hub cache's
CUTS_CLIPS = True  # cut_clips: V-JEPA 2's segments form one view (FUSED_TIMINGS)
CHANNELS_LAST = False  # (B, T, C, H, W) views, 2D patch convolutions: eval.channels_last is off
OWN_PROTOCOLS_ONLY = True  # its views' layout and heads are its models' only (check_settings)


def checkpoint_state(loaded):
    """Unused: ``build`` loads the checkpoint directory itself (strictly, ``load_checkpoint``)."""
    return loaded


def official_url(model_cfg) -> None:
    """None: the official weights come from the Hugging Face hub cache (``resolve_weights``)."""
    return None


def class_names(model_cfg) -> None:
    """None: the class ids are the data set's class-name file's (X-CLIP takes its names)."""
    return None


def source_values(model_cfg) -> dict:
    """What ``model.source``'s checkpoint says of itself (config.json: architecture, frame
    count, classes; preprocessor_config.json: resize, crop, normalisation), as model config
    values; a checkpoint this adapter cannot evaluate is refused saying what is missing.
    X-CLIP's classes are the data set's (``num_classes`` 0): it classifies by their text."""
    source = str(model_cfg["source"])
    path = source_dir(source, model_cfg.get("revision"))
    config = _json_object(path / "config.json")
    kind = config.get("model_type")
    if kind not in ARCHITECTURES:
        classes = ", ".join(config.get("architectures") or [])
        why = f" ({NOT_EVALUATED[kind]})" if kind in NOT_EVALUATED else ""
        raise CheckpointError(
            f"model.source={source}: model_type {kind!r} ({classes}) has no authors' test "
            f"protocol here{why}; the harness evaluates {', '.join(ARCHITECTURES)}")
    file = preprocessor_file(path)
    if file is None:
        raise CheckpointError(f"model.source={source}: no {' or '.join(PREPROCESSOR_FILES)}: "
                              "the views' size and normalisation are unknown")
    pre = _file_preprocessor(_json_object(file))
    if pre["image_mean"] is None or pre["image_std"] is None:
        raise CheckpointError(f"{file}: no image_mean/image_std")
    frames = (config.get("num_frames") or (config.get("vision_config") or {}).get("num_frames")
              or config.get("frames_per_clip"))  # V-JEPA 2: the frames of one segment
    if not frames:
        raise CheckpointError(f"{path / 'config.json'}: no num_frames")
    id2label = config.get("id2label") or {}
    return {"architecture": kind, "preprocessor": pre,
            "num_classes": 0 if kind == "xclip" else len(id2label),
            "input": {"num_frames": int(frames), "side_size": int(pre["shortest_edge"]),
                      "crop_size": int(pre["crop_size"][0]), **input_normalisation(pre)}}


def input_normalisation(pre) -> dict:
    """``model.input``'s mean and std (applied after /255) that equal a processor's rescale
    (and offset) then normalise: ``pre`` as ``builder.preprocessor`` holds it."""
    offset = 1.0 if pre["offset"] else 0.0
    return {"mean": [(m + offset) / pre["rescale_factor"] / 255 for m in pre["image_mean"]],
            "std": [s / (255 * pre["rescale_factor"]) for s in pre["image_std"]]}


def checkpoint_class_names(module: nn.Module) -> list[str] | None:
    """The checkpoint's ``id2label`` in id order; None for transformers' placeholders
    (``LABEL_0``...: a config that names no classes) and for X-CLIP (it classifies by the data
    set's own names)."""
    if isinstance(module, XCLIPClassifier):
        return None
    id2label = getattr(getattr(module, "config", None), "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    if not names or names == [f"LABEL_{i}" for i in range(len(names))]:
        return None
    return names


def preprocess_of(spec) -> Preprocess:
    """The preprocessing an ``InputSpec`` says: short side ``side_size``, a square
    ``crop_size`` crop, /255 and the mean/std (the authors' normalisation: ViViT's x * 2 / 255 - 1
    is /255 then mean 0.5, std 0.5)."""
    return Preprocess(shortest_edge=int(spec.side_size),
                      crop_size=(int(spec.crop_size), int(spec.crop_size)),
                      rescale_factor=1 / 255, offset=False, image_mean=tuple(spec.mean),
                      image_std=tuple(spec.std))


def input_problem(model_cfg) -> str | None:
    """Where ``model.input``'s sizes (the authors' short side and crop) differ from
    ``builder.preprocessor``'s (the checkpoint's processor): a line naming the key, or None.
    Their normalisations may differ (ViViT: the authors' [-1, 1], the processor's [-3, 1])."""
    want = Preprocess.from_model(model_cfg)
    i = model_cfg["input"]
    have = preprocess_of(type("Spec", (), dict(side_size=i["side_size"], crop_size=i["crop_size"],
                                                 mean=list(i["mean"]), std=list(i["std"]))))
    if have.shortest_edge != want.shortest_edge:
        return (f"model.input.side_size={have.shortest_edge} but "
                f"model.builder.preprocessor.shortest_edge={want.shortest_edge}")
    if have.crop_size != want.crop_size:
        return (f"model.input.crop_size={have.crop_size[0]} but "
                f"model.builder.preprocessor.crop_size={list(want.crop_size)}")
    return None


def clip_windows(video, clip_duration, clips: int, timing: str, frame_rate: float | None = None,
                 clip_len: int | None = None) -> list[list[int]]:
    """The registry's call: ``frame_windows`` with the model's spec, whose sampling rate is
    ``clip_duration * frame_rate / clip_len`` (``InputSpec.clip_duration``'s definition)."""
    from fractions import Fraction
    from types import SimpleNamespace

    if frame_rate is None or clip_len is None:
        raise ValueError(f"protocol.clips={timing} needs the model's frames_per_second and "
                         "num_frames")
    rate = Fraction(clip_duration) * Fraction(frame_rate) / int(clip_len)
    spec = SimpleNamespace(num_frames=int(clip_len), sampling_rate=int(rate),
                           frames_per_second=frame_rate)
    return frame_windows(video, spec, clips, timing)


def pts_windows(time_base, start_pts, end_pts, clip_duration, clips, timing) -> None:
    """None: every timing here counts decoded frames (the video is decoded whole)."""
    return None


def views(clips: torch.Tensor, spec, crops: int, fault: str | None = None,
          memory_format: torch.memory_format = torch.contiguous_format,
          spatial: str | None = None) -> list[torch.Tensor]:
    """The one pathway: (clips * crops, T, C, H, W) float views (``preprocess_views``), in the
    layout transformers' models take (``memory_format`` does not apply to it)."""
    if fault == "centre_crop_only":
        raise ValueError("views.fault=centre_crop_only: pytorchvideo's crops only")
    return [preprocess_views(clips, pixels_of(spec, spatial), crops, spatial)]


def pixels_of(spec, spatial: str | None) -> Preprocess:
    """The rescale and normalisation of the protocol's spatial step: the checkpoint's
    processor's (``Spec.processor``, builder.preprocessor) under ``processor``, the authors'
    (``model.input``: /255 then mean/std) under theirs."""
    if spatial == "processor":
        if getattr(spec, "processor", None) is None:
            raise ValueError("protocol.spatial=processor needs the checkpoint's preprocessor "
                             "values: a transformers model's Spec (input_spec)")
        return spec.processor
    return preprocess_of(spec)


@dataclass(frozen=True)
class Spec(InputSpec):
    """A transformers model's ``InputSpec``: ``model.input`` (its authors' test input, what the
    authors' protocols use) beside ``processor``, the checkpoint's preprocessor values
    (``builder.preprocessor``: what protocol spatial ``processor``, the model card's, uses)."""

    processor: Preprocess | None = None


def input_spec(model_cfg) -> Spec:
    """The run's spec of a transformers model (``Spec``); a one-line error naming the key where
    ``model.input``'s sizes differ from the checkpoint's."""
    problem = input_problem(model_cfg)
    if problem:
        raise ValueError(problem)
    values = {k: tuple(v) if isinstance(v, (list, tuple)) else v
              for k, v in plain(model_cfg["input"]).items()}
    return Spec(**values, processor=Preprocess.from_model(model_cfg))


def setting_problems(protocol, crops: int, model_input) -> list[tuple[str, str]]:
    """(key, message): the authors' protocols take 1 or 3 crops."""
    if crops not in (1, 3):
        return [("views.crops", f"the {protocol.name} protocol takes 1 or 3 crops, got {crops}")]
    return []


def example_views(spec, batch: int = 1) -> list[torch.Tensor]:
    """A random batch in the models' (B, T, C, H, W) layout, one pathway (FLOPs, throughput)."""
    return [torch.randn(batch, spec.num_frames, 3, spec.crop_size, spec.crop_size)]


class TransformersAdapter(Adapter):
    """The transformers adapter (frameworks/api.py types each member): the functions above."""

    NAME, CHECK_HASH, HEADS = NAME, CHECK_HASH, HEADS
    TIMINGS = tuple(TIMINGS)
    SPATIALS = tuple(SPATIALS)
    MAX_CLIPS = MappingProxyType(MAX_CLIPS)
    FLOP_CONVENTIONS = MappingProxyType(FLOP_CONVENTIONS)
    CHANNELS_LAST = CHANNELS_LAST
    OWN_PROTOCOLS_ONLY = OWN_PROTOCOLS_ONLY
    CUTS_CLIPS = CUTS_CLIPS
    EXTRA = EXTRA
    LOADS_OWN_WEIGHTS = True  # resolve_weights, and build loads the directory strictly
    version = staticmethod(version)
    build = staticmethod(build)
    checkpoint_state = staticmethod(checkpoint_state)
    official_url = staticmethod(official_url)
    class_names = staticmethod(class_names)
    clip_windows = staticmethod(clip_windows)
    pts_windows = staticmethod(pts_windows)
    cut_clips = staticmethod(cut_clips)
    views = staticmethod(views)
    setting_problems = staticmethod(setting_problems)
    apply_head = staticmethod(apply_head)
    resolve_weights = staticmethod(resolve_weights)
    where_weights_go = staticmethod(where_weights_go)
    example_views = staticmethod(example_views)
    input_spec = staticmethod(input_spec)
    checkpoint_class_names = staticmethod(checkpoint_class_names)
    source_values = staticmethod(source_values)

    def counted_as(self, module, convention):
        return counted_as(module, convention)

    def reference_problem(self, protocol) -> str | None:
        """The card pipeline (``reference_views``) is the checkpoint's processor: the harness
        beside it runs the model card's protocol (``spatial: processor``), not the authors'."""
        if protocol.spatial != "processor":
            return (f"protocol: the card pipeline is the checkpoint's processor, so the harness "
                    f"runs the model card's protocol: pass protocol={protocol.name}_processor, "
                    f"got {protocol.name}")
        return None

    def reference_views(self, path, spec, clips, crops, *, model_cfg, protocol):
        return reference_views(path, spec, clips, crops, model_cfg=model_cfg,
                               timing=protocol.clips, spatial=protocol.spatial)
