"""A model from anywhere: ``model=hf model.source=<hub id | save_pretrained dir>`` and
``model=mmaction2 model.config=FILE`` end in the same model config a named one is; the named
transformers configs (``videomae_base_k400``, ...) are short aliases of the first.

The adapter reads what the checkpoint or config file says of itself (``source_values``:
architecture, classes, frame count, resize, crop, normalisation; an mmaction2 config's test
pipeline and views). What the checkpoint cannot say, how its family's published numbers were
measured (the test protocol, the views, the frame stride), comes from the named config of that
family on that kind of data set (``FAMILIES``): VideoMAE on Kinetics is tested as
``videomae_base_k400`` is, on SSv2 as ``videomae_base_ssv2``. ``protocol=``, ``views=`` and any
``model.*`` key given on the command line still win.

A named transformers config is ``model=hf model.source=<its hub id>`` under its own protocol,
with the published numbers that checkpoint was measured with: where the checkpoint can be had
it is read the same way (its stored architecture and preprocessor are for random init only),
and ``model=hf model.source=<that hub id>`` on that data set kind becomes the named config, an
``official`` row (run/models.py ``published_checkpoint``). Any other source sits beside no
published number.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark import CONF_DIR, frameworks
from benchmark.run.models import WeightsError, framework_of, written_checkpoints

log = logging.getLogger(__name__)

# (framework, config.json's model_type) -> data set kind -> the named config whose protocol,
# views and temporal input (frame stride, rate) the family's checkpoints are tested with.
FAMILIES = {
    ("transformers", "videomae"): {"kinetics": "videomae_base_k400", "ssv2": "videomae_base_ssv2"},
    ("transformers", "timesformer"): {"kinetics": "timesformer_base_k400"},
    ("transformers", "vivit"): {"kinetics": "vivit_b_16x2_k400"},
    ("transformers", "xclip"): {"kinetics": "xclip_base_p32_k400"},
    # V-JEPA 2's probes: SSv2's protocol (16 x 2 x 3) for every kind (no Diving48 kind here).
    ("transformers", "vjepa2"): {"ssv2": "vjepa2_vitl_16_256_ssv2"},
}
# The model configs that name no model themselves -> the key that does, and what it takes.
TAKES = {"hf": ("source", "a hub id or save_pretrained directory"),
         "mmaction2": ("config", "an mmaction2 config file")}
# An mmaction2 config is tested under its own test_pipeline: this protocol reads it.
MMACTION2_PROTOCOL = "mmaction2"


def command_line() -> list[str]:
    """The overrides the command was given (none outside a Hydra run)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _named(overrides: list[str]) -> DictConfig:
    """The eval config with ``overrides``, composed in the running Hydra app where there is one
    (its search path is conf/), else on its own."""
    if GlobalHydra.instance().is_initialized():
        return compose("eval", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("eval", overrides=overrides)


def named_checkpoint(source: str, revision: str | None, kind: str) -> str | None:
    """The named config whose checkpoint ``source`` at ``revision`` is and whose published
    numbers are on this data set kind, or None."""
    return next((name for name, (_, src, rev, on) in written_checkpoints().items()
                 if src == source and revision in (None, rev) and on == kind), None)


def from_source(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """``cfg`` with a ``model.source`` / ``model.config`` read into its model, protocol and
    views (``cfg`` itself for a model that names neither, and for a named config whose
    checkpoint cannot be had here: random init, or refused on a real data set, later);
    ``overrides``: the command line's, which win."""
    model = cfg.model
    needs = TAKES.get(str(model.name))
    if needs is not None and not model.get(needs[0]):
        raise WeightsError(f"model.{needs[0]}: missing: model={model.name} takes {needs[1]} "
                           f"(model.{needs[0]}=...)")
    if not model.get("source") and not model.get("config"):
        return cfg
    missing = frameworks.not_installed(str(model.framework))  # reading the source needs it
    if missing:
        raise WeightsError(f"model={model.name}: {missing}")
    alias = needs is None  # a named config with a source: model=hf under its own protocol
    weights = str(model.get("weights", "auto"))
    if alias and weights not in ("auto", "pretrained"):
        return cfg  # random: the stored architecture; PATH: checked against it when loaded
    overrides = command_line() if overrides is None else overrides
    parsed = OverridesParser.create().parse_overrides(overrides)
    given = {o.key_or_group for o in parsed}

    def chose(group: str) -> bool:
        return any(k == group or k.startswith(group + ".") for k in given)

    try:
        found = framework_of(model).source_values(model)
    except (ValueError, OSError) as err:
        if alias and weights == "auto" and not Path(str(model.source)).expanduser().exists():
            return cfg  # not to be had here: resolve_weights falls back to random init
        raise WeightsError(str(err)) from None
    cfg = cfg.copy()
    kind = "ssv2" if str(cfg.data.format) == "ssv2" else "kinetics"
    source = str(model.get("source") or model.get("config"))
    if alias:
        if found["architecture"] != model.builder.architecture:
            raise WeightsError(f"model.source={source}: a {found['architecture']} checkpoint, "
                               f"but {model.name} is {model.builder.architecture}")
        base, protocol, views = model.copy(), cfg.protocol, cfg.views
        why = f"as {model.name}"
    elif "architecture" in found:
        family = FAMILIES.get((str(model.framework), found["architecture"]))
        if family is None:
            raise WeightsError(f"model.source={source}: no test protocol for "
                               f"{found['architecture']} here")
        name = named_checkpoint(source, model.get("revision"), kind)
        alias = name is not None  # a named config's own checkpoint: that row, official
        if name is None:
            name = family.get(kind) or next(iter(family.values()))
        named = _named([f"model={name}"])
        base, protocol, views = named.model, named.protocol, named.views
        why = (f"{source} is {name}'s checkpoint" if alias else
               f"{found['architecture']} on {kind} is tested as {name} is")
    else:
        base = model.copy()
        protocol = _named([f"protocol={MMACTION2_PROTOCOL}"]).protocol
        views = OmegaConf.merge(cfg.views, found.get("views", {}))
        why = "its own test_pipeline"
    with open_dict(base):
        for key in ("source", "revision", "weights", "label_map", "class_names", "config",
                    "framework", "output"):
            base[key] = model.get(key)
        if not alias:
            base.name = Path(source).stem if Path(source).expanduser().exists() else source
            base.published = {}
        if "architecture" in found:
            base.builder.preprocessor = found["preprocessor"]
        if "num_classes" in found:
            base.num_classes = found["num_classes"]
        authors = OmegaConf.masked_copy(base.input, ["mean", "std"])
        base.input = OmegaConf.merge(base.input, found.get("input", {}))
        if base.builder.get("normalise_as_authors"):  # ViViT: the protocol's own normalisation
            base.input = OmegaConf.merge(base.input, authors)
    cfg.model = base
    if not chose("protocol"):
        cfg.protocol = protocol
    if not chose("views"):
        cfg.views.clips, cfg.views.crops = int(views.clips), int(views.crops)
    for o in parsed:  # the command line's model keys win over what the source says
        if o.key_or_group.startswith("model.") and not o.is_delete():
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=o.is_add())
    classes = int(cfg.model.num_classes)
    log.info("model %s: %s (%s), %s, %d frames at %d px; protocol %s, views %dx%d%s",
             source, found.get("architecture", "mmaction2 config"), why,
             f"{classes} classes" if classes else "the data set's classes",
             int(cfg.model.input.num_frames), int(cfg.model.input.crop_size), cfg.protocol.name,
             cfg.views.clips, cfg.views.crops,
             "; protocol= and views= override them" if not (chose("protocol") or chose("views"))
             else " (as the command line says)")
    return cfg
