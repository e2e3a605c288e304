"""The web console at ``/ui``: static page shells (Jinja2 templates) whose ES-module scripts fetch the JSON
routes with the API key the user logged in with (kept in ``sessionStorage``, sent as the bearer header).

No page carries data: everything shown comes from authenticated JSON, so a page of another project's job
shows nothing but a 404 from its JSON.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

HERE = Path(__file__).parent


def install(app: FastAPI) -> None:
    """Add the console's pages (``/ui``), its JSON (``/ui/api``) and its static files (``/ui/static``)."""
    from fastapi.staticfiles import StaticFiles

    from tuneforge.api.console import pages, views

    app.include_router(pages.router)
    app.include_router(views.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")
