"""Each ``train.speed`` switch keeps the loss curve of the plain path on the same seed (tiny Llama, 8 steps)."""

from __future__ import annotations

import json

import pytest

from tuneforge.config import TrainConfig
from tuneforge.training import run_training

LORA = {"name": "lora", "dropout": 0.0}  # adapter dropout masks would depend on the order of rows in a batch
# Tolerances, relative to each logged loss after up to 8 steps: in fp32 the switches only reorder sums (over at
# most a few hundred label positions and a 1k vocabulary: ~ sqrt(n) * 1.2e-7 per sum, grown by training to the
# 1e-6 measured), so 1e-4; in bf16 (8-bit mantissa, 2^-8 = 0.4% per rounding) the plain bf16 path itself sits
# 0.6% from fp32 and the switches measured within 1%, so 3e-2.
FP32_REL, BF16_REL = 1e-4, 3e-2
# Dropout 0.1 on the adapters' inputs: two mask draws move the 8 logged losses apart by up to 4% (measured), 10%.
DROPOUT_REL = 0.1
PLAIN = {"frozen_weights_dtype": "fp32", "label_only_loss": False, "group_by_length": False, "padding_free": False,
         "attention_dtype": "compute", "adapter_inputs_in_compute_dtype": False, "packed_dropout": False,
         "lora_scale_at_rank": False, "compact_dropout": False, "fused_lora": False, "lean_blocks": False,
         "compact_attention": False}


def curve(model, data, out, settings, *, method=LORA, precision="fp32", **speed) -> list[float]:
    """The logged loss of 8 steps; one batch holds the 8 examples, so batching switches keep each step's data."""
    train = {"max_steps": 8, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 1, "precision": precision,
             "save_steps": 1000, "speed": {**PLAIN, **speed}}
    config = TrainConfig(model=str(model), method=method, data={"train": str(data)}, train=train, output_dir=str(out))
    run_training(config, settings=settings)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def count_calls(monkeypatch, module, name: str) -> list[int]:
    """Replaces ``module.name`` with a wrapper that appends to the returned list at each call."""
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture
def label_only_calls(monkeypatch):
    """Counts the training steps that took the label-only path (a failed head check would fall back silently)."""
    from tuneforge.training import speed

    return count_calls(monkeypatch, speed, "linear_cross_entropy")


@pytest.fixture(scope="module")
def plain_fp32(tiny_model, tmp_path_factory, settings):
    from fixtures.data import MEMORIZE, write_jsonl

    data = write_jsonl(tmp_path_factory.mktemp("speed-data") / "train.jsonl", MEMORIZE)
    return data, curve(tiny_model, data, tmp_path_factory.mktemp("plain") / "run", settings)


@pytest.mark.parametrize("speed", [{"label_only_loss": True, "loss_chunk_size": 16}, {"padding_free": True},
                                   {"group_by_length": True}, {"label_only_loss": True, "padding_free": True},
                                   {"lora_scale_at_rank": True}, {"lora_scale_at_rank": True, "fused_lora": True}])
def test_switch_keeps_the_fp32_loss_curve(speed, plain_fp32, tiny_model, tmp_path, settings, label_only_calls):
    data, expected = plain_fp32
    got = curve(tiny_model, data, tmp_path / "run", settings, **speed)
    assert len(label_only_calls) == (8 if speed.get("label_only_loss") else 0)
    assert len(got) == len(expected) == 8
    assert got == pytest.approx(expected, rel=FP32_REL)
    assert got[-1] < 0.7 * got[0]  # and it learns


def test_label_only_loss_trains_a_full_fine_tune_with_a_tied_head_like_the_plain_path(
        plain_fp32, tiny_model, tmp_path, settings, label_only_calls):
    data, _ = plain_fp32
    plain = curve(tiny_model, data, tmp_path / "plain", settings, method="full")
    got = curve(tiny_model, data, tmp_path / "run", settings, method="full", label_only_loss=True)
    assert len(label_only_calls) == 8
    assert got == pytest.approx(plain, rel=FP32_REL)


@pytest.fixture(scope="module")
def plain_bf16(plain_fp32, tiny_model, tmp_path_factory, settings):
    return curve(tiny_model, plain_fp32[0], tmp_path_factory.mktemp("plain-bf16") / "run", settings, precision="bf16")


@pytest.mark.parametrize("frozen", ["compute", "compute_all"])
def test_bf16_frozen_weights_and_label_only_loss_keep_the_bf16_curve(
        frozen, plain_fp32, plain_bf16, tiny_model, tmp_path, settings, label_only_calls):
    data, plain = plain_fp32[0], plain_bf16
    got = curve(tiny_model, data, tmp_path / "run", settings, precision="bf16", frozen_weights_dtype=frozen,
                label_only_loss=True)
    assert len(label_only_calls) == 8
    assert got == pytest.approx(plain, rel=BF16_REL)
    assert got[-1] < 0.7 * got[0]


def test_fp32_attention_and_bf16_adapter_inputs_keep_the_bf16_curve(
        plain_fp32, plain_bf16, tiny_model, tmp_path, settings, monkeypatch):
    from tuneforge.training import speed_kernels

    calls = count_calls(monkeypatch, speed_kernels, "sdpa_fp32_forward")
    got = curve(tiny_model, plain_fp32[0], tmp_path / "run", settings, precision="bf16",
                frozen_weights_dtype="compute_all", attention_dtype="fp32", adapter_inputs_in_compute_dtype=True,
                lora_scale_at_rank=True)
    assert len(calls) >= 8 * 2  # each step's forward, in each of the 2 layers
    assert got == pytest.approx(plain_bf16, rel=BF16_REL)
    assert got[-1] < 0.7 * got[0]


def test_lean_blocks_and_compact_attention_keep_the_bf16_curve(plain_fp32, plain_bf16, tiny_model, tmp_path,
                                                                settings):
    got = curve(tiny_model, plain_fp32[0], tmp_path / "run", settings, precision="bf16",
                frozen_weights_dtype="compute_all", attention_dtype="fp32", compact_attention=True, lean_blocks=True)
    assert got == pytest.approx(plain_bf16, rel=BF16_REL)
    assert got[-1] < 0.7 * got[0]


def test_packed_dropout_keeps_the_curve_of_torch_dropout(plain_fp32, tiny_model, tmp_path, settings):
    """Packed-bits masks are other draws than torch's: the curves differ by the draw, within DROPOUT_REL."""
    method = {"name": "lora", "dropout": 0.1}
    torch_dropout = curve(tiny_model, plain_fp32[0], tmp_path / "torch", settings, method=method)
    packed = curve(tiny_model, plain_fp32[0], tmp_path / "packed", settings, method=method, packed_dropout=True,
                   lora_scale_at_rank=True)
    assert packed != torch_dropout  # the switch took effect
    assert packed == pytest.approx(torch_dropout, rel=DROPOUT_REL)
    assert packed[-1] < 0.7 * packed[0]
    # the compact masks are the same draws, kept in one byte: the same curve (fp32 reorders nothing here)
    compact = curve(tiny_model, plain_fp32[0], tmp_path / "compact", settings, method=method, packed_dropout=True,
                    lora_scale_at_rank=True, compact_dropout=True)
    assert compact == pytest.approx(packed, rel=FP32_REL)


def test_fused_lora_keeps_the_bf16_curve_of_the_unfused_layers(plain_fp32, tiny_model, tmp_path, settings,
                                                               monkeypatch):
    """The same dropout draws (packed, compact) with the fused layer and without: bf16 rounding apart."""
    from tuneforge.training import speed_kernels
    from tuneforge.training.activation_memory import FusedLoraLinear

    calls = []

    class Counted(FusedLoraLinear):
        @staticmethod
        def forward(ctx, *args):  # noqa: ANN001, ANN002, ANN205
            calls.append(args[5] is not None)  # with a dropout mask
            return FusedLoraLinear.forward(ctx, *args)

    monkeypatch.setattr(speed_kernels, "FusedLoraLinear", Counted)
    common = {"method": {"name": "lora", "dropout": 0.1}, "precision": "bf16", "frozen_weights_dtype": "compute_all",
              "packed_dropout": True, "lora_scale_at_rank": True, "compact_dropout": True}
    unfused = curve(tiny_model, plain_fp32[0], tmp_path / "unfused", settings, **common)
    assert not calls
    fused = curve(tiny_model, plain_fp32[0], tmp_path / "fused", settings, fused_lora=True, **common)
    assert len(calls) >= 8 * 2 * 7 and all(calls)  # each step, each adapted layer of the 2 layers, masked
    assert fused == pytest.approx(unfused, rel=BF16_REL)
    assert fused[-1] < 0.7 * fused[0]


def test_length_grouped_run_stopped_and_resumed_ends_with_the_uninterrupted_adapter(tiny_model, tmp_path, settings):
    """group_by_length draws each epoch's order from seed + epoch: a resume mid-epoch replays the same batches."""
    import threading

    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from fixtures.data import write_jsonl
    from tuneforge.errors import Interrupted

    said = [" ".join(["word"] * n) for n in (1, 9, 3, 14, 6, 2, 11, 5)]
    rows = [{"messages": [{"role": "user", "content": f"Repeat: {s}"}, {"role": "assistant", "content": s}]}
            for s in said]
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)  # mixed lengths, so grouping changes the batches

    def config(out: str) -> TrainConfig:
        train = {"epochs": 3, "batch_size": 2, "learning_rate": 1e-2, "save_steps": 2, "save_total_limit": None,
                 "speed": {"group_by_length": True}}
        return TrainConfig(model=str(tiny_model), method="lora", data={"train": str(data)}, train=train,
                           output_dir=str(tmp_path / out))

    class StopAt(TrainerCallback):
        def __init__(self, stop: threading.Event) -> None:
            self.stop = stop

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201, D102
            if state.global_step == 6:  # the middle of the second epoch (4 steps an epoch)
                self.stop.set()

    run_training(config("straight"), settings=settings)
    stop = threading.Event()
    with pytest.raises(Interrupted):
        run_training(config("resumed"), settings=settings, stop=stop, extra_callbacks=[StopAt(stop)])
    run_training(config("resumed"), settings=settings, resume=True)
    straight, resumed = (load_file(tmp_path / run / "adapter" / "adapter_model.safetensors")
                         for run in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
