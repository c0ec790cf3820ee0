"""Corpus reading, batched document encoding and the native inverted index."""
