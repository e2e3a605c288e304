"""The llama.cpp engine: one GGUF base model in llama-cpp-python, LoRA adapters applied at run time.

The base model folder is written once as a quantized GGUF (``ServingConfig.gguf_quantization``, Q8_0 by
default) and every adapter folder as a full-precision GGUF LoRA adapter (llama.cpp's layout, see
:mod:`tuneforge.compression.export.gguf_lora`): llama.cpp adds the adapter's update at run time, many per
base, instead of the adapter being merged and re-quantized. A ``.gguf`` base or adapter file is used as is.
Adapters load on first use into an LRU (``adapter_cache``) and are switched per request on the one context
(``llama_set_adapters_lora``). A ``Llama`` is not thread-safe: one generation thread serves the requests one
after another (llama.cpp's own continuous batching lives in its C++ server, not in the Python binding).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.serving.config import ServingConfig
from tuneforge.serving.engine import Delta, GenerationRequest, QueuedEngine
from tuneforge.serving.sampling import TextTracker
from tuneforge.serving.stats import ServingStats

log = logging.getLogger("tuneforge.serving")
MAX_CONTEXT = 4096  # KV cache allocated per base (the model's own context when shorter)


class LlamaCppEngine(QueuedEngine):
    """A base model served by llama.cpp, with GGUF LoRA adapters switched per request.

    Args:
        base: The base model's folder (converted to GGUF once), or a ``.gguf`` file.
        config: Adapter cache size, threads, and the base's GGUF quantization.
        stats: Where batch sizes are counted (always 1: requests run one at a time).
    """

    def __init__(self, base: Path, *, config: ServingConfig, stats: ServingStats | None = None) -> None:
        from llama_cpp import Llama

        self.base, self.config, self.stats = base, config, stats or ServingStats()
        self.workdir = Path(tempfile.mkdtemp(prefix="tuneforge-llamacpp-"))  # converted files, removed on close
        try:
            model_file, self._tokenizer, self.end_ids, model_config = _prepare_base(base, self.workdir, config)
            self._context = min(int(getattr(model_config, "max_position_embeddings", 0) or 2048), MAX_CONTEXT)
            threads = config.threads or None  # prompts too: llama-cpp-python's default takes every core for them
            self.llm = Llama(model_path=str(model_file), n_ctx=self._context, n_threads=threads,
                             n_threads_batch=threads, seed=0, verbose=False)
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.encode_lock = threading.Lock()
        self.adapters = GgufAdapters(self.llm, model_config, capacity=config.adapter_cache, workdir=self.workdir)
        self._start_thread(f"tuneforge-llamacpp-{base.name}")

    def loaded_adapters(self) -> list[str]:
        return self.adapters.loaded()

    def activity(self) -> tuple[int, int]:
        return self.running, self.queue.qsize()

    def close(self) -> None:
        self._stop_thread()
        if not self.thread.is_alive():
            self.adapters.clear()
            self.llm.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- the generation thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self.closed.is_set():
            request = self.queue.get()
            if request is None:
                break
            self.running = 1
            try:
                self.adapters.use(request.adapter)
                self.stats.batch(1)
                self._generate(request)
            except Exception as exc:  # a bad adapter or a llama.cpp failure: this request fails, the next runs
                log.exception("llama.cpp generation failed")
                request.stream.put(Delta("", 0, "error", exc))
            self.running = 0
        while True:
            try:
                left = self.queue.get_nowait()
            except queue.Empty:
                return
            if left is not None:
                left.stream.put(Delta("", 0, "error", TuneforgeError("the server is shutting down")))

    def _generate(self, request: GenerationRequest) -> None:
        params = request.params
        tracker = TextTracker(self._tokenizer, params, self.end_ids)
        if not params.greedy:  # the sampler is rebuilt per generate() from this seed: a fresh one when none is given
            self.llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        tokens = self.llm.generate(request.prompt_ids, **sampler_options(params))
        for token in tokens:
            text = tracker.add(int(token))
            request.stream.put(Delta(text, len(tracker.ids), tracker.finish_reason))
            if tracker.finish_reason is not None or request.stream.cancelled or self.closed.is_set():
                break
        if tracker.finish_reason is None:  # cancelled, or the engine is closing
            request.stream.put(Delta("", len(tracker.ids), "error", TuneforgeError("generation was stopped")))


def sampler_options(params: Any) -> dict[str, Any]:
    """llama-cpp-python's ``generate`` options for :class:`SamplingParams` (OpenAI's sampling: no top-k, no
    min-p, no repetition penalty; ``temp=0`` is greedy)."""
    return {"temp": params.temperature, "top_p": params.top_p, "top_k": 0, "min_p": 0.0, "typical_p": 1.0,
            "repeat_penalty": 1.0, "reset": True}


def _prepare_base(base: Path, workdir: Path, config: ServingConfig) -> tuple[Path, Any, set[int], Any]:
    """The GGUF file of ``base`` (written to ``workdir`` from a transformers folder), its tokenizer, end-of-turn
    ids and transformers config."""
    from tuneforge.evaluation.generation import stop_ids
    from tuneforge.models.loading import load_causal_lm, load_tokenizer

    if base.suffix == ".gguf":  # a GGUF export: the tokenizer saved beside it (adapter: separate), else the file's
        from transformers import AutoConfig, AutoTokenizer

        folder = base.parent
        tokenizer = (load_tokenizer(folder) if (folder / "tokenizer_config.json").is_file()
                     else AutoTokenizer.from_pretrained(folder, gguf_file=base.name))
        return base, tokenizer, set(stop_ids(None, tokenizer)), AutoConfig.from_pretrained(folder, gguf_file=base.name)
    from tuneforge.compression.export.gguf_writer import write_gguf

    tokenizer = load_tokenizer(base)
    model = load_causal_lm(base).eval()
    path = workdir / f"model.{config.gguf_quantization}.gguf"
    logging.getLogger("gguf").setLevel(logging.WARNING)
    write_gguf(model, tokenizer, base, path, quantization=config.gguf_quantization)
    ends = set(stop_ids(model, tokenizer))
    return path, tokenizer, ends, model.config


class GgufAdapters:
    """LRU of adapter folders -> llama.cpp LoRA adapters over one ``Llama``; one is active on its context.

    Only the engine's generation thread changes it; ``loaded`` may be read from any thread.

    Args:
        llm: The base model's ``Llama``.
        model_config: The base model's transformers config (tensor names of the converted adapters).
        capacity: Adapters kept loaded.
        workdir: Where adapter folders are converted to GGUF.
    """

    def __init__(self, llm: Any, model_config: Any, *, capacity: int, workdir: Path) -> None:
        self.llm, self.model_config, self.capacity, self.workdir = llm, model_config, capacity, workdir
        self.handles: OrderedDict[Path, Any] = OrderedDict()
        self.active: Path | None = None
        self.loads = 0
        self.lock = threading.Lock()

    def use(self, folder: Path | None) -> None:
        """Make ``folder``'s adapter the active one (``None``: the base model alone), loading it on first use."""
        if folder == self.active:
            if folder is not None:
                self.handles.move_to_end(folder)
            return
        handle = self._load(folder) if folder is not None else None
        set_adapter(self.llm, handle)
        self.llm.reset()  # the KV cache holds another adapter's keys and values: no prefix may be reused
        self.active = folder
        self._evict()

    def loaded(self) -> list[str]:
        """Loaded adapter folders, least recently used first."""
        with self.lock:
            return [str(folder) for folder in self.handles]

    def clear(self) -> None:
        """Free every adapter (before the model is freed)."""
        from llama_cpp import llama_cpp

        set_adapter(self.llm, None)
        with self.lock:
            handles, self.handles = list(self.handles.values()), OrderedDict()
        for handle in handles:
            llama_cpp.llama_adapter_lora_free(handle)

    def _load(self, folder: Path) -> Any:
        from llama_cpp import llama_cpp

        if folder in self.handles:
            with self.lock:
                self.handles.move_to_end(folder)
            return self.handles[folder]
        path = folder if folder.suffix == ".gguf" else self._convert(folder)
        handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode())
        if not handle:
            raise TuneforgeError(f"llama.cpp could not load the LoRA adapter {folder}",
                                 hint="check that it was trained on this base model")
        with self.lock:
            self.handles[folder] = handle
        self.loads += 1
        return handle

    def _convert(self, folder: Path) -> Path:
        from tuneforge.compression.export.gguf_lora import write_gguf_lora

        path = self.workdir / f"adapter-{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}.gguf"
        if not path.is_file():
            partial = path.with_suffix(".partial")
            write_gguf_lora(folder, self.model_config, partial)
            os.replace(partial, path)
        return path

    def _evict(self) -> None:
        from llama_cpp import llama_cpp

        for folder in list(self.handles):
            if len(self.handles) <= self.capacity:
                return
            if folder != self.active:
                with self.lock:
                    handle = self.handles.pop(folder)
                llama_cpp.llama_adapter_lora_free(handle)


def set_adapter(llm: Any, handle: Any) -> None:
    """Apply one LoRA adapter (scale 1) on ``llm``'s context, or none; across llama-cpp-python's two APIs."""
    import ctypes

    from llama_cpp import llama_cpp

    if hasattr(llama_cpp, "llama_set_adapters_lora"):  # 0.3.2x and later: the set of adapters at once
        count = 0 if handle is None else 1
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle) if handle is not None else None
        scales = (ctypes.c_float * 1)(1.0) if handle is not None else None
        failed = llama_cpp.llama_set_adapters_lora(llm.ctx, adapters, count, scales)
    else:  # older: clear, then add one
        llama_cpp.llama_clear_adapter_lora(llm.ctx)
        failed = llama_cpp.llama_set_adapter_lora(llm.ctx, handle, 1.0) if handle is not None else 0
    if failed:
        raise TuneforgeError("llama.cpp refused to apply the LoRA adapter", hint="check that it matches the base")
