"""The built-in step kinds (registered with their configs in :mod:`tuneforge.compression.recipe`)."""
