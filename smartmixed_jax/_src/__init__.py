"""Internals of smartmixed_jax: import the public names from ``smartmixed_jax``."""
