"""Policies built only on the public API: TPP tiering, holistic per-accessor placement."""
