"""``/ui/...``: the console's HTML pages, shells that their scripts fill from the JSON routes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from tuneforge.api.console import HERE

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")
NAV = [("jobs", "Jobs"), ("compare", "Compare"), ("studies", "Studies"), ("models", "Models"), ("data", "Datasets")]
# Scripts only from this server, no inline script; frames and referrers off (the key never leaves the tab).
HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
           "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
           "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def page(request: Request, template: str, /, *, title: str, section: str, **params: str) -> HTMLResponse:
    """Render ``templates/TEMPLATE.html`` with the navigation and the page's parameters (data attributes)."""
    return templates.TemplateResponse(request, f"{template}.html", {"title": title, "nav": NAV, "section": section,
                                                                    "page": template, "params": params},
                                      headers=HEADERS)


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    """The jobs page."""
    return RedirectResponse("/ui/jobs")


# path, template, title (path parameters in braces), the navigation entry it belongs to
PAGES = [
    ("/login", "login", "Log in", ""),                             # ask for the project's API key
    ("/jobs", "jobs", "Jobs", "jobs"),                             # live status, progress, ETA, queue; controls
    ("/jobs/{job_id}", "job", "{job_id}", "jobs"),                 # curves, events, checkpoints, config, results
    ("/compare", "compare", "Compare runs", "compare"),            # ?job=A&job=B: curves overlaid, verdict
    ("/studies", "studies", "Studies", "studies"),                 # hyperparameter studies: counts, best
    ("/studies/{name}", "study", "Study {name}", "studies"),       # trials, history, importances, curves
    ("/models", "models", "Models", "models"),                     # registered models
    ("/models/{name}", "model", "{name}", "models"),               # versions, aliases, history, lineage; deploy
    ("/data", "datasets", "Datasets", "data"),                     # versioned data sets
    ("/data/{name}", "dataset", "{name}", "data"),                 # versions, quality report, record browser
    ("/annotate/{ref}", "annotate", "Annotate {ref}", "data"),     # review the records of a version one by one
]


def _add_page(path: str, template: str, title: str, section: str) -> None:
    def show(request: Request) -> HTMLResponse:
        params = dict(request.path_params)
        return page(request, template, title=title.format(**params), section=section, **params)

    show.__doc__ = f"The console's {template} page."
    router.add_api_route(path, show, methods=["GET"], response_class=HTMLResponse, name=f"console_{template}")


for _row in PAGES:
    _add_page(*_row)
