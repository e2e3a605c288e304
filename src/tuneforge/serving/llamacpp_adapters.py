"""LoRA adapters of the llama.cpp engine: GGUF LoRA adapters over its one base model, in an LRU.

With tuneforge's llama.cpp build (``make llamacpp``: scripts/llamacpp_seq_lora.patch adds
``llama_set_seq_lora_mask``), :class:`SequenceAdapters` stacks the loaded adapters into one per-sequence
adapter: slot ``i`` holds adapter ``i``'s rank components and each sequence's mask row selects its adapter's
slot, so one ``llama_decode`` step holds the sequences of every adapter, as PEFT's mixed-adapter batches and
vLLM's multi-LoRA do. llama.cpp itself applies one set of adapters to a whole context (its server does not
batch requests with different adapters together). Without the patch (a llama-cpp-python built elsewhere),
:class:`GgufAdapters` applies one adapter on the context at a time and a step decodes one adapter's sequences.

One token of each of 16 sequences, SmolLM2-135M Q8_0, rank-8 adapters on q/v/o, 1 thread, CPU ms
(``benchmarks/llamacpp_kernels.py --adapters 4``, AVX512 build): no adapter 65.6, one adapter on the context 64.8,
a stack of 4 with the sequences spread over them 69.2; one adapter's share of 4 sequences 34.6, so a step per
adapter in turn costs 4 x 34.6 = 138.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

SEQ_LORA_SYMBOL = "llama_set_seq_lora_mask"


def sequence_lora_available() -> bool:
    """Whether the installed llama.cpp has per-sequence LoRA (scripts/llamacpp_seq_lora.patch)."""
    from llama_cpp import llama_cpp

    return hasattr(llama_cpp._lib, SEQ_LORA_SYMBOL)


class GgufAdapters:
    """LRU of adapter folders -> llama.cpp LoRA adapters over one model; one is applied on the context at a time
    (llama.cpp without scripts/llamacpp_seq_lora.patch).

    llama.cpp applies adapters per context, so a step decodes only sequences of one adapter (or none); switching
    costs no recomputation (each sequence's cells were computed with its own adapter). Only the engine's
    generation thread changes it; ``loaded`` may be read from any thread.

    Args:
        model: The base's ``llama_model_p``.
        ctx: The context the adapter is applied on.
        model_config: The base model's transformers config (tensor names of the converted adapters).
        capacity: Adapters kept loaded.
        workdir: Where adapter folders are converted to GGUF.
    """

    per_sequence = False

    def __init__(self, model: Any, ctx: Any, model_config: Any, *, capacity: int, workdir: Path) -> None:
        self.model, self.ctx, self.model_config = model, ctx, model_config
        self.capacity, self.workdir = capacity, workdir
        self.handles: OrderedDict[Path, Any] = OrderedDict()
        self.active: Path | None = None
        self.loads = 0
        self.lock = threading.Lock()

    def use(self, folder: Path | None) -> None:
        """Apply ``folder``'s adapter on the context (``None``: the base model alone), loading it if needed."""
        if folder == self.active:
            return
        set_adapter(self.ctx, self.load(folder) if folder is not None else None)
        self.active = folder

    def load(self, folder: Path) -> Any:
        """The llama.cpp adapter of ``folder`` (converted and loaded on first use; most recently used now)."""
        from llama_cpp import llama_cpp

        with self.lock:
            if folder in self.handles:
                self.handles.move_to_end(folder)
                return self.handles[folder]
        path = folder if folder.suffix == ".gguf" else self._convert(folder)
        handle = llama_cpp.llama_adapter_lora_init(self.model, str(path).encode())
        if not handle:
            raise TuneforgeError(f"llama.cpp could not load the LoRA adapter {folder}",
                                 hint="check that it was trained on this base model")
        with self.lock:
            self.handles[folder] = handle
        self.loads += 1
        return handle

    def assign(self, seq_id: int, folder: Path | None) -> None:
        """Nothing to do: the engine decodes one adapter's sequences a step (``use``)."""

    def evict(self, *, keep: set[Path]) -> None:
        """Free the least recently used adapters past ``capacity``, never those in ``keep`` (the active one is
        taken off the context first)."""
        from llama_cpp import llama_cpp

        for folder in list(self.handles):
            if len(self.handles) <= self.capacity:
                return
            if folder not in keep:
                if folder == self.active:
                    self.use(None)
                with self.lock:
                    handle = self.handles.pop(folder)
                llama_cpp.llama_adapter_lora_free(handle)

    def loaded(self) -> list[str]:
        """Loaded adapter folders, least recently used first."""
        with self.lock:
            return [str(folder) for folder in self.handles]

    def clear(self) -> None:
        """Free every adapter (before the model is freed)."""
        from llama_cpp import llama_cpp

        set_adapter(self.ctx, None)
        self.active = None
        with self.lock:
            handles, self.handles = list(self.handles.values()), OrderedDict()
        for handle in handles:
            llama_cpp.llama_adapter_lora_free(handle)

    def _convert(self, folder: Path) -> Path:
        from tuneforge.compression.export.gguf_lora import write_gguf_lora

        path = self.workdir / f"adapter-{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}.gguf"
        if not path.is_file():
            partial = path.with_suffix(".partial")
            write_gguf_lora(folder, self.model_config, partial)
            os.replace(partial, path)
        return path


def set_adapter(ctx: Any, handle: Any) -> None:
    """Apply one LoRA adapter (scale 1) on the context ``ctx``, or none; across llama-cpp-python's two APIs."""
    from llama_cpp import llama_cpp

    if hasattr(llama_cpp, "llama_set_adapters_lora"):  # 0.3.2x and later: the set of adapters at once
        count = 0 if handle is None else 1
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle) if handle is not None else None
        scales = (ctypes.c_float * 1)(1.0) if handle is not None else None
        failed = llama_cpp.llama_set_adapters_lora(ctx, adapters, count, scales)
    else:  # older: clear, then add one
        llama_cpp.llama_clear_adapter_lora(ctx)
        failed = llama_cpp.llama_set_adapter_lora(ctx, handle, 1.0) if handle is not None else 0
    if failed:
        raise TuneforgeError("llama.cpp refused to apply the LoRA adapter", hint="check that it matches the base")


class SequenceAdapters:
    """LRU of adapter folders stacked into one per-sequence llama.cpp adapter over one model (see the module
    docstring). Slot ``i`` of the stack holds one adapter's rank components ``i * rank ...``; a freed slot is
    reused by the next adapter, so the slots of running adapters never move while their rank fits (their
    sequences' updates stay bit for bit the same when another adapter joins). Only the engine's generation thread
    changes it; ``loaded`` may be read from any thread.

    Args:
        model: The base's ``llama_model_p``.
        ctx: The context the stack is applied on.
        model_config: The base model's transformers config (tensor names of the converted adapters).
        capacity: Adapters kept loaded (slots of the stack).
        workdir: Where the stack is written as GGUF.
    """

    per_sequence = True

    def __init__(self, model: Any, ctx: Any, model_config: Any, *, capacity: int, workdir: Path) -> None:
        self.model, self.ctx, self.model_config = model, ctx, model_config
        self.capacity, self.workdir = capacity, workdir
        self.slots: list[Path | None] = []  # stack slot -> adapter folder
        self.tensors: OrderedDict[Path, tuple[float, dict[str, tuple[Any, Any]]]] = OrderedDict()  # LRU order
        self.rows: dict[int, Path | None] = {}  # seq_id -> the adapter its mask row selects
        self.rank = 0  # components a slot holds: the largest rank loaded so far
        self.handle: Any = None
        self.loads = self.stacks = 0
        self.lock = threading.Lock()

    def use(self, folder: Path | None) -> None:
        """Nothing to do: every sequence's own row selects its adapter."""

    def load(self, folder: Path) -> int:
        """The stack slot of ``folder``'s adapter (read and stacked on first use; most recently used now).

        Raises:
            TuneforgeError: llama.cpp could not load the stack (an adapter of another base model); the stack
                stays as it was.
        """
        if folder in self.tensors:
            with self.lock:
                self.tensors.move_to_end(folder)
            return self.slots.index(folder)
        tensors = _read_adapter(folder, self.model_config)
        slots = list(self.slots)
        index = slots.index(None) if None in slots else len(slots)
        slots[index:index + 1] = [folder]
        rank = max([self.rank, *(a.shape[0] for a, _ in tensors[1].values())])
        stack = dict(self.tensors)
        stack[folder] = tensors
        self._stack(slots, stack, rank)
        with self.lock:
            self.tensors[folder] = tensors
        self.slots, self.rank = slots, rank
        self.loads += 1
        self._apply_rows()
        return index

    def assign(self, seq_id: int, folder: Path | None) -> None:
        """Give sequence ``seq_id`` the update of ``folder``'s adapter (loaded) or none."""
        self.rows[seq_id] = folder
        self._apply_row(seq_id)

    def evict(self, *, keep: set[Path]) -> None:
        """Free the slots of the least recently used adapters past ``capacity``, never those in ``keep`` (the
        freed slots' components stay in the stack, selected by no row, until the next adapter takes them)."""
        for folder in list(self.tensors):
            if len(self.tensors) <= self.capacity:
                return
            if folder not in keep:
                with self.lock:
                    del self.tensors[folder]
                self.slots[self.slots.index(folder)] = None
                for seq_id, assigned in self.rows.items():
                    if assigned == folder:
                        self.assign(seq_id, None)

    def loaded(self) -> list[str]:
        """Loaded adapter folders, least recently used first."""
        with self.lock:
            return [str(folder) for folder in self.tensors]

    def clear(self) -> None:
        """Free the stack (before the model is freed)."""
        from llama_cpp import llama_cpp

        set_adapter(self.ctx, None)
        for seq_id in self.rows:
            _set_row(self.ctx, seq_id, None)
        if self.handle is not None:
            llama_cpp.llama_adapter_lora_free(self.handle)
        self.handle, self.slots, self.rows = None, [], {}
        with self.lock:
            self.tensors = OrderedDict()

    def _stack(self, slots: list[Path | None], tensors: dict[Path, Any], rank: int) -> None:
        """Write ``slots`` as one per-sequence adapter and put it on the context in place of the old one."""
        from llama_cpp import llama_cpp

        from tuneforge.compression.export.gguf_lora import write_stacked_gguf_lora

        path = self.workdir / f"stack-{self.stacks}.gguf"
        self.stacks += 1
        write_stacked_gguf_lora([tensors[folder] if folder is not None else None for folder in slots],
                                self.model_config, path, rank=rank)
        handle = llama_cpp.llama_adapter_lora_init(self.model, str(path).encode())
        path.unlink()  # llama.cpp has read it
        if not handle:
            raise TuneforgeError(f"llama.cpp could not load the LoRA adapter {slots[-1]} stacked with the others",
                                 hint="check that it was trained on this base model")
        set_adapter(self.ctx, handle)
        if self.handle is not None:
            llama_cpp.llama_adapter_lora_free(self.handle)
        self.handle = handle

    def _apply_rows(self) -> None:
        for seq_id in self.rows:
            self._apply_row(seq_id)

    def _apply_row(self, seq_id: int) -> None:
        folder = self.rows.get(seq_id)
        if folder is None or folder not in self.slots:
            _set_row(self.ctx, seq_id, None)
            return
        row = [0.0] * (self.rank * len(self.slots))
        start = self.slots.index(folder) * self.rank
        row[start:start + self.rank] = [1.0] * self.rank
        _set_row(self.ctx, seq_id, row)


@functools.cache
def _mask_function() -> Any:
    """``llama_set_seq_lora_mask`` of the loaded llama.cpp (llama-cpp-python has no binding for the patch's API)."""
    from llama_cpp import llama_cpp

    function = getattr(llama_cpp._lib, SEQ_LORA_SYMBOL)
    function.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_float), ctypes.c_int32]
    function.restype = ctypes.c_int32
    return function


def _set_row(ctx: Any, seq_id: int, row: list[float] | None) -> None:
    values = (ctypes.c_float * len(row))(*row) if row else None
    if _mask_function()(ctx, seq_id, values, len(row) if row else 0) != 0:
        raise TuneforgeError(f"llama.cpp refused the LoRA mask of sequence {seq_id}")


def _read_adapter(folder: Path, model_config: Any) -> tuple[float, dict[str, tuple[Any, Any]]]:
    """An adapter folder's (or ``.gguf`` adapter file's) alpha and llama.cpp tensors."""
    from tuneforge.compression.export.gguf_lora import lora_tensors, read_gguf_lora

    return read_gguf_lora(folder) if folder.suffix == ".gguf" else lora_tensors(folder, model_config)
