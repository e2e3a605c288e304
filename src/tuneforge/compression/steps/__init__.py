"""The built-in step kinds; importing this package registers them."""

from tuneforge.compression.steps import distill, export, prune, quantize  # noqa: F401
