"""``/v1/models``: base and fine-tuned models; delete a fine-tuned one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tuneforge.api import deps
from tuneforge.api.openai.objects import model_object
from tuneforge.services import catalog, serving
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/v1/models", tags=["models (OpenAI)"])


@router.get("")
def list_models(request: Request, platform: Platform = Depends(deps.platform),
                project: str = Depends(deps.project)) -> dict:
    """Base models of the server, the project's fine-tuned models and the names 'tuneforge serve' was given."""
    listed = serving.list_served_models(platform, request.app.state.serving, project=project)
    return {"object": "list", "data": [model_object(m) for m in listed]}


@router.get("/{model_id:path}")
def retrieve_model(model_id: str, request: Request, platform: Platform = Depends(deps.platform),
                   project: str = Depends(deps.project)) -> dict:
    """One model."""
    for model in serving.list_served_models(platform, request.app.state.serving, project=project):
        if model["id"] == model_id:
            return model_object(model)
    return model_object(catalog.get_model(platform, model_id, project=project))  # raises NotFoundError


@router.delete("/{model_id:path}")
def delete_model(model_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Delete a fine-tuned model and its weights."""
    record = catalog.delete_model(platform, model_id, project=project)
    return {"id": record.id, "object": "model", "deleted": True}
