"""``tuneforge serve MODEL_OR_NAME...``: an OpenAI-compatible inference server for models and adapters."""

from __future__ import annotations

import os
from typing import Optional

import typer

from tuneforge.cli.platform import DB, HOME, _safe
from tuneforge.cli.render import make_console
from tuneforge.errors import ConfigError, TuneforgeError

console = make_console()


def served_names(models: list[str]) -> dict[str, str]:
    """``NAME=REF`` or ``REF`` (served under its own text) -> {name: reference}."""
    served = {}
    for item in models:
        name, sep, reference = item.partition("=")
        if sep and (not name or not reference):
            raise ConfigError(f"{item!r} is not NAME=MODEL", field="models", hint="e.g. support-bot=runs/support")
        served[name if sep else item] = reference if sep else item
    return served


def check_models(settings, server, *, models: dict[str, str]) -> None:
    """Resolve every model to serve and run its engine's checks (no weights loaded), so that a bad reference
    fails before uvicorn starts, naming the argument.

    Raises:
        TuneforgeError: ``tuneforge serve ARG: what is wrong``, with the original hint.
    """
    from tuneforge.services.platform import open_platform
    from tuneforge.services.serving import resolve_served_model

    platform = open_platform(settings)
    try:
        for name, reference in models.items():
            try:
                target = resolve_served_model(platform, name, project="", served=models, engine=server.config.engine)
                server.check(target.base)
            except TuneforgeError as exc:
                given = name if name == reference else f"{name}={reference}"
                raise TuneforgeError(f"tuneforge serve {given}: {exc.message}", hint=exc.hint) from exc
    finally:
        platform.close()


OPTIONS = ("engine", "max_batch", "batch_wait_ms", "adapter_cache", "threads", "log_requests", "gguf_quantization",
           "dtype", "max_lora_rank")


def serve(
    models: list[str] = typer.Argument(..., help="Models to serve: a builtin alias, model directory, run or adapter "
                                       "directory, or NAME=MODEL to serve it under NAME. The project's ft: models "
                                       "and the base models answer too."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    engine: str = typer.Option("torch", help="torch (transformers + PEFT), llamacpp or vllm."),
    max_batch: int = typer.Option(16, help="Most sequences generated together."),
    batch_wait_ms: float = typer.Option(5.0, help="How long a batch waits for more requests (ms)."),
    adapter_cache: int = typer.Option(8, help="Adapters kept loaded per base model (LRU)."),
    threads: int = typer.Option(0, help="CPU threads of torch or llama.cpp (0: the engine's default)."),
    log_requests: bool = typer.Option(False, "--log-requests", help="Keep prompts and answers in the request log "
                                      "(for 'tuneforge data collect --from-traffic'); figures are always logged."),
    gguf_quantization: str = typer.Option("q8_0", help="--engine llamacpp: GGUF type of the converted base model "
                                          "(q8_0, q4_0, f16, ...); adapters stay full precision."),
    dtype: str = typer.Option("auto", help="--engine vllm: float32, bfloat16, float16 or auto (vLLM's choice)."),
    max_lora_rank: int = typer.Option(16, help="--engine vllm: the largest adapter rank served (slots are this size)."),
    database_url: Optional[str] = DB,
    home: Optional[str] = HOME,
) -> None:
    """Serve models with the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models); same API keys as
    'tuneforge server' ('tuneforge keys create --project NAME')."""
    from tuneforge.api.app import serve as serve_app
    from tuneforge.config import validate_config
    from tuneforge.serving.config import ServingConfig
    from tuneforge.services.serving import open_model_server
    from tuneforge.settings import Settings

    config = validate_config({"engine": engine, "max_batch": max_batch, "batch_wait_ms": batch_wait_ms,
                              "adapter_cache": adapter_cache, "threads": threads, "models": served_names(models),
                              "log_requests": log_requests, "gguf_quantization": gguf_quantization,
                              "dtype": dtype, "max_lora_rank": max_lora_rank},
                             ServingConfig, options={**{key: "--" + key.replace("_", "-") for key in OPTIONS},
                                                     "models": "MODELS"})
    if engine == "vllm" and threads:  # vLLM's CPU worker binds its OpenMP threads to these cores
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}")
    server = open_model_server(config)  # fails here, before the port opens, when the engine is not installed
    settings = Settings.from_env(database_url=database_url or None, home=home or None, concurrency=0)
    check_models(settings, server, models=config.models)
    console.print(f"tuneforge serve on http://{host}:{port}/v1: {', '.join(config.models)} ({engine} engine), "
                  f"database {_safe(settings.database_url)}")
    serve_app(settings, host=host, port=port, workers=0, serving=config)
