"""Equal work per process: each global batch split across the processes by cost, not by position.

Under data parallelism each optimizer step ends in the gradient all-reduce, which waits for the slowest process. The
default split (accelerate's ``BatchSamplerShard``) gives process r the r-th slice of ``batch_size`` examples of the
shuffled order, so the process that drew the longer examples computes longer and the others wait. Here every process
draws the same global batch as one process would (the same seeded shuffle, accelerate's ``SeedableRandomSampler``
with the run's data seed), sorts it by length and deals it, longest first, to the process whose cost grows least
(groups may hold different numbers of examples). transformers' ``BatchRebalanceSampler`` brings the DataLoader
wiring and the order of micro-batches under gradient accumulation; its own partition (contiguous runs of the sorted
batch, which minimises padding) left 4 + 4 examples of SmolLM2's quickstart data 10-20% apart in padded tokens, the
greedy deal here within a few percent.
The union of the processes' batches is the global batch of a one-process run, and the loss is normalised by the
global count of label tokens (the Trainer's ``num_items_in_batch``, summed across processes), so the step's gradient
is the one-process gradient whatever the split.

Cost of a group: padded tokens (``size x longest``) plus transformers' small quadratic (attention) term; with
padding-free batches, the sum over examples of ``length`` plus the same quadratic term.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from accelerate.data_loader import SeedableRandomSampler
from transformers.trainer_pt_utils import BatchRebalanceSampler


class BalancedBatchSampler(BatchRebalanceSampler):
    """The batches of one process: the global batches of the one-process order, each split by cost.

    transformers passes a ``BatchRebalanceSampler`` to the DataLoader as its ``batch_sampler`` and keeps accelerate
    from re-sharding it (``Trainer._get_dataloader``); its ``set_epoch`` reaches this sampler and its shuffle.
    """

    def __init__(self, *, lengths: Sequence[int], batch_size: int, processes: int, rank: int, grad_accum: int,
                 seed: int, padded: bool = True) -> None:
        """Args:
            lengths: Tokens of each training example.
            batch_size: Examples per process and micro-batch (``per_device_train_batch_size``).
            processes: Processes in the run; ``rank``: this one's index.
            grad_accum: Gradient accumulation steps.
            seed: The run's data seed (the one-process shuffle's).
            padded: Batches are padded to their longest example (False: padding-free, flattened batches).
        """
        super().__init__(lengths=list(lengths), effective_batch_size=batch_size * grad_accum * processes,
                         dp_size=processes, grad_accum=grad_accum, shuffle=True, seed=seed, rank=rank,
                         drop_last=False)
        self.padded = padded
        # the shuffle of the one-process run: RandomSampler's randperm drawn from seed + epoch (accelerate)
        self.sampler = SeedableRandomSampler(range(len(self.lengths)), data_seed=seed)

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of each epoch (the shuffle follows the seed + epoch)."""
        super().set_epoch(epoch)
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        """This process's micro-batches, ``grad_accum`` per global batch."""
        for batch in self._global_batches():
            yield from self._yield_global_batch(batch)

    def global_batches(self, epoch: int = 0) -> Iterator[list[list[int]]]:
        """Every process's micro-batches of each global batch (rank by rank), for checks and reports."""
        self.set_epoch(epoch)
        for batch in self._global_batches():
            assigned = self._assign(batch, [self.lengths[i] for i in batch])
            yield [micro for rank in assigned for micro in rank]

    def _global_batches(self) -> Iterator[list[int]]:
        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)
        for start in range(0, len(order), self.effective_batch_size):
            batch = order[start:start + self.effective_batch_size]
            short = self.dp_size * self.grad_accum - len(batch)
            if short > 0:  # a last global batch too small for one example per group: repeat the epoch's first ones
                batch += (order * (short // len(order) + 1))[:short]
            yield batch

    def _balance_groups(self, sorted_pairs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """``dp_size x grad_accum`` groups of near-equal cost: each (index, length) pair, longest first, goes to the
        group whose cost grows least with it (ties: the group with fewer examples); then moves and swaps between the
        dearest and the cheapest group while they lower the dearest's cost. Every group gets an example."""
        count = self.dp_size * self.grad_accum
        if len(sorted_pairs) < count:
            raise ValueError(f"{len(sorted_pairs)} examples cannot fill {count} micro-batches")
        groups: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        for pair in sorted_pairs:
            cheapest = min(range(count), key=lambda g: (self._group_cost([*groups[g], pair]), len(groups[g])))
            groups[cheapest].append(pair)
        while self._improve(groups):
            pass
        return groups

    def _improve(self, groups: list[list[tuple[int, int]]]) -> bool:
        """One move or swap between the dearest and the cheapest group that lowers the larger of their costs."""
        costs = [self._group_cost(g) for g in groups]
        hi, lo = costs.index(max(costs)), costs.index(min(costs))
        best, choice = costs[hi], None
        for i, a in enumerate(groups[hi]):
            for j, b in [(None, None), *enumerate(groups[lo])]:
                if j is None and len(groups[hi]) == 1:
                    continue
                new_hi = [p for k, p in enumerate(groups[hi]) if k != i] + ([b] if b else [])
                new_lo = [p for k, p in enumerate(groups[lo]) if k != j] + [a]
                worst = max(self._group_cost(sorted(new_hi, key=_length, reverse=True)),
                            self._group_cost(sorted(new_lo, key=_length, reverse=True)))
                if worst < best - 1e-9:
                    best, choice = worst, (new_hi, new_lo)
        if choice is None:
            return False
        groups[hi] = sorted(choice[0], key=_length, reverse=True)
        groups[lo] = sorted(choice[1], key=_length, reverse=True)
        return True

    def _group_cost(self, group: list[tuple[int, int]]) -> float:
        if self.padded:
            return super()._group_cost(group)
        return float(sum(self._cost(1, length) for _, length in group))


def _length(pair: tuple[int, int]) -> int:
    return pair[1]


def example_lengths(dataset: Any, *, column: str = "input_ids") -> list[int]:
    """Tokens of each example of a tokenized dataset."""
    return [len(ids) for ids in dataset[column]]


def group_cost(lengths: Sequence[int], *, padded: bool) -> int:
    """Tokens a micro-batch computes on: padded (``size x longest``) or, padding-free, the sum of lengths."""
    if not lengths:
        return 0
    return len(lengths) * max(lengths) if padded else sum(lengths)
