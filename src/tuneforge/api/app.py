"""The app factory: routers, the error handler, and the embedded worker pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tuneforge.jobs.settings import PlatformSettings


def create_app(settings: PlatformSettings | None = None, *, workers: int = 1) -> FastAPI:
    """The tuneforge API.

    Args:
        settings: Database, home, limits and the embedded pool's concurrency.
        workers: Embedded workers (each runs ``settings.concurrency`` jobs); 0 serves the API only.
    """
    from tuneforge import __version__
    from tuneforge.api import errors
    from tuneforge.api.routers import files, health, jobs, models, native

    settings = settings or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from tuneforge.services.platform import open_platform

        app.state.platform = open_platform(settings)
        app.state.workers = start_workers(settings, count=workers if settings.concurrency else 0)
        try:
            yield
        finally:
            for worker, thread in app.state.workers:
                worker.stop()
            for worker, thread in app.state.workers:
                thread.join(timeout=30)
            app.state.platform.close()

    app = FastAPI(title="tuneforge", version=__version__, lifespan=lifespan,
                  description="Fine-tuning jobs on your own hardware: OpenAI-compatible routes under /v1, "
                  "the native API under /api/v1/fine-tuning. Send 'Authorization: Bearer KEY'.")
    errors.install(app)
    for module in (health, files, jobs, models, native):
        app.include_router(module.router)
    return app


def start_workers(settings: PlatformSettings, *, count: int) -> list[tuple[Any, Any]]:
    """Start ``count`` embedded workers in threads; their jobs run in their own processes."""
    from tuneforge.jobs.worker import Worker

    workers = [Worker(settings, name=f"server{i}") for i in range(count)]
    return [(worker, worker.start_thread()) for worker in workers]
