"""Batched inference: generation, and the content-addressed result cache."""
