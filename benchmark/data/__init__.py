"""The data layer: manifests, decoding, loading, synthetic sets."""
