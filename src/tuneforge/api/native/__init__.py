"""The native API (``/api/v1``): the same services as the CLI, with tuneforge's own config shapes as bodies."""
