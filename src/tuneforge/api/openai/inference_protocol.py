"""The bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions`` (OpenAI's fields; a field
tuneforge cannot honour is refused with a 400 naming it, never silently ignored)."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


def refuse(value: Any, info: ValidationInfo) -> Any:
    """A field tuneforge accepts only when it asks for nothing (false, empty, absent)."""
    if value:
        raise ValueError(f"{info.field_name} is not supported by tuneforge's engines; leave it out")
    return value


class TextPart(BaseModel):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: str


class ChatMessage(BaseModel):
    """One message; extra fields of an assistant message echoed back (tool_calls: null, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"] = Field(description="developer is treated as system.")
    content: Union[str, list[TextPart], None] = Field(None, description="Text, or a list of text parts.")
    name: str | None = Field(None, description="Accepted, not used.")

    def plain(self) -> dict[str, str]:
        """``{role, content}`` as the chat template takes it."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(False, description="Send a last chunk with the usage.")


class SamplingFields(BaseModel):
    """The generation fields both routes share."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A base model, an ft: model of the project, or a name the server serves.")
    max_tokens: int | None = Field(None, ge=1, description="Longest answer in tokens.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 is greedy (default 1).")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass (default 1).")
    stop: Union[str, list[str], None] = Field(None, description="Up to 4 strings that end the answer.")
    seed: int | None = Field(None, description="Makes sampling repeatable.")
    n: int = Field(1, ge=1, le=16, description="Choices to generate.")
    stream: bool = Field(False, description="Send server-sent events as tokens come.")
    stream_options: StreamOptions | None = Field(None, description="include_usage: a last chunk with usage.")
    user: str | None = Field(None, max_length=256, description="An id of the end user: an A/B split of the model "
                             "assigns each user to one version (sticky).")
    presence_penalty: float | None = Field(None, description="Only 0 is supported.")
    frequency_penalty: float | None = Field(None, description="Only 0 is supported.")
    logprobs: Any = Field(None, description="Not supported (false or absent).")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: Any) -> Any:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("give at most 4 non-empty stop strings")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float | None) -> float | None:
        if value:
            raise ValueError("penalties are not supported by tuneforge's engines; leave it at 0")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse(value, info)

    def sampling(self) -> dict[str, Any]:
        """temperature, top_p, stop and seed as the engine takes them."""
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return {"temperature": 1.0 if self.temperature is None else self.temperature,
                "top_p": 1.0 if self.top_p is None else self.top_p, "stop": tuple(stops), "seed": self.seed}

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    """The body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Longest answer (max_tokens' new name).")

    @model_validator(mode="after")
    def _one_limit(self) -> ChatCompletionRequest:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        return self

    @property
    def limit(self) -> int | None:
        """The longest answer asked for."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(SamplingFields):
    """The body of ``POST /v1/completions``."""

    prompt: Union[str, list[str]] = Field(description="A prompt, or a list of prompts.")
    echo: bool = Field(False, description="Not supported (false).")
    suffix: str | None = Field(None, description="Not supported.")

    @field_validator("echo", "suffix")
    @classmethod
    def _unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse(value, info)

    @property
    def prompts(self) -> list[str]:
        """The prompts as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt
