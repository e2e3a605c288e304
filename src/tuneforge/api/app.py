"""The app factory: routers, the error handler, and the embedded worker pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from tuneforge.settings import Settings

if TYPE_CHECKING:
    from tuneforge.serving.config import ServingConfig


def create_app(settings: Settings | None = None, *, workers: int = 1, serving: ServingConfig | None = None) -> FastAPI:
    """The tuneforge API.

    Args:
        settings: Database, home, limits and the embedded pool's concurrency (default: from the environment).
        workers: Embedded workers (each runs ``settings.concurrency`` jobs); 0 serves the API only.
        serving: The inference server's engine, batching and served names (default: torch, load on first use).
    """
    from tuneforge import __version__
    from tuneforge.api import errors, operations
    from tuneforge.api.native import compressions, evaluations, fine_tuning, registry
    from tuneforge.api.native import data as native_data
    from tuneforge.api.native import hpo as hpo_routes
    from tuneforge.api.native import admin
    from tuneforge.api.openai import files, inference, jobs, models
    from tuneforge.api.redact import RedactPaths
    from tuneforge.settings import quiet_environment

    settings = settings or Settings.from_env()
    quiet_environment()  # job processes inherit it: offline, no library progress bars in the server's log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import threading

        from tuneforge.services.alerts import start_platform_monitor
        from tuneforge.services.disk import remove_stale_uploads
        from tuneforge.services.platform import open_platform
        from tuneforge.services.serving import open_model_server, preload
        from tuneforge.services.workers import start_workers

        app.state.platform = open_platform(settings)
        remove_stale_uploads(app.state.platform)  # what a crash left half-received
        app.state.serving = open_model_server(serving)
        preload(app.state.platform, app.state.serving)  # what 'tuneforge serve' names is ready before requests
        from tuneforge.services.traffic import RequestLog

        app.state.request_log = RequestLog(app.state.platform.store, keep_text=app.state.serving.config.log_requests)
        app.state.workers = start_workers(settings, count=workers if settings.concurrency else 0)
        monitor_stop = threading.Event()  # the platform checks (stalled jobs, free disk): services.alerts
        start_platform_monitor(app.state.platform.store, settings, stop=monitor_stop)
        try:
            yield
        finally:
            monitor_stop.set()
            for worker, thread in app.state.workers:
                worker.stop()
            for worker, thread in app.state.workers:
                thread.join(timeout=30)
            app.state.serving.close()
            app.state.request_log.close()  # writes what is queued
            app.state.platform.close()

    app = FastAPI(title="tuneforge", version=__version__, lifespan=lifespan,
                  description="Fine-tuning, evaluation and compression jobs on your own hardware: OpenAI-compatible "
                  "routes under /v1, the native API under /api/v1. Send 'Authorization: Bearer KEY'.")
    errors.install(app)
    app.add_middleware(RedactPaths, settings=settings)  # the server's paths never reach a client
    for module in (operations, files, jobs, models, inference, fine_tuning, evaluations, compressions, admin, registry, native_data):
        app.include_router(module.router)
    app.include_router(hpo_routes.router)
    app.include_router(hpo_routes.trials_router)
    from tuneforge.api.native import updates

    app.include_router(updates.router)  # incremental update cycles (serve_update jobs)
    from tuneforge.api import console

    console.install(app)  # the web console at /ui
    return app


def serve(settings: Settings, *, host: str, port: int, workers: int = 1, serving: ServingConfig | None = None) -> None:
    """Run the API with its embedded workers under uvicorn until interrupted (``tuneforge server`` and, with
    ``workers=0`` and the models to serve, ``tuneforge serve``)."""
    import uvicorn

    uvicorn.run(create_app(settings, workers=workers, serving=serving), host=host, port=port, log_level="info")
