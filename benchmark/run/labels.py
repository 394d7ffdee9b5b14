"""Class names matched by name, not by position.

A checkpoint that carries its class names (a transformers ``id2label``, an mmaction2
checkpoint's ``dataset_meta``, or the ``model.class_names`` file given for any other) may list
them in another order than the data set: a model fine-tuned on UCF101 with sorted folder names
swaps two pairs of classInd.txt's classes, Kinetics' own files disagree on case, underscores
and quotes. The model's outputs are reordered to the data set's ids before anything is scored;
names that do not match stop the run in one line, unless ``model.label_map=position`` says to
trust the order. The run records which mapping it used (``label_map`` in metrics.json).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from benchmark.data.manifest import ManifestError, read_class_names

# metrics.json's ``label_map``: how the model's outputs became the data set's ids.
BY_NAME = "name"
BY_POSITION = "position"
NO_NAMES = "position (the model names no classes)"
SHOWN = 5  # unmatched names listed on each side


class LabelMapError(ValueError):
    """The model's class names and the data set's do not match; the message lists them."""


def normalised(name: str) -> str:
    """A class name as compared: lower case, quotes dropped, runs of underscores and spaces as
    one space (``"passing_American_football_(in_game)"`` = ``passing american football (in
    game)``)."""
    return re.sub(r"[\s_]+", " ", re.sub(r"[\"'`]", "", name)).strip().lower()


def names_file(path: str) -> list[str]:
    """``model.class_names``: the model's class names in output order (a ``{name: id}`` JSON or
    a .txt of one name a line, as ``data.class_names`` reads them)."""
    try:
        return read_class_names(Path(path).expanduser())
    except ManifestError as err:
        raise LabelMapError(f"model.class_names: {err}") from None


def output_order(model_names: list[str] | None, data_names: list[str], mode: str,
                 source: str) -> tuple[list[int] | None, str]:
    """(for each data set id, the model output that is its class, or None to keep the order;
    the mapping's label for the record). ``source`` says where the model's names came from."""
    if mode == BY_POSITION:
        return None, BY_POSITION
    if model_names is None:
        return None, NO_NAMES
    model_keys = [normalised(n) for n in model_names]
    for keys, whose in ((model_keys, f"the model's class names ({source})"),
                        ([normalised(n) for n in data_names], "the data set's class names")):
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise LabelMapError(f"model.label_map=name: {whose} name {twice!r} twice (after "
                                "normalising case, underscores and quotes)")
    index = {key: i for i, key in enumerate(model_keys)}
    data_only = [n for n in data_names if normalised(n) not in index]
    data_keys = {normalised(n) for n in data_names}
    model_only = [n for n in model_names if normalised(n) not in data_keys]
    if data_only or model_only:
        def first(names: list[str]) -> str:
            more = f" ... ({len(names)} in all)" if len(names) > SHOWN else ""
            return (", ".join(names[:SHOWN]) + more) if names else "none"

        raise LabelMapError(
            f"model.label_map=name: the model's {len(model_names)} class names ({source}) do not "
            f"match the data set's {len(data_names)}: model only: {first(model_only)}; data set "
            f"only: {first(data_only)} (model.label_map=position trusts the order)")
    return [index[normalised(n)] for n in data_names], BY_NAME


def _reordered(order: list[int]):
    """A forward hook: the model's outputs in the data set's class order."""
    columns = torch.tensor(order)

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output.index_select(-1, columns.to(output.device))

    return hook


def map_outputs(module: nn.Module, order: list[int] | None) -> None:
    """Reorder ``module``'s outputs to the data set's ids (a hook, so parameter names and
    counts stay the model's); nothing when the order is already the data set's."""
    if order is not None and order != list(range(len(order))):
        module.register_forward_hook(_reordered(order))
