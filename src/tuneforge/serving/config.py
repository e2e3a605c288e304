"""The inference server's options and the sampling parameters of one request."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENGINES = ("torch", "llamacpp", "vllm")


class ServingConfig(BaseModel):
    """How the inference server batches and caches (``tuneforge serve`` flags; ``tuneforge server`` defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["torch", "llamacpp", "vllm"] = Field("torch", description="Inference engine: torch (transformers "
                                                         "+ PEFT), llamacpp (GGUF, the llamacpp extra) or vllm (GPU).")
    max_batch: int = Field(16, ge=1, le=512, description="Most sequences generated together in one batch.")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="How long the first request of a batch waits for "
                                 "others to join it (milliseconds).")
    adapter_cache: int = Field(8, ge=1, description="Adapters kept loaded per base model (least recently used "
                               "ones are dropped).")
    default_max_tokens: int = Field(256, ge=1, description="Longest answer when a request gives no max_tokens "
                                    "(never past the context).")
    models: dict[str, str] = Field(default_factory=dict, description="Names served to every project -> model "
                                   "reference (builtin alias, model directory, run or adapter directory).")
    threads: int = Field(0, ge=0, le=1024, description="CPU threads of the engines: torch's, or llama.cpp's (0: the "
                         "engine's default).")
    gguf_quantization: Literal["f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"] = Field(
        "q8_0", description="llamacpp engine: the GGUF type a base model folder is converted to (adapters stay "
        "full precision: llama.cpp applies them at run time).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="vllm engine: the weights' and activations' type (auto: vLLM's choice, bfloat16 for a "
        "float32 model on CPU; float32 gives the torch engine's numbers).")
    max_lora_rank: int = Field(16, ge=1, le=512, description="vllm engine: the largest LoRA rank served (vLLM "
                               "reserves every adapter slot at this rank; its CPU kernels copy the slot per token, "
                               "so a rank well over the adapters' costs time).")
    log_requests: bool = Field(False, description="Keep each request's prompt and answer in the request log (every "
                               "request's figures are logged anyway); 'tuneforge data collect --from-traffic' needs them.")


class SamplingParams(BaseModel):
    """How one sequence is generated (the engine's view of a request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(16, ge=1, description="Most new tokens.")
    temperature: float = Field(1.0, ge=0, le=2, description="0: greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    stop: tuple[str, ...] = Field((), description="Strings that end the answer (not included in it).")
    seed: int | None = Field(None, description="Seed of this sequence's sampler.")

    @property
    def greedy(self) -> bool:
        """True when sampling is argmax."""
        return self.temperature == 0
