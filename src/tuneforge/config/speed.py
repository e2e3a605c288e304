"""``train.speed``: the switches that make a training step cheaper, each with the default that measured best.

Figures behind the defaults (SmolLM2-135M, LoRA r16, batch 8, the quickstart data) are in README "Training
speed" and ``benchmarks/train_throughput.py --compare-reference``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.config.base import StrictModel


class SpeedSettings(StrictModel):
    """Speed and memory switches of a training run (CPU and CUDA share the defaults unless a field says)."""

    frozen_weights_dtype: Literal["auto", "fp32", "compute", "compute_all"] = Field(
        "auto",
        description="Storage dtype of the frozen base weights (LoRA-family methods): 'compute' keeps the Linear "
        "weights in the mixed-precision dtype (bf16/fp16) instead of fp32 re-cast by autocast at every step; "
        "'compute_all' also the embeddings and norms (the residual stream then runs in that dtype); adapters stay "
        "fp32. 'auto': 'compute_all' under bf16/fp16 mixed precision (measured: same step time and loss as "
        "'compute', 18% less peak memory), else fp32. A quantized (QLoRA) base keeps PEFT's fp32 norms and "
        "embeddings under 'auto'; 'compute_all' there measured 2,460 vs 3,260 MiB peak on SmolLM2 (4 steps).",
    )
    label_only_loss: bool = Field(
        True,
        description="Causal-LM tasks (sft, pretrain): compute the LM head and cross-entropy only at the positions that "
        "carry a label, in chunks, so the full [tokens, vocab] logits never exist (Liger's fused linear "
        "cross-entropy on CUDA when installed). Off: the model's own loss on full logits.",
    )
    loss_chunk_size: int = Field(
        512, ge=16, description="Label positions per chunk of the label-only loss (memory: a few chunk x vocab floats)."
    )
    group_by_length: bool = Field(
        False,
        description="Batch examples of similar length together (less padding; transformers' length-grouped sampler, "
        "its order drawn from the run's seed + the epoch, so a resumed run matches the uninterrupted one). Off by "
        "default, measured: on the quickstart data it cuts padding only from 3.7% to 0.9% of the tokens, and it "
        "draws another batch order than the plain sampler (small SmolLM2 runs' held-out exact match swings with "
        "the order: an adapter-merge test went from 7/8 to 4/8). Turn it on for data sets of mixed lengths.",
    )
    padding_free: bool = Field(
        False,
        description="Causal-LM tasks: concatenate a batch's examples into one sequence with per-example position ids "
        "(no padding; attention stays within each example: transformers' packed-sequence masks). Takes the place "
        "of group_by_length.",
    )
    balance_processes: bool = Field(
        True,
        description="Causal-LM tasks on several processes (DDP / FSDP / DeepSpeed): split each global batch across "
        "the processes by cost (padded tokens; tokens with padding_free) instead of by position, so that no process "
        "waits for another at the gradient all-reduce; the global batches are those of one process (the same seeded "
        "shuffle), so the loss curve matches one process. Processes may then hold different numbers of examples. "
        "Not with group_by_length (its own sampler).",
    )
    attention_dtype: Literal["auto", "compute", "fp32"] = Field(
        "auto",
        description="Dtype of the attention (SDPA) of models that use transformers' 'sdpa' attention: 'fp32' casts "
        "query, key and value to fp32 for the attention alone (more exact, not less). 'auto': fp32 on CPU under bf16 "
        "(measured: torch's CPU flash-attention kernel runs its bf16 backward 4-5x slower than fp32, 56 vs 11 ms a "
        "layer at batch 8 x 100 tokens: 19% of a SmolLM2 LoRA step), the compute dtype elsewhere.",
    )
    compact_attention: bool = Field(
        True,
        description="With the fp32 attention: its kernel's saved query, key, value (exact: they were cast up from "
        "the compute dtype) and output (rounded) wait for backward in the compute dtype, cast back to fp32 there. "
        "On SmolLM2 (batch 8 x 104 tokens): half of the attention's 230 MiB saved for backward, ~115 MiB fewer.",
    )
    adapter_inputs_in_compute_dtype: bool = Field(
        True,
        description="Under mixed precision, PEFT adapter layers take their input in the compute dtype instead of "
        "casting it to the adapter's fp32 weights (autocast casts it back for the matmul): the same numbers, two "
        "full-size copies fewer per adapter layer and step.",
    )
    packed_dropout: bool = Field(
        True,
        description="LoRA dropout (method.dropout, unchanged) draws its keep-masks from 16-bit slices of 64-bit "
        "random words, four decisions per draw, instead of torch's Bernoulli draw per element (measured: 2.3 vs "
        "6.7 ms per [8, 100, 1536] input; dropout masks were 16% of a SmolLM2 LoRA step); on CPU the words come from "
        "numpy's SFC64 generator seeded by torch's (314 vs 646 us per [8, 100, 576] input). Changes the math slightly: "
        "the keep probability is rounded to a multiple of 2^-16, and a seed draws other masks than torch.nn.Dropout.",
    )
    lora_scale_at_rank: bool = Field(
        True,
        description="Plain LoRA layers apply their scaling (alpha/r, and packed dropout's 1/(1-p)) to the rank-r "
        "state, B(A(x) * s), instead of the full-width output, B(A(x)) * s: the same product rounded elsewhere, two "
        "full-width passes fewer per adapter layer and step.",
    )
    compact_dropout: bool = Field(
        True,
        description="With packed_dropout and lora_scale_at_rank: each LoRA layer's dropout and A matmul save a "
        "one-byte keep-mask and the layer's input (one tensor for q/k/v, one for gate/up) for backward, instead of a "
        "16-bit mask and a dropped copy of the input; the copy is recomputed in backward. The same numbers; measured "
        "on SmolLM2 (batch 8 x 104 tokens): 193 of the step's 1,248 MiB saved for backward fewer, for ~4% more "
        "CPU time per step (2.50 -> 2.61 s forward + backward, one thread).",
    )
    fused_lora: bool = Field(
        True,
        description="With lora_scale_at_rank and a plain frozen base stored in the compute dtype: each LoRA layer's "
        "forward (base matmul, dropout, A, B) is one autograd node whose matmuls add the adapter's output and input "
        "gradient into the base's (addmm) instead of full-width adds; the same saved tensors as compact_dropout.",
    )
    lean_blocks: bool = Field(
        True,
        description="Llama-family models (Llama, Mistral, Qwen2/3): RMSNorm and the SiLU MLP's product as autograd "
        "functions that save the bf16 input and a per-row scale (RMSNorm) and the two factors (SiLU x up, the SiLU "
        "recomputed) for backward, instead of fp32 copies and the SiLU's output. Measured on SmolLM2 (batch 8 x "
        "104 tokens): 128 of the step's 1,248 MiB saved for backward fewer, for ~1% more CPU time per step.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the decoder in place (measured on CPU: compiling for each new batch shape took "
        "longer than the run saved; try it on long CUDA runs with padding_free off).",
    )
