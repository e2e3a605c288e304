"""Inference use cases: which weights a requested model name means, and generation requests over the engines.

Resolution happens on every request (:func:`resolve_served_model`), so a registry alias that moves, or a
fine-tuning job that finishes, changes the answer without a restart; the engines cache adapters by folder.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, NotFoundError
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engine import Delta, Engine, GenerationRequest, Stream
from tuneforge.serving.engines import ModelServer
from tuneforge.services import catalog
from tuneforge.services.platform import Platform
from tuneforge.storage.records import ServedRequestRecord


@dataclass(frozen=True)
class ServedTarget:
    """The weights behind a requested model name.

    Attributes:
        name: The name the client asked for (echoed in responses).
        base: The base model's folder (one engine per base).
        adapter: The adapter folder on top of it, if any (the adapter cache key).
        version: The registry version label (``name:3``), when the name came from the registry.
        registered: The registered model, the alias asked for and the version number (for the request log).
    """

    name: str
    base: Path
    adapter: Path | None = None
    version: str | None = None
    registered: tuple[str, str | None, int] | None = None


def resolve_served_model(platform: Platform, name: str, *, project: str,
                         served: Mapping[str, str] | None = None, user: str | None = None,
                         engine: str = "torch") -> ServedTarget:
    """The base model and adapter that answer requests for ``name`` in ``project``.

    Tried in order: the model registry (``name@alias``, ``name:3``), the names ``tuneforge serve`` was
    given (``served``), the project's fine-tuned models (``ft:...``), the server's base models. An alias split
    between versions (an A/B test) answers with the version ``user`` hashes to (:func:`tuneforge.services.ab.route`).

    Raises:
        NotFoundError: No such model for this project (404 ``model_not_found``).
        ConfigError: The model is not a text generator.
    """
    target = _registry_target(platform, name, project=project, user=user, engine=engine)
    if target is not None:
        return target
    if served and name in served:
        return _target(platform, name, served[name])
    try:
        record = platform.store.get_model(name, project=project)
    except NotFoundError:
        return _target(platform, name, catalog.resolve_base_model(platform, name))
    return _target(platform, name, record.path)


def _registry_target(platform: Platform, name: str, *, project: str, user: str | None = None,
                     engine: str = "torch") -> ServedTarget | None:
    """A registered version (``name``, ``name:3``, ``name@alias``), resolved at every request, so moving or
    splitting an alias changes what answers with no restart; ``None`` when ``name`` is not a registry reference."""
    from tuneforge.services.ab import route
    from tuneforge.services.registry import gate_failed

    try:
        routed = route(platform, name, project=project, user=user)
    except NotFoundError as exc:  # a registry reference to an unknown name, version or alias
        exc.param, exc.code = "model", "model_not_found"  # type: ignore[attr-defined]
        raise
    if routed is None:
        return None
    record = routed.version
    if gate_failed(record):  # an update that fell below its parent on the held-out suite is never served
        raise request_error(f"'{name}' is {record.ref}, which failed the regression gate of its update: it is never "
                            "served", param="model", code="model_not_servable")
    if record.kind == "gguf" and engine == "llamacpp":
        target = _gguf_target(name, Path(record.artifact_path), version=record.ref)
    elif record.kind not in ("adapter", "full"):
        raise request_error(f"'{name}' is {record.ref}, a {record.kind} export: the {engine} engine serves adapter and "
                            "full-model versions" + (" (GGUF ones with --engine llamacpp)" if record.kind == "gguf" else ""),
                            param="model")
    else:
        target = _target(platform, name, record.artifact_path, version=record.ref)
    return replace(target, registered=(record.name, routed.alias, record.version))


def _gguf_target(name: str, artifact: Path, *, version: str) -> ServedTarget:
    """A GGUF version for llama.cpp: its model file, and its ``adapter.gguf`` (``adapter: separate``) if any."""
    files = [artifact] if artifact.is_file() else sorted(artifact.glob("*.gguf"))
    models = [f for f in files if f.name != "adapter.gguf"]
    if len(models) != 1:
        raise request_error(f"'{name}' is {version}, a GGUF version with {len(models)} model files; the llamacpp "
                            "engine serves one model file (and an adapter.gguf)", param="model")
    adapter = artifact / "adapter.gguf" if artifact.is_dir() and (artifact / "adapter.gguf").is_file() else None
    return ServedTarget(name=name, base=models[0].resolve(), adapter=adapter, version=version)


def _target(platform: Platform, name: str, reference: str, *, version: str | None = None) -> ServedTarget:
    from tuneforge.models.inference import locate

    source = locate(reference, cache_dir=platform.settings.model_cache_dir)
    if source.head == "classification":
        raise ConfigError(f"'{name}' is a classifier; the server answers with text generators", field="model",
                          hint="use 'tuneforge eval' for classifiers")
    adapter = source.adapter.resolve() if source.adapter is not None else None
    return ServedTarget(name=name, base=source.base.resolve(), adapter=adapter, version=version)


def request_error(message: str, *, param: str, code: str = "invalid_value") -> ConfigError:
    """A 400 naming the request field ``param``, with OpenAI's error ``code``."""
    error = ConfigError(message, field=param)
    error.code = code  # type: ignore[attr-defined]
    return error


@dataclass
class Generation:
    """A request in flight: ``n`` sequences per prompt, each with its stream.

    Attributes:
        id: ``chatcmpl-...`` or ``cmpl-...``.
        model: The requested name (responses echo it).
        created: Unix time.
        prompt_tokens: Prompt tokens over all prompts.
        streams: One per choice, in choice order.
        target: What answers (responses name its registry version: :attr:`answered_by`).
        log: Where the finished request goes (the server's :class:`~tuneforge.services.traffic.RequestLog`).
    """

    id: str
    model: str
    created: int
    prompt_tokens: int
    streams: list[Stream]
    server: ModelServer
    started: float = field(default_factory=time.perf_counter)
    target: ServedTarget | None = None
    project: str = ""
    user: str | None = None
    prompt: dict[str, Any] | None = None
    log: Callable[[ServedRequestRecord], None] | None = None

    @property
    def answered_by(self) -> str:
        """The registry version that answers (``bot:8``), else the requested name."""
        return (self.target.version if self.target is not None else None) or self.model


def start_generation(platform: Platform, server: ModelServer, *, project: str, model: str,
                     messages: list[dict[str, Any]] | None = None, prompts: list[str] | None = None,
                     max_tokens: int | None = None, sampling: Mapping[str, Any] | None = None, n: int = 1,
                     loop: asyncio.AbstractEventLoop | None = None, user: str | None = None,
                     log: Callable[[ServedRequestRecord], None] | None = None) -> Generation:
    """Resolve ``model``, tokenize, and queue ``n`` sequences per prompt on its engine.

    Args:
        platform: Store and settings (for resolution and project isolation).
        server: The process's engines.
        project: The caller's project.
        model: The requested model name.
        messages: A chat (``/v1/chat/completions``); or ``prompts`` (``/v1/completions``).
        prompts: Raw prompts.
        max_tokens: Longest answer (default: the server's default, within the context).
        sampling: ``temperature``, ``top_p``, ``stop``, ``seed`` (OpenAI's defaults where absent).
        n: Choices per prompt.
        loop: The asyncio loop that reads the streams (``None``: read them synchronously).
        user: OpenAI's ``user`` field (an A/B split assigns a user to one version).
        log: Where the finished request is logged (``None``: not logged).

    Raises:
        NotFoundError: Unknown model (``model_not_found``).
        ConfigError: The prompt and max_tokens do not fit the context (``context_length_exceeded``).
    """
    started = time.perf_counter()
    target = resolve_served_model(platform, model, project=project, served=server.config.models, user=user,
                                  engine=server.config.engine)
    engine = server.engine(target.base)
    encoded = _encode(engine, messages=messages, prompts=prompts)
    options = dict(sampling or {})
    seed = options.pop("seed", None)
    param = "messages" if messages is not None else "prompt"
    limits = [_max_tokens(engine, prompt=len(ids), requested=max_tokens, default=server.config.default_max_tokens,
                          param=param) for ids in encoded]  # every prompt checked before any is queued
    streams = []
    for ids, tokens in zip(encoded, limits):
        for choice in range(n):
            params = SamplingParams(max_tokens=tokens, seed=None if seed is None else seed + choice, **options)
            request = GenerationRequest(ids, params, target.adapter, Stream(loop), label=model)
            streams.append(engine.submit(request))
    prefix = "chatcmpl" if messages is not None else "cmpl"
    return Generation(id=f"{prefix}-{uuid.uuid4().hex[:24]}", model=model, created=int(time.time()),
                      prompt_tokens=sum(len(ids) for ids in encoded), streams=streams, server=server, started=started,
                      target=target, project=project, user=user, log=log,
                      prompt={"messages": messages} if messages is not None else {"prompts": prompts})


def _encode(engine: Engine, *, messages: list[dict[str, Any]] | None, prompts: list[str] | None) -> list[list[int]]:
    tokenizer = engine.tokenizer
    if messages is not None:
        from tuneforge.data.tokenize import render_prompt

        try:
            text = render_prompt(messages, tokenizer)  # jinja only: no tokenizer state is touched
        except Exception as exc:  # the template raises on roles or orders it does not support
            raise request_error(f"the model's chat template rejects these messages: {exc}", param="messages") from exc
        return [engine.encode(text, add_special_tokens=False)]
    return [engine.encode(prompt, add_special_tokens=True) for prompt in prompts or [""]]


def _max_tokens(engine: Engine, *, prompt: int, requested: int | None, default: int, param: str) -> int:
    context = engine.context_length
    if not prompt:
        raise request_error(f"the {param} is empty: give at least one token", param=param)
    if prompt >= context or (requested is not None and prompt + requested > context):
        asked = prompt + (requested or 0)
        raise request_error(
            f"This model's maximum context length is {context} tokens. However, you requested {asked} tokens "
            f"({prompt} in the {param}, {requested or 0} in the completion). Please reduce the length of the "
            f"{param} or completion.", param=param if prompt >= context else "max_tokens",
            code="context_length_exceeded")
    return requested if requested is not None else min(default, context - prompt)


async def deltas(generation: Generation) -> AsyncIterator[tuple[int, Delta]]:
    """Every choice's deltas as they come, as ``(choice index, delta)``; a failed sequence raises its error."""
    if len(generation.streams) == 1:  # one choice (most requests): read its stream, no task and queue between
        stream = generation.streams[0]
        try:
            async for delta in stream.deltas():
                if delta.error is not None:
                    raise delta.error
                yield 0, delta
        finally:
            stream.cancel()
        return
    merged: asyncio.Queue[tuple[int, Delta]] = asyncio.Queue()

    async def forward(index: int, stream: Stream) -> None:
        async for delta in stream.deltas():
            await merged.put((index, delta))

    tasks = [asyncio.create_task(forward(i, s)) for i, s in enumerate(generation.streams)]
    finished = 0
    try:
        while finished < len(tasks):
            index, delta = await merged.get()
            if delta.error is not None:
                raise delta.error
            finished += delta.finish_reason is not None
            yield index, delta
    finally:
        for task, stream in zip(tasks, generation.streams):
            task.cancel()
            stream.cancel()


@dataclass
class Choice:
    """One finished sequence."""

    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None


async def collect(generation: Generation) -> list[Choice]:
    """Wait for every choice of a non-streaming request."""
    choices = [Choice() for _ in generation.streams]
    status = "error"
    try:
        async for index, delta in deltas(generation):
            choice = choices[index]
            choice.text, choice.tokens = choice.text + delta.text, delta.tokens
            choice.finish_reason = delta.finish_reason or choice.finish_reason
        status = "ok"
    finally:
        record_request(generation, status=status, tokens=sum(c.tokens for c in choices),
                       answer=choices[0].text if choices else None)
    return choices


def record_request(generation: Generation, *, status: str, tokens: int, answer: str | None = None) -> None:
    """Count a finished request (latency, time to first token, tokens) for ``/metrics``, and log it (its first
    choice's text as the answer)."""
    seconds = time.perf_counter() - generation.started
    firsts = [s.first_token_at for s in generation.streams if s.first_token_at is not None]
    generation.server.stats.request_done(
        generation.model, status=status, seconds=seconds,
        first_token_seconds=min(firsts) - generation.started if firsts else None, tokens=tokens)
    if generation.log is None:
        return
    registered = generation.target.registered if generation.target is not None else None
    name, alias, version = registered or (None, None, None)
    generation.log(ServedRequestRecord(
        id=generation.id, project=generation.project, model=generation.model[:512],
        variant=generation.answered_by[:512], status=status, name=name, alias=alias, version=version,
        user_id=generation.user[:256] if generation.user is not None else None,  # the columns' widths
        latency_ms=seconds * 1000, prompt_tokens=generation.prompt_tokens, completion_tokens=tokens,
        prompt=generation.prompt, answer=answer))


def open_model_server(config: ServingConfig | None = None) -> ModelServer:
    """The engines of a server process (models load on first use, or with :func:`preload`).

    Raises:
        MissingDependencyError: The configured engine's package is not installed (names the extra).
    """
    from tuneforge.serving.engines import check_engine

    config = config or ServingConfig()
    check_engine(config.engine)
    return ModelServer(config)


def preload(platform: Platform, server: ModelServer) -> list[ServedTarget]:
    """Load the models ``tuneforge serve`` was given (and their adapters' bases) before the first request."""
    targets = []
    for name in server.config.models:
        target = resolve_served_model(platform, name, project="", served=server.config.models,
                                      engine=server.config.engine)
        server.engine(target.base)
        targets.append(target)
    return targets


def list_served_models(platform: Platform, server: ModelServer | None, *, project: str) -> list[dict[str, Any]]:
    """:func:`catalog.list_models` plus the names ``tuneforge serve`` was given."""
    models = catalog.list_models(platform, project=project)
    known = {m["id"] for m in models}
    served = server.config.models if server is not None else {}
    return models + [{"id": name, "owned_by": "tuneforge", "created": 0, "kind": "served", "path": ref}
                     for name, ref in served.items() if name not in known]

