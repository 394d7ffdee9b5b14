"""Evaluation harness for video classifiers (SlowFast on Kinetics-400, 10 clips x 3 crops)."""

from benchmark.frameworks.pytorchvideo import compat  # noqa: F401  (must run before any pytorchvideo import)
