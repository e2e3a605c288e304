"""``POST /v1/chat/completions`` and ``POST /v1/completions``: OpenAI's shapes, streamed as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tuneforge.api import deps
from tuneforge.api.errors import STATUS
from tuneforge.api.openai.inference_protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from tuneforge.errors import TuneforgeError
from tuneforge.services import serving, traffic
from tuneforge.services.serving import Choice, Generation

router = APIRouter(prefix="/v1", tags=["inference (OpenAI)"])
FINGERPRINT = "tuneforge-torch"
VERSION_HEADER = "x-tuneforge-model-version"  # the registry version that answered (an A/B split's variant)


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, response: Response,
                           project: str = Depends(deps.project)) -> Any:
    """Answer a conversation (``stream: true`` for server-sent events)."""
    messages = [m.plain() for m in body.messages]
    generation = await _start(request, body, project=project, messages=messages, max_tokens=body.limit)
    if body.stream:
        return _sse(chat_chunks(generation, include_usage=body.include_usage), generation)
    response.headers[VERSION_HEADER] = generation.answered_by
    choices = await serving.collect(generation)
    return {**_head(generation, "chat.completion"), "choices": [
        {"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None},
         "finish_reason": c.finish_reason, "logprobs": None} for i, c in enumerate(choices)],
        "usage": _usage(generation, choices)}


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request, response: Response,
                      project: str = Depends(deps.project)) -> Any:
    """Continue a prompt (``stream: true`` for server-sent events)."""
    generation = await _start(request, body, project=project, prompts=body.prompts, max_tokens=body.max_tokens)
    if body.stream:
        return _sse(completion_chunks(generation, include_usage=body.include_usage), generation)
    response.headers[VERSION_HEADER] = generation.answered_by
    choices = await serving.collect(generation)
    return {**_head(generation, "text_completion"), "choices": [
        {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
        for i, c in enumerate(choices)], "usage": _usage(generation, choices)}


async def _start(request: Request, body: SamplingFields, *, project: str, **prompt: Any) -> Generation:
    loop = asyncio.get_running_loop()
    # resolution reads the store and may load a model: off the event loop
    return await run_in_threadpool(
        lambda: serving.start_generation(request.app.state.platform, request.app.state.serving, project=project,
                                         model=body.model, sampling=body.sampling(), n=body.n, loop=loop,
                                         user=body.user, log=getattr(request.app.state, "request_log", None),
                                         **prompt))


def _head(generation: Generation, kind: str) -> dict[str, Any]:
    return {"id": generation.id, "object": kind, "created": generation.created, "model": generation.answered_by,
            "system_fingerprint": FINGERPRINT}


def _usage(generation: Generation, choices: list[Choice]) -> dict[str, int]:
    completion = sum(c.tokens for c in choices)
    return {"prompt_tokens": generation.prompt_tokens, "completion_tokens": completion,
            "total_tokens": generation.prompt_tokens + completion}


def _sse(events: AsyncIterator[dict[str, Any]], generation: Generation) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", VERSION_HEADER: generation.answered_by})


async def chat_chunks(generation: Generation, *, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """``chat.completion.chunk`` events: the role first, then content deltas, then each finish_reason."""
    head = {**_head(generation, "chat.completion.chunk"), **({"usage": None} if include_usage else {})}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    for index in range(len(generation.streams)):
        yield chunk(index, {"role": "assistant", "content": ""})
    async for event in _pieces(generation, include_usage=include_usage):
        if "error" in event:
            yield event
        elif "usage" in event:
            yield {**head, "choices": [], "usage": event["usage"]}
        elif event["text"]:
            yield chunk(event["index"], {"content": event["text"]}, None)
        if event.get("finish_reason"):
            yield chunk(event["index"], {}, event["finish_reason"])


async def completion_chunks(generation: Generation, *, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """``text_completion`` events, one per delta."""
    head = {**_head(generation, "text_completion"), **({"usage": None} if include_usage else {})}
    async for event in _pieces(generation, include_usage=include_usage):
        if "error" in event:
            yield event
        elif "usage" in event:
            yield {**head, "choices": [], "usage": event["usage"]}
        elif event["text"] or event["finish_reason"]:
            yield {**head, "choices": [{"index": event["index"], "text": event["text"], "logprobs": None,
                                        "finish_reason": event["finish_reason"]}]}


async def _pieces(generation: Generation, *, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """Deltas as ``{index, text, finish_reason}``, a ``{usage}`` last when asked; an error as OpenAI's event."""
    tokens, texts = [0] * len(generation.streams), [""] * len(generation.streams)
    status = "cancelled"  # unless it ends: the client went away (the engine then drops its sequences)
    try:
        async for index, delta in serving.deltas(generation):
            tokens[index], texts[index] = delta.tokens, texts[index] + delta.text
            yield {"index": index, "text": delta.text, "finish_reason": delta.finish_reason}
        status = "ok"
        if include_usage:
            choices = [Choice(tokens=t) for t in tokens]
            yield {"usage": _usage(generation, choices)}
    except TuneforgeError as exc:  # after the headers: the error travels as an event, as OpenAI sends it
        status = "error"
        yield {"error": _error_body(exc)}
    except Exception:  # noqa: BLE001 - a bug: logged by the engine; the client gets a server error event
        status = "error"
        yield {"error": {"message": "internal server error", "type": "server_error", "param": None, "code": None}}
    finally:
        serving.record_request(generation, status=status, tokens=sum(tokens), answer=texts[0] if texts else None)


def _error_body(exc: TuneforgeError) -> dict[str, Any]:
    _, type_, code = next((s, t, c) for cls, s, t, c in STATUS if isinstance(exc, cls))
    return {"message": exc.message, "type": type_, "param": getattr(exc, "field", None),
            "code": getattr(exc, "code", None) or code}


class FeedbackRequest(BaseModel):
    """A score for a response this server returned."""

    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(max_length=256, description="The response's id (chatcmpl-... or cmpl-...).")
    score: float | str | bool = Field(description="'up' / 'down' (thumbs) or a number.")
    correction: str | None = Field(None, max_length=100_000, description="A corrected answer (becomes training "
                                   "data: 'tuneforge data collect --from-traffic').")


@router.post("/feedback")
async def feedback(body: FeedbackRequest, request: Request, project: str = Depends(deps.project)) -> dict[str, Any]:
    """Record feedback on a response of this project (404 for an unknown id)."""
    record = await run_in_threadpool(
        lambda: traffic.record_feedback(request.app.state.platform, body.response_id, project=project, score=body.score,
                                        correction=body.correction,
                                        log_queue=getattr(request.app.state, "request_log", None)))
    return {"id": record.id, "object": "feedback", "response_id": record.request_id, "score": record.score,
            "label": record.label, "correction": record.correction, "created_at": record.created_at}
