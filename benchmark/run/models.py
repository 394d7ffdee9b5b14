"""Models: built by name from their config, with their weights resolved and loaded.

A model config (``conf/model/*.yaml``) holds the builder (``_target_``), the official checkpoint
URL, the test input spec and the published numbers. A loaded checkpoint is named by its identity
(hub id @ revision, or file @ SHA-256 prefix); it is ``official`` only when it is the one the
config's published numbers were measured with (``published_checkpoint``); its class names are
matched to the data set's (run/labels.py). Weights are ``auto`` (torch hub cache, else
the URL, else random init with a loud warning, on a generated data set only: a real one is never
scored with random weights, ``random_refused``; a torchvision model's URL is its weights enum's;
where the URL's file name carries a SHA-256 prefix, torchvision's and mmaction2's, the download
and a copy already in the cache are checked against it, ``_check_cached``), ``pretrained`` (the
same, but failing instead of falling back), ``random``, or a checkpoint path. Every model is
adapted to one interface (see ``adapt_io``): it takes a list of pathway tensors and returns
logits.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
import yaml

from benchmark import CONF_DIR, frameworks
from benchmark.run import labels
from benchmark.run import schema  # noqa: F401  (registers the config schemas compose reads)
from benchmark.data.files import file_problem
from benchmark.frameworks.api import Adapter
from benchmark.frameworks.common import first_line, hub_cache_path, load_torch_file
from benchmark.frameworks.views import InputSpec

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
# What a model's forward returns (``model.output``): logits, or probabilities when the hub head
# ends in a Softmax (X3D, R(2+1)D).
OUTPUTS = ("logits", "probs")


class WeightsError(RuntimeError):
    """Weights that cannot be had or do not fit; the message says what to do."""


class UnknownModel(ValueError):
    """No ``conf/model/<name>.yaml``."""


def compose_for_model(name: str) -> DictConfig:
    """The eval config with ``model=<name>`` and random weights, as the CLI composes it: what
    FLOPs, parameter counts and timings are measured on (none depends on the weights)."""
    if not (CONF_DIR / "model" / f"{name}.yaml").is_file():
        raise UnknownModel(f"no conf/model/{name}.yaml")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("eval", overrides=[f"model={name}", "model.weights=random"])


@dataclass
class Model:
    name: str
    module: torch.nn.Module
    weights: str  # "official", "random-init", or the checkpoint's identity (below)
    spec: InputSpec
    num_classes: int
    checkpoint_sha256: str | None = None  # of the loaded file (weights=auto too); None: random
    # hub id @ resolved revision, or "<file name>@<sha256 prefix>"; "random-init"
    checkpoint: str = RANDOM_INIT
    label_map: str = labels.NO_NAMES  # how its outputs became the data set's ids (labels.py)


def framework_of(cfg: DictConfig) -> Adapter:
    """The adapter of the framework a model config names (``model.framework``)."""
    try:
        return frameworks.get(str(cfg.framework))
    except ValueError as err:
        raise WeightsError(f"model.{err}") from None


def offline_class_names() -> tuple[list[str], str]:
    """Kinetics-400's class names as torchvision ships them (no network), for the manifest."""
    torchvision = frameworks.get("torchvision")
    return torchvision.kinetics400_names(), torchvision.KINETICS400_LABEL


def _asked(question, cfg: DictConfig):
    """An adapter's answer about a model config; a bad key there (e.g. a torchvision weights
    name that is no enum member) is a WeightsError naming it."""
    try:
        return question(cfg)
    except ValueError as err:
        raise WeightsError(str(err)) from None


def model_spec(cfg: DictConfig) -> InputSpec:
    """The model's test input (its adapter's ``input_spec``: mmaction2's carries its config's
    test pipeline). A config that disagrees with itself: WeightsError."""
    return _asked(framework_of(cfg).input_spec, cfg)


def class_names_file(cfg: DictConfig, cache_dir: Path) -> Path | None:
    """A model's own class names (its framework's, e.g. torchvision's weights'
    ``meta["categories"]``: its ids), written once as a class-name file ({name: id},
    kinetics_classnames.json's layout) for the manifest to map the CSV's labels with. None for
    models without their own."""
    own = _asked(framework_of(cfg).class_names, cfg)
    if own is None:
        return None
    import json

    label, names = own
    path = Path(cache_dir) / "class_names" / f"{label}.json"
    text = json.dumps({name: i for i, name in enumerate(names)}, indent=0)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def _hash_prefix(url: str) -> str | None:
    """The SHA-256 prefix in an official checkpoint's file name, which
    ``load_state_dict_from_url(check_hash=True)`` checks a download against: torchvision's
    (``r3d_18-b3b3357e.pth``) and mmaction2's (``..._20220831-64d69186.pth``: its
    tools/deployment/publish_model.py, lines 39 and 46 in open-mmlab/mmaction2, names a
    published file ``f'{name}_{date}-{sha[:8]}.pth'``, ``sha`` from ``sha256sum``)."""
    match = torch.hub.HASH_REGEX.search(Path(url).name)
    return (match.group(1) or None) if match else None


def _check_cached(cache: Path, url: str) -> None:
    """Refuse a cached official checkpoint whose SHA-256 does not start with the prefix in its
    URL's name: a damaged download or another file copied there (the offline workflow) would
    otherwise be scored as the published one. Its digest is the one the row's identity uses
    (``_sha256`` remembers it), so checking costs no second read."""
    prefix = _hash_prefix(url)
    if prefix is None:
        return
    found = _sha256(cache)[:len(prefix)]
    if found != prefix:
        raise WeightsError(
            f"{cache}: its SHA-256 starts {found}, but {Path(url).name} says {prefix}: not the "
            f"official checkpoint; delete it to download it again, or pass model.weights={cache} "
            "to evaluate it as your own checkpoint (its row is then not official)")


def random_refused(cfg: DictConfig, data_name: str, where: str) -> WeightsError:
    """The one line that stops ``model.weights=auto`` from scoring a real data set with random
    weights: where the checkpoint goes, how it would be had, and how to ask for random weights."""
    return WeightsError(
        f"model.weights=auto: no checkpoint for {cfg.name}, and {data_name} is a real data set, "
        f"which is never scored with random weights: {where}; or pass model.weights=PATH; "
        "model.weights=random measures random weights on purpose")


def _fetch_official(url: str | None, required: bool, check_hash: bool = False,
                    cfg: DictConfig | None = None, refuse_random_on: str | None = None
                    ) -> Path | None:
    """The official checkpoint's file in the torch hub cache, downloaded there if needed; None
    (random init, a loud warning) where it cannot be had, unless ``required`` (weights
    pretrained) or ``refuse_random_on`` (a real data set's name) makes that an error."""
    if not url:
        if required:
            raise WeightsError("model.weights=pretrained: this model has no official checkpoint")
        if refuse_random_on:
            raise random_refused(cfg, refuse_random_on, "this model has no official checkpoint "
                                 "(no checkpoint_url)")
        return None
    cache = hub_cache_path(url)
    if not cache.exists():
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            # Writes to a temporary file and renames it only when the download is complete.
            # check_hash: torchvision's own check (the hash prefix in the file name).
            torch.hub.download_url_to_file(url, str(cache), progress=True,
                                           hash_prefix=_hash_prefix(url) if check_hash else None)
        except Exception as err:
            if required:
                raise WeightsError(f"cannot get the official checkpoint {url} ({err}); download "
                                   f"it to {cache} or pass model.weights=PATH") from None
            if refuse_random_on:
                raise random_refused(cfg, refuse_random_on, f"it is read from the torch hub cache "
                                     f"at {cache}, downloaded from {url} on first use, which "
                                     f"failed here "
                                     f"({first_line(err)}): download it there") from None
            log.warning("\n%s\nWEIGHTS: cannot get %s (%s).\nEvaluating with RANDOM weights: the "
                        "accuracy means nothing. Put the file at %s or pass model.weights=PATH.\n%s",
                        "!" * 78, url, err, cache, "!" * 78)
            return None
    if check_hash:  # a copy already cached, or put there by hand, is checked as a download is
        _check_cached(cache, url)
    return cache


def load_checkpoint(module: torch.nn.Module, path: Path, framework: str = "pytorchvideo") -> None:
    """Load a state dict safely and strictly (a missing, unexpected or misshapen key is an
    error); where the state dict lies in the file is the framework's (``checkpoint_state``:
    pytorchvideo's .pyth hold ``{"model_state": ...}``)."""
    try:
        state = load_torch_file(path)
    except ValueError as err:  # not a checkpoint, damaged, or holding code: the file's one line
        raise WeightsError(str(err)) from None
    state = frameworks.get(framework).checkpoint_state(state)
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict or {{'model_state': ...}}, "
                           f"got {type(state).__name__}")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))

    def show(keys):
        return ", ".join(keys[:5]) + (f" ... ({len(keys)} in all)" if len(keys) > 5 else "")

    if missing or unexpected or wrong:
        raise WeightsError(f"{path}: does not fit this model: missing keys [{show(missing)}], "
                           f"unexpected keys [{show(unexpected)}], wrong shapes [{show(wrong)}]")
    # NaN or inf weights make every answer NaN, or, where a fused kernel hides them
    # (benchmark/frameworks/fuse.py), finite and wrong: refused here, before any work.
    nonfinite = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
                 and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise WeightsError(f"{path}: refused: non-finite weights (NaN or inf) in "
                           f"{show(sorted(nonfinite))}")
    module.load_state_dict(state)


def _sha256(path: Path) -> str:
    """A file's SHA-256, remembered while its size, times and inode stay the same, so the hash
    check of a cached official checkpoint and the row's identity read it once (a 300 MB file:
    ~0.2 s). (hashlib.file_digest is Python 3.11+; the project supports 3.10.)"""
    info = path.stat()
    return _file_sha256(str(path.resolve()), (info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                                              info.st_ino))


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, stat: tuple[int, ...]) -> str:  # ``stat``: part of the cache key
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _single_pathway(module: torch.nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook: the harness passes a list of pathway tensors; one-pathway hub models
    (Net, MViT) take the tensor itself."""
    # A keyword call (transformers' ``pixel_values=``) has no positional argument.
    return (args[0][0],) if len(args) == 1 and isinstance(args[0], list) else None


def _probs_to_logits(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: log-probabilities are logits whose softmax is the head's probabilities, so the
    harness's softmax-then-average gives exactly the hub model's own (per-position averaged)
    probabilities instead of a softmax of probabilities."""
    return output.log()


def adapt_io(module: torch.nn.Module, single_pathway: bool, output: str) -> torch.nn.Module:
    """Make every model take a list of pathway tensors and return logits. Hooks rather than a
    wrapper module, so parameter names (checkpoints) and counts stay the hub model's."""
    if output not in OUTPUTS:
        raise ValueError(f"model.output: must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if single_pathway:
        module.register_forward_pre_hook(_single_pathway)
    if output == "probs":
        module.register_forward_hook(_probs_to_logits)
    return module


@functools.lru_cache(maxsize=1)
def written_checkpoints() -> dict[str, tuple[str | None, str | None, str | None, str]]:
    """name -> (checkpoint_url, source, revision, kind of the data set its published numbers
    are on: ``ssv2`` or ``kinetics``) of each model config, as conf/model/<name>.yaml writes
    them (read once: the configs do not change during a run)."""
    out = {}
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        written = yaml.safe_load(path.read_text()) or {}
        dataset = str((written.get("published") or {}).get("dataset", "kinetics400"))
        out[path.stem] = (written.get("checkpoint_url"), written.get("source"),
                          written.get("revision"), "ssv2" if dataset == "ssv2" else "kinetics")
    return out


def published_checkpoint(cfg: DictConfig) -> bool:
    """Whether ``cfg`` names the checkpoint its config's published numbers were measured with:
    the ``checkpoint_url``, or the ``source`` (hub id) and ``revision``, that
    conf/model/<name>.yaml holds as written (an override of any of them is another checkpoint;
    ``model=hf`` and ``model=mmaction2`` name no published one)."""
    written = written_checkpoints().get(str(cfg.name))
    if written is None or cfg.get("config"):
        return False
    url, source, revision, _ = written
    return (url == cfg.get("checkpoint_url") and source == cfg.get("source")
            and cfg.get("revision") in (None, revision))


def _official_or(cfg: DictConfig, path) -> str:
    """The label of a checkpoint ``weights=auto|pretrained`` found: ``official`` when it is the
    published one, else its identity (filled in when it is loaded: ``checkpoint_identity``)."""
    return "official" if published_checkpoint(cfg) else Path(path).name


def checkpoint_identity(path: Path, digest: str) -> str:
    """What names a checkpoint in a row: ``<hub id>@<revision>`` for a Hugging Face hub cache
    snapshot (``models--org--name/snapshots/<commit>``), else ``<file or folder
    name>@<SHA-256 prefix>``."""
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        repo = path.parent.parent.name[len("models--"):].replace("--", "/")
        return f"{repo}@{path.name[:12]}"
    return f"{path.name}@{digest[:8]}"


def resolve_weights(cfg: DictConfig, refuse_random_on: str | None = None
                    ) -> tuple[str | None, str]:
    """(checkpoint file or None for random init, label) for ``cfg.weights``, downloading the
    official checkpoint if needed. Under torchrun only rank 0 calls this; the other ranks load
    the file it resolved, so no rank falls back to random weights on its own.
    ``refuse_random_on``: the name of the real data set the run scores (None on a generated
    one): ``auto`` without a checkpoint then stops with one line instead of falling back."""
    weights = str(cfg.weights)
    adapter = framework_of(cfg)
    if "://" in weights:  # a checkpoint's URL: into the torch hub cache, then a PATH
        weights = str(_fetch_official(weights, required=True, check_hash=adapter.CHECK_HASH))
        cfg = OmegaConf.merge(cfg, {"weights": weights})
    if adapter.LOADS_OWN_WEIGHTS:  # checkpoints its adapter finds and loads (transformers)
        url = _asked(adapter.official_url, cfg) if weights in ("auto", "pretrained") else None
        if url:  # mmaction2's metafile URL: downloaded where there is a network, as the zoo's
            _fetch_official(url, required=weights == "pretrained", check_hash=adapter.CHECK_HASH,
                            cfg=cfg, refuse_random_on=refuse_random_on)
        path = _asked(adapter.resolve_weights, cfg)  # its CheckpointError names the key
        if path is None:
            if weights == "auto" and refuse_random_on:
                raise random_refused(cfg, refuse_random_on, _asked(adapter.where_weights_go, cfg))
            return None, RANDOM_INIT
        return str(path), (_official_or(cfg, path) if weights in ("auto", "pretrained")
                           else Path(path).name)
    if weights in ("auto", "pretrained"):
        path = _fetch_official(_asked(adapter.official_url, cfg), required=weights == "pretrained",
                               check_hash=adapter.CHECK_HASH, cfg=cfg,
                               refuse_random_on=refuse_random_on)
        return (None, RANDOM_INIT) if path is None else (str(path), _official_or(cfg, path))
    if weights == "random":
        return None, RANDOM_INIT
    path = Path(weights).expanduser()
    problem = file_problem(path)
    if problem:
        raise WeightsError(f"model.weights: {path}: {problem}")
    return str(path), path.name  # the content hash is added when it is loaded


def _dir_sha256(path: Path) -> str:
    """One digest of a checkpoint directory: every file's name and content, in name order (a
    checkpoint file: its content's)."""
    if path.is_file():
        return _sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + _sha256(file).encode())
    return digest.hexdigest()


def _build_own(adapter, cfg: DictConfig, path: str | None,
               class_names: list[str] | None) -> tuple[torch.nn.Module, str | None]:
    """(module, digest) from an adapter that loads its checkpoint directory itself (strictly:
    transformers' ``load_checkpoint``); ``path`` None: random init, its warning."""
    local = OmegaConf.merge(cfg, {"weights": path if path is not None else "random"})
    try:
        module = adapter.build(local, class_names=class_names)
    except (ValueError, OSError) as err:
        raise WeightsError(str(err)) from None
    return module, None if path is None else _dir_sha256(Path(path))


def _data_order(adapter: Adapter, cfg: DictConfig, module: torch.nn.Module,
                class_names: list[str] | None) -> str:
    """Match the model's class names (``model.class_names``, else the checkpoint's own) to the
    data set's ``class_names`` and reorder its outputs to the data set's ids (labels.py);
    returns the mapping used. Without the data set's names (FLOPs, timings): nothing."""
    if class_names is None:
        return labels.NO_NAMES
    if cfg.get("class_names"):
        names = labels.names_file(str(cfg.class_names))
        source = f"model.class_names={cfg.class_names}"
    else:
        names, source = adapter.checkpoint_class_names(module), "the checkpoint's"
    try:
        order, how = labels.output_order(names, list(class_names),
                                         str(cfg.get("label_map", "name")), source)
    except labels.LabelMapError as err:
        raise WeightsError(str(err)) from None
    labels.map_outputs(module, order)
    if how == labels.BY_NAME and order != sorted(order):
        log.info("model.label_map=name: %s's outputs reordered to the data set's class ids (%d "
                 "of %d moved)", cfg.name, sum(i != j for i, j in enumerate(order)), len(order))
    return how


def given_model(cfg: DictConfig, module: torch.nn.Module) -> Model:
    """An ``nn.Module`` handed to the Python API, used as given: it takes the protocol
    framework's views and returns logits (``model.output``) in the data set's class order.
    Its identity: its class name @ the SHA-256 prefix of its state dict's tensors."""
    spec = model_spec(cfg)
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # any dtype
        digest.update(name.encode() + b"\0" + raw.numpy().tobytes())
    identity = f"{type(module).__name__}@{digest.hexdigest()[:8]}"
    module = adapt_io(module, spec.alpha is None, str(cfg.output)).eval()
    return Model(str(cfg.name), module, identity, spec, int(cfg.num_classes), digest.hexdigest(),
                 identity, labels.BY_POSITION)


def build_model(cfg: DictConfig, head: str = "pooled_logits",
                resolved: tuple[str | None, str] | None = None,
                class_names: list[str] | None = None) -> Model:
    """Build ``cfg.builder``, load the weights that ``cfg.weights`` names (``resolved``:
    ``resolve_weights``'s answer, from another rank), and pool its head's output locations as
    the protocol's ``head`` says (the model's framework's ``apply_head``). ``class_names``: the
    data set's, for a model that classifies by their text (X-CLIP)."""
    adapter = framework_of(cfg)
    spec = model_spec(cfg)
    path, label = resolved if resolved is not None else resolve_weights(cfg)
    if adapter.LOADS_OWN_WEIGHTS:
        module, digest = _build_own(adapter, cfg, path, class_names)
        adapter.apply_head(module, head)
        module = adapt_io(module, True, "logits")
        num_classes = int(cfg.num_classes) or len(class_names or [])  # 0: the data set's
    else:
        module = adapter.build(cfg)
        output = "probs" if adapter.apply_head(module, head) else str(cfg.output)
        module = adapt_io(module, spec.alpha is None, output)
        digest = None
        if path is not None:
            if not Path(path).is_file():
                raise WeightsError(f"model.weights: {path}: no such file (resolved by rank 0; "
                                   "every rank must see it at the same path)")
            digest = _sha256(Path(path))
            load_checkpoint(module, Path(path), adapter.NAME)
        num_classes = int(cfg.num_classes)
    checkpoint = RANDOM_INIT if path is None else checkpoint_identity(Path(path), digest)
    if label not in ("official", RANDOM_INIT):
        label = checkpoint
    label_map = _data_order(adapter, cfg, module, class_names)
    module.eval()
    return Model(str(cfg.name), module, label, spec, num_classes, digest, checkpoint, label_map)
