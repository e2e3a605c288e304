"""``train.speed`` pieces that need no training run: the seeded length-grouped sampler, where switches land."""

from __future__ import annotations

import torch

from tuneforge.training.speed import SeededLengthGroupedSampler


def order(sampler: SeededLengthGroupedSampler, *, epoch: int, global_seed: int) -> list[int]:
    torch.manual_seed(global_seed)  # a resumed run reaches an epoch with another global RNG state
    sampler.set_epoch(epoch)
    return list(sampler)


def test_length_grouped_order_depends_on_seed_and_epoch_only():
    lengths = [(i * 37) % 101 + 1 for i in range(64)]
    sampler = SeededLengthGroupedSampler(4, lengths=lengths, seed=7)
    first = order(sampler, epoch=0, global_seed=1)
    assert sorted(first) == list(range(64))
    assert order(sampler, epoch=0, global_seed=2) == first
    assert order(SeededLengthGroupedSampler(4, lengths=lengths, seed=7), epoch=0, global_seed=3) == first
    assert order(sampler, epoch=1, global_seed=1) != first
    assert order(SeededLengthGroupedSampler(4, lengths=lengths, seed=8), epoch=0, global_seed=1) != first


def test_length_grouped_batches_hold_similar_lengths():
    lengths = [(i * 37) % 101 + 1 for i in range(400)]
    sampler = SeededLengthGroupedSampler(8, lengths=lengths, seed=0)
    indices = order(sampler, epoch=0, global_seed=0)
    spread = [max(lengths[i] for i in indices[k:k + 8]) - min(lengths[i] for i in indices[k:k + 8])
              for k in range(0, 400, 8)]
    assert sum(spread) / len(spread) < 10  # random batches of 8 over 1..101 spread about 70


def test_speed_switches_reach_the_model_and_the_trainer_arguments(tiny_model):
    """compile marks the decoder body compiled (in place, compiled lazily); grouping is an LM-task sampler only."""
    from tuneforge.config.speed import SpeedSettings
    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.precision import Precision
    from tuneforge.training.speed import decoder_body, prepare_for_speed, speed_arguments

    fp32 = Precision(name="fp32", device="cpu")
    model = prepare_for_speed(load_causal_lm(tiny_model), SpeedSettings(compile=True), precision=fp32,
                              trains_adapter=False)
    assert decoder_body(model)._compiled_call_impl is not None
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # fp32 runs keep fp32 weights
    grouped = SpeedSettings(group_by_length=True)
    assert speed_arguments(grouped, task="sft") == {"train_sampling_strategy": "group_by_length"}
    assert speed_arguments(grouped, task="dpo") == {}
    assert speed_arguments(SpeedSettings(group_by_length=True, padding_free=True), task="sft") == {}
    assert speed_arguments(SpeedSettings(), task="sft") == {}  # off by default
