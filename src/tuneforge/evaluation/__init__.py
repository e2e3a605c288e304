"""Evaluation: generation, metrics and built-in tasks."""
