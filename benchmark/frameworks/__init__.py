"""Frameworks: the shared view code and one adapter per ecosystem."""
