"""``train.speed`` applied: frozen weights in the compute dtype, the label-only loss, seeded length grouping,
padding-free batches, compile.

Each switch is documented in :class:`tuneforge.config.speed.SpeedSettings`; the figures behind its default are in
README "Training speed".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import DataCollatorWithFlattening, Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import has_length

from tuneforge.training.activation_memory import use_lean_blocks
from tuneforge.training.balance import BalancedBatchSampler, example_lengths
from tuneforge.training.distributed import any_process
from tuneforge.training.loss import label_mask, linear_cross_entropy
from tuneforge.training.speed_kernels import (
    AdapterInputsInComputeDtype, attention_in_fp32, use_compact_dropout, use_fp32_attention, use_fused_lora,
    use_packed_dropout, use_scale_at_rank,
)

if TYPE_CHECKING:
    from tuneforge.config.speed import SpeedSettings
    from tuneforge.training.precision import Precision

LM_TASKS = ("sft", "pretrain")  # tasks whose loss is next-token cross-entropy over `labels`


def frozen_weights_dtype(speed: SpeedSettings, precision: Precision) -> torch.dtype | None:
    """The dtype to store frozen base weights in, or None to leave them fp32."""
    wanted = speed.frozen_weights_dtype
    if wanted == "fp32" or precision.name == "fp32":
        return None
    return precision.compute_dtype


def cast_frozen_weights(model: torch.nn.Module, dtype: torch.dtype, *, everything: bool = False) -> int:
    """Store the frozen fp32 weights and biases of ``nn.Linear`` layers (``everything``: of every layer) in
    ``dtype``; adapters stay fp32.

    Without ``everything``, weights shared with the input embeddings (a tied LM head) stay fp32 so that the
    residual stream keeps fp32.

    Returns:
        How many parameters were cast.
    """
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    tied = {id(p) for p in embeddings.parameters()} if embeddings is not None and not everything else set()
    cast = 0
    for module in model.modules():
        if not (everything or isinstance(module, torch.nn.Linear)):
            continue
        for param in module.parameters(recurse=False):
            if not param.requires_grad and param.dtype == torch.float32 and id(param) not in tied:
                param.data = param.data.to(dtype)
                cast += param.numel()
    return cast


def prepare_for_speed(model: Any, speed: SpeedSettings, *, precision: Precision, trains_adapter: bool,
                      gathers_per_module: bool = False) -> Any:
    """Apply the model-side switches (frozen weights dtype, fp32 attention, packed dropout, compile) to a prepared
    model; returns it.

    ``gathers_per_module``: parameters are gathered when their own module is called (DeepSpeed ZeRO-3 on several
    processes), so the switches whose LoRA layers read their sub-layers' weights directly (``compact_dropout``,
    ``fused_lora``) step aside.
    """
    dtype = frozen_weights_dtype(speed, precision)
    if dtype is not None and trains_adapter:
        # quantized bases keep PEFT's fp32 norms and embeddings (prepare_model_for_kbit_training) under 'auto'
        everything = speed.frozen_weights_dtype == "compute_all" or (
            speed.frozen_weights_dtype == "auto" and getattr(causal_lm_of(model), "hf_quantizer", None) is None)
        cast_frozen_weights(model, dtype, everything=everything)
    if attention_in_fp32(speed, precision):
        use_fp32_attention(causal_lm_of(model), compact=speed.compact_attention)
    if speed.packed_dropout and trains_adapter:
        use_packed_dropout(model)
    if speed.lora_scale_at_rank and trains_adapter:
        use_scale_at_rank(model)
    if speed.compact_dropout and trains_adapter and not gathers_per_module:
        use_compact_dropout(model)
    if speed.fused_lora and speed.lora_scale_at_rank and trains_adapter and not gathers_per_module:
        use_fused_lora(model)
    if speed.lean_blocks:
        use_lean_blocks(model)
    if speed.compile:
        decoder_body(model).compile()  # in place: the plain and the label-only path both call it
    return model


def speed_callbacks(model: Any, speed: SpeedSettings, *, precision: Precision) -> list[Any]:
    """Trainer callbacks of the speed switches (adapter inputs kept in the compute dtype while training)."""
    if speed.adapter_inputs_in_compute_dtype and precision.name != "fp32" and hasattr(model, "peft_config"):
        return [AdapterInputsInComputeDtype(model)]
    return []


def speed_arguments(speed: SpeedSettings, *, task: str) -> dict[str, Any]:
    """``TrainingArguments`` keywords of the speed switches."""
    lm = task in LM_TASKS  # other tasks' data (pairs, TRL columns) keep the Trainer's sampler
    grouped = lm and speed.group_by_length and not speed.padding_free
    return {"train_sampling_strategy": "group_by_length"} if grouped else {}


def lm_collator(speed: SpeedSettings, tokenizer: Any) -> Any:
    """The batch collator of causal-LM training: flattening (padding-free) or padding with labels -100."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if speed.padding_free:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)


def causal_lm_of(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or ``model`` itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_body(model: Any) -> torch.nn.Module:
    """The decoder without its LM head (``LlamaModel`` of a ``LlamaForCausalLM``), through a PEFT wrapper."""
    causal_lm = causal_lm_of(model)
    return getattr(causal_lm, causal_lm.base_model_prefix)


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped sampler with its shuffle drawn from ``seed + epoch`` (a ``torch.Generator``).

    transformers' own draws from the global RNG, whose state at the start of an epoch differs between a run and
    the same run resumed from a checkpoint; here an epoch's order depends on the seed and the epoch only.
    """

    def __init__(self, *args: Any, seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's data loader at the start of each epoch."""
        self.epoch = epoch

    def __iter__(self) -> Any:
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class LengthGroupedTrainer(Trainer):
    """transformers' Trainer whose length-grouped training batches are seeded (resume-exact), whose global batches
    are split across processes by cost (``balance_processes``: :mod:`.balance`), and which counts each process's
    tokens (``process_tokens``: real, padded and label tokens, for the run summary)."""

    def __init__(self, *args: Any, balance_processes: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.balance_processes = balance_processes
        self._padded_tokens, self._tokens, self._labels = 0, torch.zeros((), dtype=torch.int64), torch.zeros(())
        # a training.step_timing.StepTimer among the callbacks times each step (instrumentation, off by default)
        self.step_timer = next((c for c in self.callback_handler.callbacks if hasattr(c, "time_training_step")), None)

    @property
    def process_tokens(self) -> dict[str, int]:
        """This process's training tokens so far: ``tokens`` (not padding), ``padded_tokens`` (computed on) and
        ``label_tokens`` (carrying the loss)."""
        return {"tokens": int(self._tokens), "padded_tokens": self._padded_tokens, "label_tokens": int(self._labels)}

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if dataset is None or not has_length(dataset):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        if self.args.train_sampling_strategy == "group_by_length":
            return SeededLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                              dataset=dataset, model_input_name="input_ids", seed=seed)
        if self.balance_processes and self.args.world_size > 1 and self.args.train_sampling_strategy == "random":
            return BalancedBatchSampler(
                lengths=example_lengths(dataset), batch_size=self.args.per_device_train_batch_size,
                processes=self.args.world_size, rank=self.args.process_index,
                grad_accum=self.args.gradient_accumulation_steps, seed=seed,
                padded=not isinstance(self.data_collator, DataCollatorWithFlattening))
        return super()._get_train_sampler(train_dataset)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """transformers' step; counts this process's tokens first (timed when a StepTimer is among the callbacks)."""
        self._count_tokens(inputs)
        step = super().training_step
        if self.step_timer is None:
            return step(model, inputs, num_items_in_batch)
        return self.step_timer.time_training_step(model, inputs, lambda: step(model, inputs, num_items_in_batch))

    def _count_tokens(self, inputs: dict[str, Any]) -> None:
        if "input_ids" not in inputs:
            return
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        self._padded_tokens += ids.numel()
        self._tokens = (mask.sum() if mask is not None else ids.numel()) + self._tokens  # on the device: no sync
        if "labels" in inputs or "shift_labels" in inputs:
            self._labels = label_mask(inputs)[0].sum() + self._labels


class LabelOnlyLossTrainer(LengthGroupedTrainer):
    """transformers' Trainer whose training loss is computed on label positions only (:mod:`.loss`).

    The forward goes through the model the Trainer holds (under DDP its wrapper, whose forward sets up the gradient
    all-reduce): :func:`label_states` asks the model for the logits at the label positions only
    (``logits_to_keep``) and takes the hidden states on their way into the LM head, which then runs on none of
    them; the chunked head + cross-entropy follow. The first training batch checks that this gives the model's
    logits (no soft-capping or scaling after the head; a model that takes ``logits_to_keep``), on every process; a
    model that fails the check, or a backend where the head's weights are not kept from the forward to the backward
    (:meth:`_path_supported`), trains on the plain path.
    """

    def __init__(self, *args: Any, loss_chunk_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_chunk_size = loss_chunk_size
        self.label_only: bool | None = None  # decided on the first training batch

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The label-only loss while training; the plain path for evaluation and unsupported models."""
        if return_outputs or not model.training or "labels" not in inputs or not self._use_label_only(model, inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        head = causal_lm_of(self.accelerator.unwrap_model(model)).get_output_embeddings()
        with self.accelerator.autocast():
            logits, states, targets = label_states(model, inputs, head=head)
            loss = linear_cross_entropy(states, head, targets, chunk=self.loss_chunk_size,
                                        smoothing=self.args.label_smoothing_factor)
        # the model's output (logits of no position) stays in the graph: DDP's static graph and unused-parameter
        # search start from the forward's outputs
        loss = loss + logits.sum() * 0
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else max(len(targets), 1))
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as the plain path: the divisor counts every process
        return loss

    def _use_label_only(self, model: Any, inputs: dict[str, Any]) -> bool:
        if self.label_only is None:
            bare = self.accelerator.unwrap_model(model)
            with self.accelerator.autocast():  # no collective of DDP's wrapper runs (FSDP's gather on every process)
                works = self._path_supported(bare) and head_matches_logits(bare, inputs)
            self.label_only = not any_process(not works)  # every process takes the same path
        return self.label_only

    def _path_supported(self, model: Any) -> bool:
        """DDP: yes. FSDP2: with a frozen head (its root keeps the gathered weights from the forward to the backward;
        a trained head's gradient, outside the forward, is not tested). DeepSpeed: no (ZeRO-3 frees the gathered
        weights after the forward)."""
        if self.is_deepspeed_enabled:
            return False
        head = causal_lm_of(model).get_output_embeddings()
        return not (self.is_fsdp_enabled and head is not None and any(p.requires_grad for p in head.parameters()))


def label_states(model: Any, inputs: dict[str, Any], *, head: torch.nn.Module,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` (wrapped or not) on a batch, keeping the input of its LM head ``head`` at the label positions.

    The model is called with ``logits_to_keep`` = the label mask (transformers slices the hidden states to those
    positions before the head); a forward pre-hook on the head takes them and gives the head none, so no logits
    are computed.

    Returns:
        The model's logits (of no position), the ``[N, d]`` hidden states at the label positions, the ``[N]``
        labels.
    """
    keep, targets = label_mask(inputs)
    features = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
    taken: list[torch.Tensor] = []

    def take(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        taken.append(args[0])
        return (args[0][:0], *args[1:])

    hook = head.register_forward_pre_hook(take)
    try:
        logits = model(**features, logits_to_keep=keep, use_cache=False).logits
    finally:
        hook.remove()
    if len(taken) != 1 or taken[0].shape[:-1] != targets.shape:
        raise ValueError("the model does not take a boolean logits_to_keep")  # caught by head_matches_logits
    return logits, taken[0], targets


def head_matches_logits(model: Any, inputs: dict[str, Any]) -> bool:
    """Whether the head applied to :func:`label_states` equals the model's logits at the label positions, on the
    first example of a batch (eval mode, no gradient)."""
    one = {k: v[:1] for k, v in inputs.items()}
    causal_lm = causal_lm_of(model)
    if causal_lm.get_output_embeddings() is None:  # no separate LM head to take the input of
        return False
    if getattr(causal_lm.config, "output_router_logits", False):  # MoE auxiliary loss rides on the model's loss
        return False
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):  # virtual tokens are added by the PEFT wrapper's forward
        return False
    features = {k: v for k, v in one.items() if k not in ("labels", "shift_labels")}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**features, use_cache=False).logits.float()
            _, states, _ = label_states(model, one, head=causal_lm.get_output_embeddings())
            again = causal_lm.get_output_embeddings()(states).float()
    except (ValueError, TypeError, IndexError, RuntimeError):
        return False
    finally:
        model.train(was_training)
    expected = logits[label_mask(one)[0]]
    return expected.shape == again.shape and torch.allclose(expected, again, rtol=1e-2, atol=1e-2)
