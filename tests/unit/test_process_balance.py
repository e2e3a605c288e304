"""``train.speed.balance_processes``: each global batch is the one-process batch, split across processes by cost."""

from __future__ import annotations

import random
import statistics

import pytest

from tuneforge.training.balance import BalancedBatchSampler, group_cost


def lengths_between(low: int, high: int, count: int, *, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(count)]


def per_step(lengths: list[int], *, processes: int, batch_size: int, grad_accum: int = 1, seed: int = 7,
             epoch: int = 0) -> list[list[list[int]]]:
    """``[step][rank]`` -> the rank's indices of that optimizer step (its micro-batches concatenated)."""
    ranks = []
    for rank in range(processes):
        sampler = BalancedBatchSampler(lengths=lengths, batch_size=batch_size, processes=processes, rank=rank,
                                       grad_accum=grad_accum, seed=seed)
        sampler.set_epoch(epoch)
        micro = list(sampler)
        assert len(micro) == len(sampler)
        ranks.append([sum(micro[i:i + grad_accum], []) for i in range(0, len(micro), grad_accum)])
    return [list(step) for step in zip(*ranks)]


def one_process_batches(tiny_model, tmp_path, *, count: int, batch_size: int, seed: int, epoch: int) -> list[set[int]]:
    """The examples of each batch of a one-process run of the Trainer (accelerate's seeded shuffle)."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.speed import LengthGroupedTrainer

    dataset = Dataset.from_list([{"input_ids": [i] * (1 + i % 5)} for i in range(count)])
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch_size, seed=seed,
                             data_seed=seed, use_cpu=True, report_to=[], remove_unused_columns=False)
    trainer = LengthGroupedTrainer(model=load_causal_lm(tiny_model), args=args, train_dataset=dataset,
                                   data_collator=lambda rows: [row["input_ids"][0] for row in rows],
                                   balance_processes=True)
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    return [set(batch) for batch in loader]


@pytest.mark.parametrize("epoch", [0, 1])
def test_the_processes_together_take_the_one_process_batches(tiny_model, tmp_path, epoch):
    """The same seeded shuffle as a one-process run of the Trainer: each optimizer step's examples are its batch."""
    count, seed = 26, 3
    lengths = [1 + i % 5 for i in range(count)]
    one = one_process_batches(tiny_model, tmp_path, count=count, batch_size=8, seed=seed, epoch=epoch)
    steps = per_step(lengths, processes=2, batch_size=4, seed=seed, epoch=epoch)
    assert [set(step[0]) | set(step[1]) for step in steps] == one
    for step in steps:
        assert not set(step[0]) & set(step[1]) and all(step)


def test_accumulation_steps_and_a_short_last_batch_keep_every_example_once():
    lengths = lengths_between(10, 200, 40)
    steps = per_step(lengths, processes=2, batch_size=3, grad_accum=2)
    assert len(steps) == 4  # ceil(40 / 12): the last global batch holds 4, one per micro-batch
    assert sorted(i for step in steps for rank in step for i in rank) == list(range(40))
    tiny = per_step(lengths_between(10, 200, 9), processes=2, batch_size=2, grad_accum=2)  # 9 = 2 x 4 + 1
    assert all(len(rank) >= 2 for rank in tiny[-1])  # each of the 4 micro-batches gets an example (repeats)


def test_the_split_evens_the_padded_tokens_of_the_processes():
    """Against the positional split (accelerate: the r-th slice of the shuffle), on lengths 10-200."""
    lengths = lengths_between(10, 200, 400)
    sampler = BalancedBatchSampler(lengths=lengths, batch_size=4, processes=2, rank=0, grad_accum=1, seed=0)
    balanced, positional = [], []
    shuffle = list(sampler.sampler)  # epoch 0
    for step, ranks in enumerate(sampler.global_batches(epoch=0)):
        costs = [group_cost([lengths[i] for i in rank], padded=True) for rank in ranks]
        balanced.append(max(costs) / statistics.fmean(costs))
        order = [i for rank in ranks for i in rank]
        original = shuffle[8 * step:8 * step + 8]
        assert sorted(order) == sorted(original)
        costs = [group_cost([lengths[i] for i in original[k:k + 4]], padded=True) for k in (0, 4)]
        positional.append(max(costs) / statistics.fmean(costs))
    # the dearer process's padded tokens over the mean of the two: measured 1.046 against 1.098
    assert statistics.fmean(balanced) < min(1.05, statistics.fmean(positional) - 0.04)


def test_padding_free_batches_are_split_by_their_tokens():
    lengths = lengths_between(10, 200, 64, seed=1)
    sampler = BalancedBatchSampler(lengths=lengths, batch_size=4, processes=2, rank=0, grad_accum=1, seed=0,
                                   padded=False)
    spread = [abs(sum(lengths[i] for i in a) - sum(lengths[i] for i in b)) / sum(lengths[i] for i in a + b)
              for a, b in sampler.global_batches()]
    assert max(spread) < 0.1 and statistics.fmean(spread) < 0.05
