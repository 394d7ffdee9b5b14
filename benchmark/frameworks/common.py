"""Small steps several adapters share (adapters never import each other, so they live here)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch


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

    def line(self, missing: list[str]) -> str:
        """The one line that names what is missing and how to install it."""
        return (f"{self.framework} is not installed here ({', '.join(missing)} cannot be "
                f"imported); install it with {self.install}")

    def require(self) -> None:
        """FrameworkMissing (the line) unless every module can be imported here."""
        missing = self.missing()
        if missing:
            raise FrameworkMissing(self.line(missing))


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


# torch.save's two formats: a zip archive holding <name>/data.pkl, or (before torch 1.6, and
# with _use_new_zipfile_serialization=False) a pickle stream that starts with this number.
_LEGACY_MAGIC = b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")


def is_torch_checkpoint(path: Path) -> bool:
    """Whether ``path`` is in one of torch.save's formats (read before unpickling anything:
    a JSON, CSV, image, video or text file is then "not a PyTorch checkpoint")."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return any(name.endswith("/data.pkl") or name == "data.pkl"
                           for name in archive.namelist())
        with open(path, "rb") as f:
            head = f.read(14)
    except (OSError, zipfile.BadZipFile):
        return False
    return head[:1] == b"\x80" and head[2:14] == _LEGACY_MAGIC


def _unsafe_reason(err: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused (e.g. "Unsupported global: GLOBAL x.Foo"),
    without its advice to load the file with weights_only=False, which would run its code."""
    for line in str(err).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(" was not an allowed")[0].strip()
    return "objects other than tensors and plain containers"


def load_torch_file(path: Path):
    """What a torch.save file holds, loaded safely (``weights_only``: tensors and plain
    containers only); ValueError, one line naming the file, for a file that is not a
    checkpoint, a damaged one, or one that holds objects that need code to load."""
    if not is_torch_checkpoint(path):
        raise ValueError(f"{path}: not a PyTorch checkpoint (torch.save's zip or legacy format)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path}: refused: the checkpoint holds objects that need code to "
                         f"load ({_unsafe_reason(err)}); only tensors and plain containers are "
                         "loaded (weights_only=True)") from None
    except Exception as err:  # a damaged archive: torch raises RuntimeError, EOFError, KeyError...
        raise ValueError(f"{path}: not a readable PyTorch checkpoint: {first_line(err)}") from None


def first_line(err: BaseException) -> str:
    """``Type: first line of the message``, for a library's multi-line error in one line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` (and mmengine's ``load_from_http``) keep
    ``url``: the official checkpoints' one cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
