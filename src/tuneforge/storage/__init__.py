"""Storage: artifact files written atomically (the Store contract joins them here)."""
