"""Small steps several adapters share (adapters never import each other, so they live here)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass


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


class FrameworkMissing(ImportError):
    """An optional framework's packages are not installed here: one line naming the install."""


@dataclass(frozen=True)
class Extra:
    """What an optional framework needs beyond the core install (``pip install -e .``): the
    modules its adapter imports and the command that installs them (pyproject.toml's extras).
    Nothing of it is imported until a model of the framework is asked for."""

    framework: str
    modules: tuple[str, ...]
    install: str

    def missing(self) -> list[str]:
        """The modules that cannot be imported here (looked up, not imported: mmaction2 takes
        seconds to import)."""
        return [m for m in self.modules if not findable(m)]

    def line(self, missing: list[str] | None = None) -> str:
        """The one line that names what is missing and how to install it."""
        missing = self.missing() if missing is None else missing
        return (f"{self.framework} is not installed here ({', '.join(missing)} cannot be "
                f"imported); install it with {self.install}")

    def require(self) -> None:
        """FrameworkMissing (the line) unless every module can be imported here."""
        missing = self.missing()
        if missing:
            raise FrameworkMissing(self.line(missing))

    def load(self, module: str):
        """``import module``; FrameworkMissing (the line) where it cannot be imported."""
        try:
            return importlib.import_module(module)
        except ImportError:
            raise FrameworkMissing(self.line([module])) from None


def findable(module: str) -> bool:
    """Whether ``module`` can be found for import (an import hook that refuses it: not)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_version(module: str, *dists: str) -> str:
    """The version of the first of ``dists`` (default: ``module``) that is installed, from its
    metadata (no import), or "not installed" where ``module`` cannot be imported."""
    if findable(module):
        for dist in dists or (module,):
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return "not installed"
