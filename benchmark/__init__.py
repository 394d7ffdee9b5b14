"""Evaluation harness for video classifiers (SlowFast on Kinetics-400, 10 clips x 3 crops).

The layers and where each concept lives: docs/architecture.md. Importing the package imports no
framework (each is imported by its adapter, benchmark/frameworks/<name>)."""

from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # the Hydra configs (conf/)


def _generated_set(synthetic) -> str:
    """``${generated_set:${.synthetic}}`` in conf/data: a generated set's cache folder name,
    keyed by its spec and generator (benchmark/data/synthetic.py, imported only when asked)."""
    from benchmark.data.synthetic import set_folder

    return set_folder(synthetic)


# Registered on import of the package, so every config composed by its code resolves it.
OmegaConf.register_new_resolver("generated_set", _generated_set, replace=True)
