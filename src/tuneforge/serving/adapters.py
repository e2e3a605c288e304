"""The adapters of one base model, loaded on first use into one PEFT model and kept in an LRU.

All adapters live in one ``PeftModel`` over one copy of the base weights, so one forward pass serves
rows of different adapters (PEFT's mixed-adapter batches: ``adapter_names=[...]``, ``__base__`` for the
base model). The cache is keyed by the adapter's folder, never by a served name: a registry alias that
moves to another version names another folder, which loads beside the old one.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class AdapterCache:
    """LRU of adapter folders -> PEFT adapter names, over one base model.

    Only the engine's generation thread calls it, between batches, so no forward pass sees the model change.

    Args:
        model: The base causal LM (wrapped in a ``PeftModel`` when the first adapter loads).
        capacity: Adapters kept loaded.
    """

    def __init__(self, model: Any, *, capacity: int) -> None:
        self.model = model
        self.capacity = capacity
        self.names: OrderedDict[Path, str] = OrderedDict()
        self.loads = 0
        self.lock = threading.Lock()  # /metrics reads the names from another thread

    def ensure(self, folders: set[Path], *, keep: set[Path] | None = None) -> dict[Path, str]:
        """Load the ``folders`` not loaded yet, then drop the least recently used others beyond the capacity
        (never one of ``keep``: adapters of running sequences); their PEFT names.

        Raises:
            ConfigError: An adapter that mixed batches cannot serve (not LoRA, or DoRA).
        """
        for folder in folders:
            if folder in self.names:
                with self.lock:
                    self.names.move_to_end(folder)
            else:
                self._load(folder)
        self._evict(keep=set(folders) | (keep or set()))
        return {folder: self.names[folder] for folder in folders}

    def adapter_names(self, folders: list[Path | None]) -> list[str] | None:
        """The ``adapter_names`` of a batch whose rows use ``folders`` (``None`` while no adapter is loaded)."""
        if not self.names:
            return None
        return [self.names[f] if f is not None else BASE for f in folders]

    def loaded(self) -> list[str]:
        """Loaded adapter folders, least recently used first."""
        with self.lock:
            return [str(folder) for folder in self.names]

    def _load(self, folder: Path) -> None:
        from peft import PeftConfig, PeftModel, PeftType

        config = PeftConfig.from_pretrained(str(folder))
        if config.peft_type not in (PeftType.LORA,) or getattr(config, "use_dora", False):
            raise ConfigError(
                f"adapter {folder} is {config.peft_type.value}{' (DoRA)' if getattr(config, 'use_dora', False) else ''}"
                "; the server batches LoRA adapters only", field="model",
                hint=f"merge it into its base model ('tuneforge merge {folder.parent} -o DIR') and serve DIR")
        name = "a" + hashlib.sha256(str(folder).encode()).hexdigest()[:16]
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(folder), adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name)
        self.model.eval()
        with self.lock:
            self.names[folder] = name
        self.loads += 1

    def _evict(self, *, keep: set[Path]) -> None:
        for folder in list(self.names):
            if len(self.names) <= self.capacity:
                return
            if folder not in keep:
                with warnings.catch_warnings():  # PEFT warns when the adapter it calls active goes: names are explicit
                    warnings.simplefilter("ignore", UserWarning)
                    with self.lock:
                        name = self.names.pop(folder)
                    self.model.delete_adapter(name)
