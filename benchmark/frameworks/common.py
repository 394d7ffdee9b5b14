"""Small steps several adapters share (adapters never import each other, so they live here)."""

from __future__ import annotations

from pathlib import Path


def plain(value):
    """An OmegaConf node (or anything) as plain Python containers."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def instantiate_builder(model_cfg):
    """The model config's ``builder`` called with its arguments (its ``_target_``: the framework's
    own model function, e.g. ``pytorchvideo.models.hub.slowfast_r50``)."""
    import hydra

    return hydra.utils.instantiate(model_cfg.builder)


def state_dict_of(loaded):
    """The state dict in a loaded checkpoint: pytorchvideo's zoo files hold
    ``{"model_state": ...}``; a plain state dict is itself."""
    if isinstance(loaded, dict) and "model_state" in loaded:
        return loaded["model_state"]
    return loaded


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` (and mmengine's ``load_from_http``) keep
    ``url``: the official checkpoints' one cache."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
