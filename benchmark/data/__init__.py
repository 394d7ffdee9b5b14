"""Data: the manifest, decoding, the supervised loader, synthetic sets (the bottom layer)."""
