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
HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
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


@router.get("/login", response_class=HTMLResponse)
def login(request: Request) -> HTMLResponse:
    """Ask for the project's API key."""
    return page(request, "login", title="Log in", section="")


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    """Every job: live status, progress, ETA, queue position; cancel, pause, resume."""
    return page(request, "jobs", title="Jobs", section="jobs")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    """One job: curves, events, checkpoints, config, results."""
    return page(request, "job", title=job_id, section="jobs", job_id=job_id)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request) -> HTMLResponse:
    """Runs side by side (``?job=A&job=B``)."""
    return page(request, "compare", title="Compare runs", section="compare")


@router.get("/studies", response_class=HTMLResponse)
def studies_page(request: Request) -> HTMLResponse:
    """Hyperparameter studies arrive with ``tuneforge tune``."""
    return page(request, "studies", title="Studies", section="studies")


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> HTMLResponse:
    """Registered models."""
    return page(request, "models", title="Models", section="models")


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str) -> HTMLResponse:
    """A registered model: versions, aliases and their history, lineage; deploy and roll back."""
    return page(request, "model", title=name, section="models", name=name)


@router.get("/data", response_class=HTMLResponse)
def datasets_page(request: Request) -> HTMLResponse:
    """Versioned data sets."""
    return page(request, "datasets", title="Datasets", section="data")


@router.get("/data/{name}", response_class=HTMLResponse)
def dataset_page(request: Request, name: str) -> HTMLResponse:
    """A data set: versions, quality report, record browser."""
    return page(request, "dataset", title=name, section="data", name=name)


@router.get("/annotate/{ref}", response_class=HTMLResponse)
def annotate_page(request: Request, ref: str) -> HTMLResponse:
    """Review the records of a version one by one."""
    return page(request, "annotate", title=f"Annotate {ref}", section="data", ref=ref)
