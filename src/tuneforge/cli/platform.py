"""Platform commands: ``tuneforge server``, ``tuneforge worker``, ``tuneforge keys create``."""

from __future__ import annotations

import signal
from typing import Optional

import typer

from tuneforge.cli.render import make_console
from tuneforge.errors import ConfigError

keys_app = typer.Typer(help="API keys of the server.", no_args_is_help=True)
console = make_console()


def _settings(database_url: Optional[str], home: Optional[str], concurrency: int, base_model: list[str],
              allow_local_paths: bool = False, max_upload_mb: Optional[float] = None, stale_after: float = 30.0,
              threads_per_job: int = 0):
    from tuneforge.settings import Settings

    from_env = Settings.from_env()
    models = dict(from_env.base_models)
    for item in base_model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--base-model {item!r} is not NAME=DIR", field="base_model",
                              hint="e.g. --base-model tiny-llama=/models/tiny-llama")
        models[name] = path
    return Settings.from_env(
        concurrency=concurrency, base_models=models, allow_local_paths=allow_local_paths,
        stale_after_seconds=stale_after, threads_per_job=threads_per_job, database_url=database_url or None,
        home=home or None, max_upload_bytes=int(max_upload_mb * 2**20) if max_upload_mb else None)


DB = typer.Option(None, "--database-url", help="sqlite:///PATH or postgresql://... (default: TUNEFORGE_DATABASE_URL, "
                  "else a SQLite file under TUNEFORGE_HOME).")
HOME = typer.Option(None, "--home", help="TUNEFORGE_HOME: artifacts and run directories.")
MODELS = typer.Option([], "--base-model", help="NAME=DIR: a base model jobs may name (repeatable).")
STALE = typer.Option(30.0, "--stale-after", help="Seconds without a heartbeat before a job is requeued.")
THREADS = typer.Option(0, "--threads-per-job", help="torch CPU threads of each job (0: CPU cores / concurrency).")


def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    concurrency: int = typer.Option(1, help="Jobs the embedded worker runs at once (0: API only)."),
    database_url: Optional[str] = DB,
    home: Optional[str] = HOME,
    base_model: list[str] = MODELS,
    allow_local_paths: bool = typer.Option(False, help="Accept local model directories as 'model'."),
    max_upload_mb: float = typer.Option(512.0, help="Largest accepted upload in MiB (larger: 413)."),
    stale_after: float = STALE,
    threads_per_job: int = THREADS,
) -> None:
    """Start the API (OpenAI-compatible /v1 and the native /api/v1) with an embedded worker pool."""
    from tuneforge.api.app import serve

    settings = _settings(database_url, home, concurrency, base_model, allow_local_paths, max_upload_mb, stale_after,
                         threads_per_job)
    console.print(f"tuneforge server on http://{host}:{port} (docs: /docs), database {_safe(settings.database_url)}")
    serve(settings, host=host, port=port)


def worker(
    concurrency: int = typer.Option(1, help="Jobs this worker runs at once."),
    database_url: Optional[str] = DB,
    home: Optional[str] = HOME,
    base_model: list[str] = MODELS,
    stale_after: float = STALE,
    threads_per_job: int = THREADS,
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPU indices this worker hands out, e.g. 0,1,2,3: each "
                                       "job gets its own (a train job with tuneforge.nproc N gets N) as "
                                       "CUDA_VISIBLE_DEVICES."),
) -> None:
    """Run jobs from the shared queue (on another machine: a PostgreSQL database and a shared TUNEFORGE_HOME)."""
    from tuneforge.services.workers import make_worker

    settings = _settings(database_url, home, concurrency, base_model, stale_after=stale_after,
                         threads_per_job=threads_per_job)
    devices = [item.strip() for item in (gpus or "").split(",") if item.strip()]
    pool = make_worker(settings, name="worker", gpus=devices)
    signal.signal(signal.SIGTERM, lambda *_: pool.stop())
    console.print(f"worker {pool.id}: {concurrency} job(s) at once, database {_safe(settings.database_url)}")
    try:
        pool.run()
    except KeyboardInterrupt:
        pool.stop()


@keys_app.command("create")
def keys_create(
    project: str = typer.Option(..., "--project", help="The project the key acts for."),
    database_url: Optional[str] = DB,
) -> None:
    """Create an API key; it is printed once (only its hash is stored)."""
    from tuneforge.services.platform import create_api_key, open_platform
    from tuneforge.settings import Settings

    platform = open_platform(Settings.from_env(database_url=database_url or None))
    try:
        key = create_api_key(platform, project=project)
    finally:
        platform.close()
    print(key)


def _safe(url: str) -> str:
    """A database URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
