"""Compression: prune, distill, quantize and export a model, measuring size, speed and quality at each step."""

from tuneforge.compression.recipe import CompressionRecipe, load_recipe

__all__ = ["CompressionRecipe", "load_recipe"]
