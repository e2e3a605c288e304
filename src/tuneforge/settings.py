"""Where tuneforge keeps its files. Read from the environment when asked, never at import time."""

from __future__ import annotations

import os
from pathlib import Path


def tuneforge_home() -> Path:
    """The root folder of tuneforge's own files: ``$TUNEFORGE_HOME``, default ``~/.tuneforge``."""
    return Path(os.environ.get("TUNEFORGE_HOME") or Path.home() / ".tuneforge").expanduser()


def model_cache_dir() -> Path:
    """Where builtin models converted to safetensors are cached."""
    return tuneforge_home() / "models"


def database_url() -> str:
    """The platform's database: ``$TUNEFORGE_DATABASE_URL``, default a SQLite file under TUNEFORGE_HOME."""
    return os.environ.get("TUNEFORGE_DATABASE_URL") or f"sqlite:///{tuneforge_home() / 'tuneforge.db'}"
