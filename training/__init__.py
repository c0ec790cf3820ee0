"""Sparse and dense encoders for lsr, their on-disk contract, and (later) their training."""
