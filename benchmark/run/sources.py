"""A model from anywhere: ``model=hf model.source=<hub id | save_pretrained dir>`` and
``model=mmaction2 model.config=FILE`` end in the same model config a named one is.

The adapter reads what the checkpoint or config file says of itself (``source_values``:
architecture, classes, frame count, resize, crop, normalisation; an mmaction2 config's test
pipeline and views). What the checkpoint cannot say, how its family's published numbers were
measured (the test protocol, the views, the frame stride), comes from the named config of that
family on that kind of data set (``FAMILIES``): VideoMAE on Kinetics is tested as
``videomae_base_k400`` is, on SSv2 as ``videomae_base_ssv2``. ``protocol=``, ``views=`` and any
``model.*`` key given on the command line still win. The named configs stay the published rows
(their checkpoint is the one their numbers were measured with, run/models.py
``published_checkpoint``); a model from a source sits beside no published number.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark import CONF_DIR
from benchmark.run.models import WeightsError, framework_of

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


def from_source(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """``cfg`` with a ``model.source`` / ``model.config`` read into its model, protocol and
    views (``cfg`` itself for a named model); ``overrides``: the command line's, which win."""
    model = cfg.model
    needs = TAKES.get(str(model.name))
    if needs is not None and not model.get(needs[0]):
        raise WeightsError(f"model.{needs[0]}: missing: model={model.name} takes {needs[1]} "
                           f"(model.{needs[0]}=...)")
    if not model.get("source") and not model.get("config"):
        return cfg
    overrides = command_line() if overrides is None else overrides
    parsed = OverridesParser.create().parse_overrides(overrides)
    given = {o.key_or_group for o in parsed}

    def chose(group: str) -> bool:
        return any(k == group or k.startswith(group + ".") for k in given)

    try:
        found = framework_of(model).source_values(model)
    except (ValueError, OSError) as err:
        raise WeightsError(str(err)) from None
    cfg = cfg.copy()
    kind = "ssv2" if str(cfg.data.format) == "ssv2" else "kinetics"
    if "architecture" in found:
        family = FAMILIES.get((str(model.framework), found["architecture"]))
        if family is None:
            raise WeightsError(f"model.source={model.source}: no test protocol for "
                               f"{found['architecture']} here")
        alias = family.get(kind) or next(iter(family.values()))
        named = _named([f"model={alias}"])
        base = named.model
        with open_dict(base):
            base.builder.architecture = found["architecture"]
            base.builder.preprocessor = found["preprocessor"]
        protocol, views = named.protocol, named.views
        why = f"{found['architecture']} on {kind} is tested as {alias} is"
    else:
        base, alias = model.copy(), None
        protocol = _named([f"protocol={MMACTION2_PROTOCOL}"]).protocol
        views = OmegaConf.merge(cfg.views, found.get("views", {}))
        why = "its own test_pipeline"
    source = str(model.get("source") or model.get("config"))
    with open_dict(base):
        for key in ("source", "revision", "weights", "label_map", "class_names", "config",
                    "framework", "output"):
            base[key] = model.get(key)
        if alias is not None:
            base.builder.hub_id = None if Path(source).expanduser().exists() else source
        base.name = Path(source).stem if Path(source).expanduser().exists() else source
        base.published = {}
        if "num_classes" in found:
            base.num_classes = found["num_classes"]
        base.input = OmegaConf.merge(base.input, found.get("input", {}))
    cfg.model = base
    if not chose("protocol"):
        cfg.protocol = protocol
    if not chose("views"):
        cfg.views.clips, cfg.views.crops = int(views.clips), int(views.crops)
    for o in parsed:  # the command line's model keys win over what the source says
        if o.key_or_group.startswith("model.") and not o.is_delete():
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=o.is_add())
    log.info("model %s: %s (%s), %d classes, %d frames at %d px; protocol %s, views %dx%d%s",
             source, found.get("architecture", "mmaction2 config"), why, int(cfg.model.num_classes),
             int(cfg.model.input.num_frames), int(cfg.model.input.crop_size), cfg.protocol.name,
             cfg.views.clips, cfg.views.crops,
             "; protocol= and views= override them" if not (chose("protocol") or chose("views"))
             else " (as the command line says)")
    return cfg
