"""Evaluation: metrics, baselines and probes, one module per model family."""
