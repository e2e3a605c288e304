"""The vLLM engine: one base model in vLLM's ``AsyncLLM`` (continuous batching, paged attention, multi-LoRA).

tuneforge resolves names (registry aliases, ``ft:`` models) and tokenizes; vLLM schedules and generates.
Every adapter folder is a ``LoRARequest`` with a stable integer id per folder (vLLM's key for its GPU and
CPU LoRA caches), so requests for many adapters of one base run in one batch (``--enable-lora`` in
``vllm serve``). vLLM runs its own asyncio loop in a thread of its own; the server's threads and loops reach
it through :class:`~tuneforge.serving.engine.Stream`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engine import Delta, GenerationRequest, Stream, TokenizedEngine
from tuneforge.serving.stats import ServingStats

log = logging.getLogger("tuneforge.serving")
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks: the max_lora_rank vLLM accepts
CPU_KV_TOKENS_PER_SEQUENCE = 2048  # the CPU KV cache: max_batch sequences of this many tokens (or one whole context)


@dataclass(frozen=True)
class LoraSpec:
    """What a ``vllm.lora.request.LoRARequest`` is built from: ``(lora_name, lora_int_id, lora_path)``."""

    name: str
    int_id: int
    path: str


class LoraIds:
    """A stable positive integer per adapter folder (thread-safe): vLLM caches adapters by this id, so a new
    folder (a new registry version) is a new id and loads beside the old one (hot swap).

    Args:
        capacity: Adapters vLLM keeps loaded (``max_cpu_loras``): :meth:`folders` lists the most recent ones.
    """

    def __init__(self, *, capacity: int) -> None:
        self.ids: dict[Path, int] = {}
        self.recent: OrderedDict[Path, None] = OrderedDict()  # vLLM's LRU of loaded adapters, mirrored
        self.capacity = capacity
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    def spec(self, folder: Path) -> LoraSpec:
        """The LoRA request of ``folder`` (the same id every time)."""
        with self.lock:
            if folder not in self.ids:
                self.ids[folder] = next(self.counter)
            number = self.ids[folder]
            self.recent[folder] = None
            self.recent.move_to_end(folder)
            while len(self.recent) > self.capacity:
                self.recent.popitem(last=False)
        return LoraSpec(name=f"adapter-{number}", int_id=number, path=str(folder))

    def folders(self) -> list[str]:
        """The adapter folders vLLM holds now, least recently used first."""
        with self.lock:
            return [str(folder) for folder in self.recent]


def lora_rank(folder: Path) -> int:
    """The rank ``r`` of a PEFT LoRA adapter folder (its ``adapter_config.json``; 0 when it names none)."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder} has no readable adapter_config.json ({exc})", field="model",
                          hint="serve a PEFT LoRA adapter folder (adapter_config.json + adapter weights)") from exc
    ranks = [int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def sampling_options(params: SamplingParams) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments for one sequence (OpenAI's semantics: no top-k, stop strings
    cut from the text, a per-sequence seed)."""
    options: dict[str, Any] = {"n": 1, "max_tokens": params.max_tokens, "temperature": params.temperature,
                               "top_p": params.top_p, "stop": list(params.stop), "include_stop_str_in_output": False}
    if params.seed is not None:
        options["seed"] = params.seed
    return options


def engine_options(base: Path, config: ServingConfig, *, model_config: Any, device: str) -> dict[str, Any]:
    """``vllm.AsyncEngineArgs`` keyword arguments for one base model with LoRA adapters.

    Args:
        base: The base model's folder.
        config: ``max_batch`` -> ``max_num_seqs``; ``adapter_cache`` -> ``max_cpu_loras`` (vLLM's LRU) and, up to
            ``max_batch``, ``max_loras`` (adapters in one batch); ``dtype``; ``max_lora_rank`` (rounded up to a
            rank vLLM accepts).
        model_config: The base model's transformers config (context length and KV cache size).
        device: ``cuda`` or ``cpu``: on CPU, eager mode (no torch.compile warm-up at start) and a KV cache sized
            for ``max_batch`` sequences (vLLM's CPU default takes a share of the machine's memory).
    """
    context = int(getattr(model_config, "max_position_embeddings", 0) or 2048)
    options: dict[str, Any] = {
        "model": str(base), "tokenizer": str(base), "dtype": config.dtype, "max_model_len": context,
        "enable_lora": True, "max_loras": min(config.adapter_cache, config.max_batch),
        "max_cpu_loras": config.adapter_cache, "max_lora_rank": slot_rank(config.max_lora_rank),
        "max_num_seqs": config.max_batch,
        "seed": 0, "disable_log_stats": True}
    if device == "cpu":
        tokens = max(context, config.max_batch * min(context, CPU_KV_TOKENS_PER_SEQUENCE))
        kv_bytes = tokens * kv_bytes_per_token(model_config, config.dtype)
        options.update(enforce_eager=True, kv_cache_memory_bytes=kv_bytes)
    return options


def scheduler_logger(engine: VllmEngine) -> Any:
    """A vLLM stat-logger class (``AsyncLLM(stat_loggers=...)``) that hands each step's scheduler stats, running and
    waiting requests, to ``engine.scheduled``. Given a custom logger, vLLM collects stats although the engine's
    options keep ``disable_log_stats`` (no periodic log lines). vLLM adds its Prometheus logger as well: its
    ``vllm:`` figures go to prometheus_client's default registry, which the server's ``/metrics`` does not read."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SchedulerLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kwargs: Any) -> None:
            if scheduler_stats is not None:
                engine.scheduled(scheduler_stats.num_running_reqs, scheduler_stats.num_waiting_reqs)

        def log_engine_initialized(self) -> None:
            pass

    return SchedulerLogger


def slot_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds adapters of rank ``rank``."""
    return next(allowed for allowed in LORA_RANKS if allowed >= rank)


def kv_bytes_per_token(model_config: Any, dtype: str) -> int:
    """Bytes of K and V per token over every layer (bfloat16 unless ``dtype`` is float32)."""
    heads = int(getattr(model_config, "num_attention_heads", 1))
    kv_heads = int(getattr(model_config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(model_config, "head_dim", None) or model_config.hidden_size // heads)
    width = 4 if dtype == "float32" else 2
    return 2 * int(model_config.num_hidden_layers) * kv_heads * head_dim * width


class VllmEngine(TokenizedEngine):
    """A base model served by vLLM (one GPU; ``vllm serve`` itself for tensor parallelism).

    Args:
        base: The base model's folder.
        config: Batch size (``max_num_seqs``) and adapters kept on the GPU (``max_loras``).
        stats: The server's counters.
    """

    def __init__(self, base: Path, *, config: ServingConfig, stats: ServingStats | None = None) -> None:
        from transformers import AutoConfig

        from tuneforge.models.loading import load_tokenizer

        self.base, self.config, self.stats = base, config, stats or ServingStats()
        self._tokenizer = load_tokenizer(base)
        self.encode_lock = threading.Lock()
        self.model_config = AutoConfig.from_pretrained(base)
        self._context = int(getattr(self.model_config, "max_position_embeddings", 0) or 2048)
        self.loras = LoraIds(capacity=config.adapter_cache)
        self.running = 0
        self.scheduled_running = self.waiting = 0  # vLLM's scheduler, from its stats (scheduler_logger)
        self.closed = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"tuneforge-vllm-{base.name}", daemon=True)
        self.thread.start()
        try:
            self.engine = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()
        except BaseException:  # no GPU memory, an unsupported model...: the loop's thread does not outlive it
            self.loop.call_soon_threadsafe(self.loop.stop)
            raise

    async def _start(self) -> Any:
        from vllm import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        options = engine_options(self.base, self.config, model_config=self.model_config,
                                 device=current_platform.device_type)
        return AsyncLLM.from_engine_args(AsyncEngineArgs(**options), stat_loggers=[scheduler_logger(self)])

    def scheduled(self, running: int, waiting: int) -> None:
        """vLLM's scheduler after a step: ``running`` sequences in its batch, ``waiting`` not yet in it. A batch
        that formed or grew is counted in the batch-size histogram (as the other engines count theirs)."""
        if running > self.scheduled_running:
            self.stats.batch(running)
        self.scheduled_running, self.waiting = running, waiting

    def submit(self, request: GenerationRequest) -> Stream:
        if self.closed:
            raise TuneforgeError("the engine is shut down", hint="restart the server")
        if request.adapter is not None and request.adapter not in self.loras.ids:
            rank = lora_rank(request.adapter)
            if rank > slot_rank(self.config.max_lora_rank):
                raise ConfigError(f"adapter {request.adapter} has LoRA rank {rank}; this vllm engine serves ranks up "
                                  f"to {slot_rank(self.config.max_lora_rank)}", field="max_lora_rank",
                                  hint=f"restart with --max-lora-rank {rank}, or serve it with --engine torch")
        asyncio.run_coroutine_threadsafe(self._serve(request), self.loop)
        return request.stream

    def loaded_adapters(self) -> list[str]:
        return self.loras.folders()

    def activity(self) -> tuple[int, int]:
        return self.running, self.waiting  # waiting: in vLLM's scheduler queue (its last step's stats)

    def close(self) -> None:
        self.closed = True
        self.engine.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)

    async def _serve(self, request: GenerationRequest) -> None:
        from vllm import SamplingParams as VllmSampling
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind

        request_id = uuid.uuid4().hex
        spec = self.loras.spec(request.adapter) if request.adapter is not None else None
        lora = LoRARequest(spec.name, spec.int_id, spec.path) if spec is not None else None
        sampling = VllmSampling(**sampling_options(request.params), output_kind=RequestOutputKind.DELTA)
        self.running += 1
        tokens = 0
        try:
            async for output in self.engine.generate(TokensPrompt(prompt_token_ids=request.prompt_ids), sampling,
                                                     request_id, lora_request=lora):
                piece = output.outputs[0]
                tokens += len(piece.token_ids)
                reason = piece.finish_reason if output.finished else None
                request.stream.put(Delta(piece.text, tokens, "stop" if reason == "abort" else reason))
                if request.stream.cancelled and not output.finished:
                    await self.engine.abort(request_id)
                    request.stream.put(Delta("", tokens, "stop"))
                    return
        except Exception as exc:  # noqa: BLE001 - the request fails, the engine keeps serving
            log.exception("vLLM generation failed")
            request.stream.put(Delta("", tokens, "error", exc))
        finally:
            self.running -= 1
