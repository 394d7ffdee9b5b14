"""The run: the evaluate loop, its store, devices, distribution, progress and config schema."""
