"""Region-sampling algorithms scored against simulated ground truth (see docs/sampling.md)."""
