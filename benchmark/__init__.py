"""Evaluation harness for video classifiers (SlowFast on Kinetics-400, 10 clips x 3 crops).

The layers and where each concept lives: docs/architecture.md. Importing the package imports no
framework (each is imported by its adapter, benchmark/frameworks/<name>)."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # the Hydra configs (conf/)
